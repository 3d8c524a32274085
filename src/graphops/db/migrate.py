"""Schema migrations with alembic: ``graphops db upgrade|current|downgrade``.

The same migrations run on SQLite and Postgres. Start-up
(:func:`graphops.db.startup.prepare_url`) refuses an out-of-date database with the
command that fixes it, instead of failing later on a missing column, and a
database written by a newer graphops (a revision this one does not know) with
both versions: neither ``db upgrade`` nor ``db downgrade`` can move such a schema.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from graphops.db.engine import engine_for, reaching, safe_url, sqlalchemy_url
from graphops.db.failures import storage_error
from graphops.db.sqlite_file import check_sqlite_file
from graphops.errors import ConfigurationError, InvalidInputError, RunError

__all__ = [
    "current",
    "downgrade",
    "head",
    "migrations_dir",
    "require_current",
    "require_head",
    "require_known",
    "revisions",
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


@cache
def revisions() -> tuple[str, ...]:
    """Every schema revision this graphops knows, oldest first."""
    script = ScriptDirectory.from_config(_config("sqlite://"))
    return tuple(reversed([r.revision for r in script.walk_revisions()]))


def head() -> str:
    """The newest schema revision this graphops knows."""
    return revisions()[-1]


def current(url: str) -> str | None:
    """The schema revision of the database at ``url`` (None: no graphops tables yet)."""
    check_sqlite_file(url)
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
    require_known(url, current(url))  # alembic cannot move a schema it has no script for
    try:
        with reaching(url):
            action(_config(url), revision)  # type: ignore[operator]
    except CommandError:
        known = ", ".join(("base", *revisions(), "head", "-1"))
        raise InvalidInputError(
            f"no schema revision {revision!r} in this graphops (known: {known})"
        ) from None
    except SQLAlchemyError as exc:
        # never str(exc): SQLAlchemy puts every SQL parameter in it
        raise storage_error(exc, url) or RunError(
            f"migration of the database at {safe_url(url)} to {revision} failed: "
            f"{type(exc).__name__} ({type(exc.orig).__name__ if hasattr(exc, 'orig') else '-'})"
        ) from None


def require_known(url: str, found: str | None) -> None:
    """Refuse a schema revision this graphops has no migration for (a newer graphops's)."""
    if found is None or found in revisions():
        return
    newest = head()
    this = f"this graphops {version('graphops')}"
    if found.isdigit() and newest.isdigit() and int(found) > int(newest):
        raise ConfigurationError(
            f"the database at {safe_url(url)} was written by a newer graphops (schema {found}; "
            f"{this} knows schemas up to {newest}): upgrade graphops to use it"
        )
    raise ConfigurationError(
        f"the database at {safe_url(url)} has graphops schema {found}, which {this} does not "
        f"know (its newest is {newest}): use the graphops that wrote it"
    )


def require_current(url: str) -> None:
    """Refuse to run against a database whose schema is not this graphops' head."""
    require_head(url, current(url))


def require_head(url: str, found: str | None) -> None:
    """Refuse ``found`` unless it is this graphops' newest revision, saying what to run."""
    require_known(url, found)
    wanted = head()
    if found != wanted:
        raise ConfigurationError(
            f"the database at {safe_url(url)} has graphops schema {found or 'none'}, this graphops "
            f"needs {wanted}: run 'graphops db upgrade'"
        )
