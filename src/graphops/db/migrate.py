"""Schema migrations with alembic: ``graphops db upgrade|current|downgrade``.

The same migrations run on SQLite and Postgres. Start-up calls
:func:`require_current`, which refuses an out-of-date database with the command
that fixes it, instead of failing later on a missing column.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from graphops.db.engine import engine_for, reaching, safe_url, sqlalchemy_url
from graphops.errors import ConfigurationError, RunError

if TYPE_CHECKING:
    from graphops.settings import Settings

__all__ = [
    "current",
    "downgrade",
    "head",
    "migrations_dir",
    "prepare",
    "require_current",
    "upgrade",
]

VERSION_TABLE = "graphops_alembic_version"


def migrations_dir() -> Path:
    """The alembic scripts: inside the installed wheel, else the source tree's migrations/."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "_migrations", here.parents[3] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigurationError("graphops' migrations are missing from this installation: reinstall")


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = sqlalchemy_url(url)
    return config


def head() -> str:
    """The newest schema revision this graphops knows."""
    revision = ScriptDirectory.from_config(_config("sqlite://")).get_current_head()
    assert revision is not None
    return revision


def current(url: str) -> str | None:
    """The schema revision of the database at ``url`` (None: no graphops tables yet)."""
    with reaching(url), engine_for(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    _run(command.upgrade, url, revision)


def downgrade(url: str, revision: str = "-1") -> None:
    """Migrate the database at ``url`` down to ``revision`` (one step by default)."""
    _run(command.downgrade, url, revision)


def _run(action: object, url: str, revision: str) -> None:
    try:
        with reaching(url):
            action(_config(url), revision)  # type: ignore[operator]
    except SQLAlchemyError as exc:
        raise RunError(f"migration to {revision} failed: {exc}") from None


def require_current(url: str) -> None:
    """Refuse to run against a database whose schema is not this graphops' head."""
    _require(url, current(url))


def _require(url: str, found: str | None) -> None:
    wanted = head()
    if found != wanted:
        raise ConfigurationError(
            f"the database at {safe_url(url)} has graphops schema {found or 'none'}, this graphops "
            f"needs {wanted}: run 'graphops db upgrade'"
        )


def prepare(settings: Settings) -> str:
    """The database URL in force, its schema checked; the embedded default is created on first use.

    Only graphops' own embedded file (no ``GRAPHOPS_DATABASE_URL``) is migrated
    without asking: a configured database belongs to its operator, who runs
    ``graphops db upgrade``.
    """
    url = settings.database
    found = current(url)
    if settings.database_url is None and found is None:
        upgrade(url)  # a fresh embedded database: nothing to lose
        found = current(url)
    _require(url, found)
    return url
