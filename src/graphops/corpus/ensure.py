"""Making sure an index exists before the first question.

On embedded defaults nobody should have to run ``graphops ingest`` first: the
first question ingests the configured corpus (``GRAPHOPS_CORPUS``, ``docs`` by
default). An index built with another embedding model is refused rather than
searched with vectors of the wrong space.
"""

from __future__ import annotations

import json

from langchain_core.embeddings import Embeddings

from graphops.corpus.index import CorpusIndex, Manifest
from graphops.corpus.ingest import IngestReport, Progress, embeddings_name, ingest
from graphops.corpus.sources import FetchOptions
from graphops.errors import CorpusIndexError
from graphops.settings import Settings

__all__ = ["ensure_index", "fetch_options", "ingest_with_settings"]


def fetch_options(settings: Settings) -> FetchOptions:
    """The source-reading limits the settings ask for."""
    return FetchOptions(
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        max_bytes=settings.max_source_bytes,
    )


def ingest_with_settings(
    targets: list[str], settings: Settings, embeddings: Embeddings, progress: Progress | None = None
) -> IngestReport:
    """:func:`ingest` with every option taken from ``settings``."""
    return ingest(
        targets,
        settings.index_dir,
        embeddings,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        fetch=fetch_options(settings),
        progress=progress,
    )


def ensure_index(
    settings: Settings, embeddings: Embeddings, progress: Progress | None = None
) -> IngestReport | None:
    """Ingest ``settings.corpus`` if there is no index yet; return its report, else None."""
    if CorpusIndex.exists(settings.index_dir):
        try:
            manifest = Manifest.from_json(
                json.loads((settings.index_dir / "manifest.json").read_text())
            )
        except (OSError, ValueError, KeyError, TypeError):
            raise CorpusIndexError(
                f"the index in {settings.index_dir} is unreadable: "
                "delete it and run 'graphops ingest'"
            ) from None
        built_with, wanted = manifest.embeddings_model, embeddings_name(embeddings)
        chunking = (manifest.chunk_size, manifest.chunk_overlap)
        if built_with != wanted:
            raise CorpusIndexError(
                f"the index in {settings.index_dir} was built with {built_with}, but the "
                f"configured embeddings are {wanted}: run 'graphops ingest' again"
            )
        if chunking != (settings.chunk_size, settings.chunk_overlap):
            raise CorpusIndexError(
                f"the index in {settings.index_dir} was chunked {chunking[0]}/{chunking[1]}, "
                f"the settings say {settings.chunk_size}/{settings.chunk_overlap} "
                "(GRAPHOPS_CHUNK_SIZE/GRAPHOPS_CHUNK_OVERLAP): run 'graphops ingest' again"
            )
        return None
    if not settings.corpus:
        raise CorpusIndexError(
            "there is no index and GRAPHOPS_CORPUS is empty: run 'graphops ingest PATH'"
        )
    return ingest_with_settings(list(settings.corpus), settings, embeddings, progress)
