"""The one confirmation convention of graphops' destructive commands.

``runs prune`` and ``db downgrade`` (and any later reset of caches or limits)
delete what cannot be recovered, so each works the same way: it prints exactly
what it will delete, then

- with ``--dry-run`` stops there (exit 0, nothing changed);
- with ``--yes`` goes ahead;
- on a terminal asks ``[y/N]`` (anything but ``y``/``yes`` changes nothing, exit 0);
- otherwise (a script, a pipe, CI) refuses with exit code 2 and the hint to add
  ``--yes``: a job must say it means it, never delete because no one was asked.

A command with nothing to delete says so and needs no confirmation.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from graphops.errors import InvalidInputError

__all__ = ["add_confirm_flags", "confirm", "refuse_confirm_flags"]


def add_confirm_flags(parser: Any, what: str) -> None:
    """Add ``--yes`` and ``--dry-run`` to ``parser``; ``what`` names what gets deleted."""
    parser.add_argument(
        "--yes", action="store_true", help=f"delete {what} without asking (needed off a terminal)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help=f"only show {what} that would be deleted"
    )


def refuse_confirm_flags(args: argparse.Namespace, command: str) -> None:
    """Refuse ``--yes``/``--dry-run`` on an action that deletes nothing (they would mislead)."""
    for flag in ("yes", "dry_run"):
        if getattr(args, flag, False):
            name = "--" + flag.replace("_", "-")
            raise InvalidInputError(f"{name} is for {command!r} only: this action deletes nothing")


def confirm(summary: str, args: argparse.Namespace, *, stdin: TextIO | None = None) -> bool:
    """Print ``summary`` (what will be deleted); True when the caller should delete it.

    ``args.yes`` and ``args.dry_run`` come from :func:`add_confirm_flags`. Off a
    terminal and without ``--yes`` this raises, so the command exits with code 2.
    """
    stdin = stdin or sys.stdin
    print(summary, flush=True)
    if getattr(args, "dry_run", False):
        print("dry run: nothing deleted, nothing changed")
        return False
    if getattr(args, "yes", False):
        return True
    if not stdin.isatty():
        raise InvalidInputError(
            "not confirmed: standard input is not a terminal, so nobody can answer; "
            "add --yes to go ahead (or --dry-run to only show it)"
        )
    print("go ahead? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        return True
    print("cancelled: nothing deleted, nothing changed")
    return False
