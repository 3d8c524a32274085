"""graphops' own tables: engines, schema and migrations (SQLite default, Postgres by URL)."""

from __future__ import annotations

from graphops.db.engine import BUSY_TIMEOUT_S, engine_for, sqlalchemy_url
from graphops.db.migrate import current, downgrade, head, require_current, upgrade
from graphops.db.startup import prepare, prepare_url

__all__ = [
    "BUSY_TIMEOUT_S",
    "current",
    "downgrade",
    "engine_for",
    "head",
    "prepare",
    "prepare_url",
    "require_current",
    "sqlalchemy_url",
    "upgrade",
]
