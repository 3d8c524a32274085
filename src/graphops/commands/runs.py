"""``graphops runs``: stored runs, listed and pruned."""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio

from graphops.errors import InvalidInputError
from graphops.settings import Settings

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``runs`` to the ``graphops`` parser."""
    runs = commands.add_parser("runs", help="list stored runs, newest first, or prune old ones")
    runs.add_argument("action", nargs="?", choices=["list", "prune"], default="list")
    runs.add_argument("--older-than", help="with prune: delete runs older than this (30d)")
    runs.add_argument("--user", help="only this user's runs")
    runs.add_argument("--since", help="only runs started within this long (30d, 12h, 45m)")
    runs.add_argument("--status", choices=["ok", "error"], help="only runs that ended so")
    runs.add_argument("--limit", type=int, default=50)
    runs.set_defaults(handler=_runs)


def _since(text: str) -> int:
    """``30d``, ``12h``, ``45m`` → a time in ns since the epoch that long ago."""
    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise InvalidInputError(f"{text!r} is not a duration: use e.g. 30d, 12h, 45m")
    return time.time_ns() - int(text[:-1]) * units[text[-1]] * 1_000_000_000


def _runs(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.checkpoint import SqlSpanStore
    from graphops.db import prepare

    prepare(settings)
    if args.action == "prune":
        if not args.older_than:
            raise InvalidInputError("runs prune needs --older-than (e.g. 30d)")
        from graphops.checkpoint.retention import prune

        threads, spans = anyio.run(prune, settings.database, _since(args.older_than))
        print(f"deleted {threads} thread(s) with their checkpoints, {spans} span(s)")
        return 0
    store = SqlSpanStore(settings.database)
    since = _since(args.since) if args.since else None
    rows = store.runs(user=args.user, since_ns=since, status=args.status, limit=args.limit)
    print(
        f"{'started (UTC)':<20}{'thread':<38}{'graph':<14}{'status':<8}{'seconds':>9}"
        f"{'tokens':>8}{'cost $':>10}  {'user':<12}prompts"
    )
    for run in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.started_ns / 1e9))
        print(
            f"{started:<20}{run.thread_id or '-':<38}{run.graph:<14}{run.status:<8}"
            f"{run.seconds:>9.2f}{run.tokens:>8}{run.cost_usd:>10.6f}  {run.user or '-':<12}"
            + (" ".join(run.prompts) or "-")
        )
    return 0
