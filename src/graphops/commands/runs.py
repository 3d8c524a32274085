"""``graphops runs``: stored runs, listed and pruned.

Every flag either applies to the action or is refused: ``--older-than`` never
quietly lists, ``--since`` never quietly prunes. ``runs prune`` follows the
confirmation convention of :mod:`graphops.commands.confirm`.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from graphops.commands.confirm import add_confirm_flags, confirm, refuse_confirm_flags
from graphops.errors import InvalidInputError
from graphops.settings import Settings

if TYPE_CHECKING:
    from graphops.checkpoint.retention import PrunePlan

__all__ = ["add_parser"]

SHOWN_THREADS = 10  # a prune names this many threads, then "… and N more"

_LIST_ONLY = {"since": "--since", "status": "--status", "limit": "--limit"}


def _count(text: str) -> int:
    """``--limit``: a number of runs, at least 1."""
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of runs: give 1 or more")
    return int(text)


def add_parser(commands: Any) -> None:
    """Add ``runs`` to the ``graphops`` parser."""
    runs = commands.add_parser("runs", help="list stored runs, newest first, or prune old ones")
    runs.add_argument("action", nargs="?", choices=["list", "prune"], default="list")
    runs.add_argument("--user", help="only this user's runs")
    runs.add_argument("--thread", help="only this thread's runs")
    runs.add_argument("--since", help="list: only runs started within this long (30d, 12h, 45m)")
    runs.add_argument(
        "--status", choices=["ok", "error", "unfinished"], help="list: only runs that ended so"
    )
    runs.add_argument("--limit", type=_count, help="list: at most this many runs (default 50)")
    runs.add_argument("--older-than", help="prune: delete runs started longer ago (30d)")
    add_confirm_flags(runs, "the runs")
    runs.set_defaults(handler=_runs)


def _since(text: str) -> int:
    """``30d``, ``12h``, ``45m`` → a time in ns since the epoch that long ago."""
    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise InvalidInputError(f"{text!r} is not a duration: use e.g. 30d, 12h, 45m")
    return time.time_ns() - int(text[:-1]) * units[text[-1]] * 1_000_000_000


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse a flag the action would otherwise ignore."""
    if args.action == "prune":
        for key, flag in _LIST_ONLY.items():
            if getattr(args, key) is not None:
                raise InvalidInputError(
                    f"{flag} lists runs; 'graphops runs prune' selects them with --older-than, "
                    "--user and --thread only"
                )
        if not args.older_than:
            raise InvalidInputError("runs prune needs --older-than (e.g. 30d)")
        return
    if args.older_than is not None:
        raise InvalidInputError(
            "--older-than is for 'graphops runs prune': to list runs use --since"
        )
    refuse_confirm_flags(args, "graphops runs prune")


def _runs(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.db import prepare

    _check_flags(args)
    prepare(settings)
    if args.action == "prune":
        return _prune(args, settings.database)
    return _list(args, settings.database)


def _prune(args: argparse.Namespace, url: str) -> int:
    from graphops.checkpoint.retention import plan_prune, prune

    before = _since(args.older_than)
    plan = plan_prune(url, before, user=args.user, thread=args.thread)
    if not plan.empty:
        if not confirm(_plan_text(args, plan, before), args):
            return 0
        threads, spans = anyio.run(partial(prune, url, before, plan=plan))
    else:
        threads, spans = 0, 0
    print(f"deleted {threads} thread(s) with their checkpoints, {spans} span(s)")
    return 0


def _plan_text(args: argparse.Namespace, plan: PrunePlan, before_ns: int) -> str:
    whose = f" of user {args.user}" if args.user else ""
    where = f" on thread {args.thread}" if args.thread else ""
    lines = [
        f"runs prune will delete {len(plan.runs)} run(s){whose}{where} "
        f"({plan.spans} span(s)), every run started before {_utc(before_ns)} UTC:"
    ]
    if plan.threads:
        lines.append(
            f"  {len(plan.threads)} thread(s) with their checkpoints: {_names(plan.threads)}"
        )
    if plan.kept:
        lines.append(
            f"  {len(plan.kept)} thread(s) keep their checkpoints (newer runs or other users' "
            f"runs remain), losing only these runs: {_names(plan.kept)}"
        )
    loose = sum(1 for run in plan.runs if run.thread_id is None)
    if loose:
        lines.append(f"  {loose} run(s) without a thread")
    return "\n".join(lines)


def _names(threads: tuple[str, ...]) -> str:
    shown = ", ".join(threads[:SHOWN_THREADS])
    more = len(threads) - SHOWN_THREADS
    return shown + (f" … and {more} more" if more > 0 else "")


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9))


def _list(args: argparse.Namespace, url: str) -> int:
    from graphops.checkpoint import SqlSpanStore

    rows = SqlSpanStore(url).runs(
        user=args.user,
        thread=args.thread,
        since_ns=_since(args.since) if args.since else None,
        status=args.status,
        limit=args.limit or 50,
        unfinished=True,
    )
    print(
        f"{'started (UTC)':<20}{'thread':<38}{'graph':<14}{'status':<11}{'seconds':>9}"
        f"{'tokens':>8}{'cost $':>10}  {'user':<12}{'re-run of':<10}prompts"
    )
    for run in rows:
        done = run.status != "unfinished"
        print(
            f"{_utc(run.started_ns):<20}{run.thread_id or '-':<38}{run.graph:<14}{run.status:<11}"
            f"{run.seconds:>9.2f}{run.tokens if done else '-':>8}"
            f"{f'{run.cost_usd:.6f}' if done else '-':>10}  {run.user or '-':<12}"
            f"{(run.replay_of or '-')[:8]:<10}" + (" ".join(run.prompts) or "-")
        )
    return 0
