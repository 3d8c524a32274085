"""Database URLs and engines: SQLite by default, Postgres by one URL.

``GRAPHOPS_DATABASE_URL`` takes the URL users know (``postgresql://user@host/db``,
``sqlite:///path``); SQLAlchemy gets the psycopg 3 driver for Postgres. An engine
is created per URL and reused, never at import time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from graphops.errors import ConfigurationError, RunError

__all__ = ["engine_for", "reaching", "safe_url", "sqlalchemy_url"]

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def sqlalchemy_url(url: str) -> str:
    """``url`` with the driver SQLAlchemy should use (psycopg 3 for Postgres)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"GRAPHOPS_DATABASE_URL {url!r} is not a database URL: use sqlite:///path or "
            "postgresql://user@host/db"
        ) from None
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.get_backend_name() == "sqlite":
        return url
    raise ConfigurationError(
        f"GRAPHOPS_DATABASE_URL uses {parsed.get_backend_name()!r}: graphops supports sqlite "
        "and postgresql"
    )


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    # WAL: readers never block the writer, and a killed process loses no committed row
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def engine_for(url: str) -> Engine:
    """The shared engine for ``url`` (SQLite files get their folder and WAL mode)."""
    target = sqlalchemy_url(url)
    with _lock:
        engine = _engines.get(target)
        if engine is None:
            parsed = make_url(target)
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (
                None,
                "",
                ":memory:",
            ):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(target, pool_pre_ping=True)
            if parsed.get_backend_name() == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
            _engines[target] = engine
        return engine


def safe_url(url: str) -> str:
    """``url`` as it may be printed: the password hidden."""
    return make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turn "the database did not answer" into a :class:`RunError` naming it (no password)."""
    try:
        yield
    except OperationalError as exc:
        raise RunError(f"cannot reach the database at {safe_url(url)}: {exc.orig}") from None
