"""graphops' own tables: engines, schema and migrations (SQLite default, Postgres by URL)."""

from __future__ import annotations

from graphops.db.engine import engine_for, sqlalchemy_url
from graphops.db.migrate import current, downgrade, head, prepare, require_current, upgrade

__all__ = [
    "current",
    "downgrade",
    "engine_for",
    "head",
    "prepare",
    "require_current",
    "sqlalchemy_url",
    "upgrade",
]
