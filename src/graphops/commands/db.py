"""``graphops db``: graphops' database schema (migrations)."""

from __future__ import annotations

import argparse
from typing import Any

from graphops.settings import Settings

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``db`` to the ``graphops`` parser."""
    database = commands.add_parser("db", help="graphops' database schema (migrations)")
    database.add_argument("action", choices=["upgrade", "current", "downgrade"])
    database.add_argument("revision", nargs="?", help="target revision (head, -1, 0001, base)")
    database.set_defaults(handler=_db)


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from graphops import db

    url = settings.database
    if args.action == "upgrade":
        db.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        db.downgrade(url, args.revision or "-1")
    print(f"schema {db.current(url) or 'none'} (this graphops: {db.head()})")
    return 0
