"""The one start-up check of graphops' database, used by every command and the checkpointer.

The rule, the same everywhere (``ask``, ``runs``, ``replay``, ``prompts``,
:func:`graphops.checkpoint.savers.open_checkpointer`):

* a SQLite database (the default file under ``GRAPHOPS_DATA_DIR`` or any
  ``sqlite:///`` URL) without graphops' tables is created on first use: it is
  embedded, so there is nothing of anyone else's to lose;
* a Postgres database without them, or any database whose schema is older than
  this graphops', is refused with the command that fixes it, ``graphops db
  upgrade``: a shared server belongs to its operator;
* a schema newer than this graphops' (written by a newer graphops) is refused
  with both versions, and so are a damaged SQLite file, a data folder that is a
  file or cannot be made, and a file locked by another process for longer than
  the busy timeout, each before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from graphops.db.engine import sqlalchemy_url
from graphops.db.migrate import current, head, require_head, upgrade
from graphops.errors import GraphopsError

if TYPE_CHECKING:
    from graphops.settings import Settings

__all__ = ["prepare", "prepare_url"]


def prepare_url(url: str) -> str:
    """``url``, its schema checked (a SQLite database is created on first use)."""
    found = current(url)  # checks a SQLite file first, reading only
    if found is None and make_url(sqlalchemy_url(url)).get_backend_name() == "sqlite":
        try:
            upgrade(url)
        except GraphopsError:
            if current(url) != head():  # not another process creating it at the same moment
                raise
        found = current(url)
    require_head(url, found)
    return url


def prepare(settings: Settings) -> str:
    """The database URL in force (``settings.database``), checked as :func:`prepare_url` does."""
    return prepare_url(settings.database)
