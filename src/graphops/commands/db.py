"""``graphops db``: graphops' database schema (migrations).

``db downgrade`` drops tables with everything in them (the prompt registry, the
span store), so it follows the confirmation convention of
:mod:`graphops.commands.confirm`: it first names each revision it undoes and the
tables that revision drops, with their row counts, and asks. What it will drop
is read from the migrations themselves, rendered as SQL without running them
(alembic's offline mode), so the list cannot drift from what the downgrade does.
"""

from __future__ import annotations

import argparse
import io
import re
from typing import Any

from graphops.commands.confirm import add_confirm_flags, confirm, refuse_confirm_flags
from graphops.errors import InvalidInputError
from graphops.settings import Settings

__all__ = ["add_parser"]

_STEP = re.compile(r"^-- Running downgrade (\S+) -> (\S*)\s*$")
_DROP_TABLE = re.compile(r"^DROP TABLE (?:IF EXISTS )?\"?([\w.]+)\"?")
_DROP_COLUMN = re.compile(r"^ALTER TABLE \"?([\w.]+)\"? DROP COLUMN \"?(\w+)\"?")


def add_parser(commands: Any) -> None:
    """Add ``db`` to the ``graphops`` parser."""
    database = commands.add_parser("db", help="graphops' database schema (migrations)")
    database.add_argument("action", choices=["upgrade", "current", "downgrade"])
    database.add_argument("revision", nargs="?", help="target revision (head, -1, 0001, base)")
    add_confirm_flags(database, "the tables a downgrade drops")
    database.set_defaults(handler=_db)


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from graphops import db

    url = settings.database
    if args.action != "downgrade":
        refuse_confirm_flags(args, "graphops db downgrade")
    if args.action == "upgrade":
        db.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        from graphops.db.migrate import require_known

        found = db.current(url)
        require_known(url, found)  # a newer graphops' schema: say so, not alembic's words
        target = args.revision or "-1"
        steps = _undone(url, found, target) if found is not None else []
        if found is not None and steps:  # nothing to undo: nothing to confirm
            if not confirm(_summary(url, found, steps), args):
                return 0
            db.downgrade(url, target)
    print(f"schema {db.current(url) or 'none'} (this graphops: {db.head()})")
    return 0


def _undone(url: str, found: str, target: str) -> list[tuple[str, str, list[str]]]:
    """Each revision ``downgrade target`` undoes: (revision, the one below, what it drops)."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    from graphops.db.engine import sqlalchemy_url
    from graphops.db.migrate import migrations_dir

    sql = io.StringIO()
    config = Config(output_buffer=sql)
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = sqlalchemy_url(url)
    try:
        command.downgrade(config, f"{found}:{target}", sql=True)
    except CommandError as exc:
        raise InvalidInputError(
            f"cannot downgrade from {found} to {target!r}: {exc} (see 'graphops db current')"
        ) from None
    steps: list[tuple[str, str, list[str]]] = []
    for line in sql.getvalue().splitlines():
        if step := _STEP.match(line):
            steps.append((step[1], step[2] or "base", []))
        elif steps and (table := _DROP_TABLE.match(line)):
            steps[-1][2].append(table[1])
        elif steps and (column := _DROP_COLUMN.match(line)):
            steps[-1][2].append(f"column {column[1]}.{column[2]}")
    return steps


def _summary(url: str, found: str, steps: list[tuple[str, str, list[str]]]) -> str:
    from alembic.script import ScriptDirectory

    from graphops.db.engine import safe_url
    from graphops.db.migrate import migrations_dir

    scripts = ScriptDirectory(str(migrations_dir()))
    lines = [f"db downgrade {found} → {steps[-1][1]} on {safe_url(url)} will drop:"]
    for revision, below, dropped in steps:
        doc = scripts.get_revision(revision)
        title = doc.doc.split("\n")[0].rstrip(".") if doc is not None and doc.doc else ""
        what = ", ".join(_with_rows(url, name) for name in dropped) or "no table"
        lines.append(f"  {revision} → {below} ({title}): {what}")
    return "\n".join(lines)


def _with_rows(url: str, name: str) -> str:
    """``table (N rows)``; a column, or a table that cannot be counted, as it is."""
    from sqlalchemy import func, select, table
    from sqlalchemy.exc import SQLAlchemyError

    from graphops.db.engine import engine_for

    if name.startswith("column "):
        return name
    try:
        with engine_for(url).connect() as connection:
            rows = connection.execute(select(func.count()).select_from(table(name))).scalar_one()
    except SQLAlchemyError:
        return name
    return f"{name} ({rows} rows)"
