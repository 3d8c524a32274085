"""Alembic environment for graphops' tables (SQLite and Postgres).

graphops keeps its own version table, ``graphops_alembic_version``, so it can share a
database with an application that uses alembic too. Run through ``graphops db``.
"""

from __future__ import annotations

from alembic import context

from graphops.db.engine import engine_for
from graphops.db.schema import metadata

VERSION_TABLE = "graphops_alembic_version"


def run() -> None:
    url = context.config.attributes["url"]
    if context.is_offline_mode():
        context.configure(
            url=url, target_metadata=metadata, version_table=VERSION_TABLE, literal_binds=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    with engine_for(url).connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run()
