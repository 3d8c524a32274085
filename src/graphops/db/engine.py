"""Database URLs and engines: SQLite by default, Postgres by one URL.

``GRAPHOPS_DATABASE_URL`` takes the URL users know (``postgresql://user@host/db``,
``sqlite:///path``); SQLAlchemy gets the psycopg 3 driver for Postgres. An engine
is created per URL and reused, never at import time.

Every SQLite connection graphops opens (these engines, and the checkpointer's
aiosqlite connection) uses WAL mode, so readers never wait for a writer, and waits
at most :data:`BUSY_TIMEOUT_S` for another process's write lock before failing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from graphops.errors import ConfigurationError, RunError

__all__ = [
    "BUSY_TIMEOUT_S",
    "engine_for",
    "reaching",
    "safe_url",
    "sqlalchemy_url",
    "sqlite_path",
    "writing",
]

BUSY_TIMEOUT_S = 5.0
"""How long a SQLite statement waits for another process's write lock before failing."""

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


SQLITE_PRAGMAS = (
    # WAL: readers never block the writer, and a killed process loses no committed row
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}",
)
"""What every SQLite connection graphops opens runs first."""


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite ``url`` (None: Postgres, or an in-memory database)."""
    parsed = make_url(sqlalchemy_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def engine_for(url: str) -> Engine:
    """The shared engine for ``url`` (SQLite: WAL mode and the bounded busy timeout).

    A SQLite file's folder is made, and the file checked, by
    :func:`graphops.db.sqlite_file.check_sqlite_file` before anything opens it.
    """
    target = sqlalchemy_url(url)
    with _lock:
        engine = _engines.get(target)
        if engine is None:
            if make_url(target).get_backend_name() == "sqlite":
                engine = create_engine(
                    target, pool_pre_ping=True, connect_args={"timeout": BUSY_TIMEOUT_S}
                )
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(target, pool_pre_ping=True)
            _engines[target] = engine
        return engine


def has_engine(url: str) -> bool:
    """Whether this process already made the engine for ``url`` (so may hold connections)."""
    with _lock:
        return sqlalchemy_url(url) in _engines


def safe_url(url: str) -> str:
    """``url`` as it may be printed, as the user wrote it: the password hidden."""
    sqlalchemy_url(url)  # a clear error for a URL that is not one
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction whose reads are part of it.

    SQLite's Python driver starts its transaction only at the first write, so the
    reads before it would see a stale state: ``BEGIN IMMEDIATE`` takes the write
    lock first (waiting for the busy timeout), as ``FOR UPDATE`` does on Postgres.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turn "the database did not answer" (or is locked, or damaged) into one clear error.

    The message names the database (no password) and the driver's own words,
    never SQLAlchemy's ``str(exc)``, which carries every SQL parameter.
    """
    from graphops.db.failures import storage_error

    try:
        yield
    except OperationalError as exc:
        error = storage_error(exc, url)
        first = str(exc.orig).strip().splitlines()[:1] or [type(exc.orig).__name__]
        where = safe_url(url)
        raise error or RunError(f"cannot reach the database at {where}: {first[0]}") from None
