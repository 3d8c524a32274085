"""A SQLite file checked before anything opens it for writing.

SQLite would happily create a database in a folder that is not there, or write
its WAL header into a file that is not a database; the errors then come late,
as driver tracebacks. :func:`check_sqlite_file` looks first, reading only, so a
damaged file is reported and left exactly as it was:

* the folder must be a folder (it is made when missing);
* an existing file must start with SQLite's header, be at least as long as the
  header says, and have a readable schema (opened read-only).

An empty file is an empty SQLite database, as SQLite itself treats it.

The header is read with a plain ``open`` only before this process has any
connection to the file: closing a file descriptor drops every POSIX lock the
process holds on that file, including those of its open SQLite connections
(SQLite's "how to corrupt a database", 2.2), and another process could then
checkpoint the WAL from under them. So it is read once per file and process,
and never once graphops' engine for it exists; later checks go through SQLite,
which keeps its own descriptors' locks safe.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from graphops.db.engine import BUSY_TIMEOUT_S, has_engine, sqlite_path
from graphops.db.failures import damaged, storage_error
from graphops.errors import ConfigurationError

__all__ = ["check_sqlite_file"]

_MAGIC = b"SQLite format 3\x00"
_FIX_FOLDER = "point GRAPHOPS_DATA_DIR (or GRAPHOPS_DATABASE_URL) at a folder"
_headers_read: set[Path] = set()  # files whose header this process has read (see above)


def check_sqlite_file(url: str) -> None:
    """Refuse a SQLite ``url`` whose folder or file cannot be graphops' database.

    Postgres and in-memory URLs pass unchecked.
    """
    path = sqlite_path(url)
    if path is None:
        return
    _folder(path.parent)
    if path.is_dir():
        raise ConfigurationError(
            f"the database {path} is a folder, not a file: point GRAPHOPS_DATABASE_URL at a file"
        )
    if not path.exists():
        return  # SQLite creates it
    resolved = path.resolve()
    if resolved not in _headers_read and not has_engine(url):
        _headers_read.add(resolved)
        _header(path)
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise (storage_error(exc, url) or damaged(path, str(exc))) from None


def _folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(
            f"the folder {folder} for graphops' database is a file, not a folder: {_FIX_FOLDER}"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the folder {folder} for graphops' database "
            f"({exc.strerror or exc}): {_FIX_FOLDER} graphops can write"
        ) from None


def _header(path: Path) -> None:
    """Compare the file with its own 100-byte header (without opening it as a database)."""
    try:
        with path.open("rb") as file:
            header = file.read(100)
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the database {path} ({exc.strerror or exc}): check its permissions"
        ) from None
    if size == 0:
        return
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise damaged(path, "it does not start with SQLite's header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # the page count is valid only while the change counter equals "version valid for"
    if header[24:28] == header[92:96] and size < pages * page_size:
        raise damaged(path, f"truncated: {size} of {pages * page_size} bytes")
