"""The flag store and resolver the settings ask for.

Flags live in graphops' database (``settings.database``: the embedded SQLite
file under ``GRAPHOPS_DATA_DIR``, or Postgres by ``GRAPHOPS_DATABASE_URL``),
checked at start-up as the prompt registry's is (:func:`graphops.db.prepare`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphops.flags.resolver import Flags
    from graphops.flags.store import FlagStore
    from graphops.settings import Settings

__all__ = ["flag_store", "flags_for"]


def flag_store(settings: Settings) -> FlagStore:
    """The :class:`~graphops.flags.store_sql.SqlFlagStore` on ``settings.database``."""
    from graphops.db import prepare
    from graphops.flags.store_sql import SqlFlagStore

    return SqlFlagStore(prepare(settings))


def flags_for(settings: Settings) -> Flags:
    """A :class:`~graphops.flags.resolver.Flags` resolver over :func:`flag_store`."""
    from graphops.flags.resolver import Flags

    return Flags(flag_store(settings))
