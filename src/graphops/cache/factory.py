"""The answer cache's stores, as the settings ask for them.

:func:`answer_store` gives the exact tier's store: graphops' database
(``settings.database``: the embedded SQLite file under ``GRAPHOPS_DATA_DIR``, or
Postgres by ``GRAPHOPS_DATABASE_URL``), checked at start-up as the prompt
registry's is (:func:`graphops.db.prepare`: a SQLite database is created on
first use, an out-of-date Postgres schema refused with ``graphops db upgrade``).

:func:`semantic_tier` gives the semantic tier: GPTCache's scalar store in
SQLite under ``GRAPHOPS_DATA_DIR/cache``, the partitions' Faiss files beside it,
even when answers are in Postgres: each process searches its own Faiss copy
anyway, and GPTCache's tables are not graphops' migrated schema, so they stay
out of graphops' database (``SemanticTier(url=...)`` puts them elsewhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from graphops.cache.semantic import SemanticTier
    from graphops.cache.store import AnswerStore
    from graphops.settings import Settings

__all__ = ["answer_store", "semantic_tier"]


def answer_store(settings: Settings) -> AnswerStore:
    """The :class:`~graphops.cache.store_sql.SqlAnswerStore` on ``settings.database``."""
    from graphops.cache.store_sql import SqlAnswerStore
    from graphops.db import prepare

    return SqlAnswerStore(prepare(settings))


def semantic_tier(settings: Settings, embeddings: Embeddings) -> SemanticTier:
    """The semantic tier the settings ask for, on ``embeddings``."""
    from graphops.cache.semantic import SemanticTier

    return SemanticTier(embeddings, settings.data_dir / "cache")
