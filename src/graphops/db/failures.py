"""Database failures a user can act on, as graphops errors: locked, damaged, unreachable.

SQLite and Postgres report these through their drivers (``sqlite3``, ``aiosqlite``,
``psycopg``), often wrapped by SQLAlchemy. :func:`storage_error` turns the ones
that are about the database itself, not about graphops' code, into one error
naming the file (or the URL, password hidden) and what to do. Anything else, a
``ProgrammingError`` or an ``IntegrityError``, is left alone: it is a bug and
keeps its traceback. Messages never include SQLAlchemy's ``str(exc)``, which
carries every SQL parameter (with content capture on, prompts and answers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graphops.db.engine import safe_url, sqlite_path
from graphops.errors import ConfigurationError, GraphopsError, RunError, StorageError

__all__ = ["damaged", "failing", "is_locked", "locked", "said", "storage_error"]

_LOCKED = ("SQLITE_BUSY", "SQLITE_LOCKED")
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_UNUSABLE = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_FULL", "SQLITE_PERM")


def _name(url: str | None) -> str:
    if url is None:
        return "graphops' database"
    try:
        path = sqlite_path(url)
    except ConfigurationError:
        return "graphops' database"
    return str(path) if path is not None else f"at {safe_url(url)}"


def locked(url: str | None) -> StorageError:
    """Another process holds the write lock for longer than graphops waits."""
    return StorageError(
        f"the database {_name(url)} is locked by another process: try again when it has "
        "finished, or stop it"
    )


def damaged(path: Path | str, why: str) -> StorageError:
    """A file that is not, or no longer, a whole SQLite database."""
    return StorageError(
        f"the database {path} is damaged or not an SQLite database ({why}): move it away "
        "(graphops then starts a new one) or restore it from a backup"
    )


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's exception inside SQLAlchemy's wrapper (or ``exc`` itself)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "another connection holds the lock" (busy timeout spent)."""
    orig = _driver_error(exc)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    name = getattr(orig, "sqlite_errorname", "")
    return name.startswith(_LOCKED) or "database is locked" in str(orig)


def storage_error(exc: BaseException, url: str | None) -> GraphopsError | None:
    """The graphops error ``exc`` means for the database at ``url``; None: not one of those."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return storage_error(exc.exceptions[0], url)
    orig = _driver_error(exc)
    if isinstance(orig, sqlite3.Error):
        if is_locked(orig):
            return locked(url)
        name = getattr(orig, "sqlite_errorname", "")
        message = str(orig)
        if name.startswith(_DAMAGED) or message in (
            "file is not a database",
            "database disk image is malformed",
        ):
            return damaged(_name(url), message)
        if name.startswith(_UNUSABLE):
            return StorageError(
                f"cannot use the database {_name(url)} ({message}): check the disk, and that "
                "graphops may write its folder"
            )
        return None
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(orig, psycopg.OperationalError):
        first = str(orig).strip().splitlines()[:1] or [type(orig).__name__]
        where = f"at {safe_url(url)}" if url is not None else "graphops' database"
        return RunError(f"cannot reach the database {where}: {first[0]}")
    return None


def said(exc: BaseException) -> str:
    """The driver's first line (never SQLAlchemy's text: its SQL and parameters)."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = "" if isinstance(exc, SQLAlchemyError) else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


@contextmanager
def failing(url: str, what: str, errors: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Database failures inside as graphops names them, for a store of ``what``.

    Unreachable, locked or damaged are :func:`storage_error`'s; any other
    SQLAlchemy error (or one of ``errors``, the driver's own) is a
    :class:`StorageError` naming ``what`` and the driver's words only (never the
    SQL or its parameters).
    """
    from sqlalchemy.exc import SQLAlchemyError

    caught: tuple[type[BaseException], ...] = (SQLAlchemyError, *errors)
    try:
        yield
    except caught as exc:
        raise storage_error(exc, url) or StorageError(
            f"{what} in the database at {safe_url(url)} failed: {said(exc)}"
        ) from None
