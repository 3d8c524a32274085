"""The ``graphops`` command: ``ask``, ``ingest``, ``runs``, ``replay``, ``prompts``, ``db``.

Each subcommand group is a module of :mod:`graphops.commands`; this one wires
them. Every failure graphops raises on purpose is printed as one line,
``graphops: error: …``, with exit code 2 for bad input or configuration
(:class:`UserError`) and 1 for a run-time failure (:class:`RunError`); only bugs
keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from graphops.commands.ask import add_parser as ask
from graphops.commands.db import add_parser as db
from graphops.commands.ingest import add_parser as ingest
from graphops.commands.prompts import add_parser as prompts
from graphops.commands.replay import add_parser as replay
from graphops.commands.runs import add_parser as runs
from graphops.errors import GraphopsError, InvalidInputError, UserError
from graphops.observe.logs import configure_logging
from graphops.settings import load_settings

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors share one error path."""

    def error(self, message: str) -> Any:
        raise InvalidInputError(f"{message} (see 'graphops --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="graphops", description="LLMOps middleware for LangGraph graphs.")
    parser.add_argument("--version", action="version", version=f"graphops {version('graphops')}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    for add_parser in (ask, db, runs, replay, prompts, ingest):
        add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
        settings = load_settings()
        configure_logging(settings.log_format, settings.log_level)
        code: int = args.handler(args, settings)
        return code
    except GraphopsError as exc:
        print(f"graphops: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    except KeyboardInterrupt:
        print("graphops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
