"""The ``graphops`` command: ``ask``, ``ingest``, ``runs``, ``replay``, ``prompts``, ``db``,
``limits``, ``cache``, ``flags``, ``rollout``, ``feedback``.

Each subcommand group is a module of :mod:`graphops.commands`; this one wires
them. Every failure graphops raises on purpose is printed as one line,
``graphops: error: …``, with exit code 2 for bad input or configuration
(:class:`UserError`) and 1 for a run-time failure (:class:`RunError`); only bugs
keep their traceback. A database failure the user can act on (another process
holding SQLite's lock, a damaged file, an unreachable server, a data folder that
cannot be written) is one of those lines too, whichever command met it first:
see :func:`graphops.db.failures.storage_error`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from graphops.commands.ask import add_parser as ask
from graphops.commands.cache import add_parser as cache
from graphops.commands.db import add_parser as db
from graphops.commands.feedback import add_parser as feedback
from graphops.commands.flags import add_parser as flags
from graphops.commands.ingest import add_parser as ingest
from graphops.commands.limits import add_parser as limits
from graphops.commands.prompts import add_parser as prompts
from graphops.commands.replay import add_parser as replay
from graphops.commands.rollout import add_parser as rollout
from graphops.commands.runs import add_parser as runs
from graphops.errors import ConfigurationError, GraphopsError, InvalidInputError, UserError
from graphops.observe.logs import configure_logging
from graphops.settings import Settings, load_settings

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors share one error path."""

    def error(self, message: str) -> Any:
        raise InvalidInputError(f"{message} (see 'graphops --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="graphops", description="LLMOps middleware for LangGraph graphs.")
    parser.add_argument("--version", action="version", version=f"graphops {version('graphops')}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    for add_parser in (
        ask, db, runs, replay, prompts, ingest, limits, cache, flags, rollout, feedback,
    ):  # fmt: skip
        add_parser(commands)
    return parser


def _translated(exc: Exception, settings: Settings | None) -> GraphopsError | None:
    """The graphops error a driver's or the file system's exception means, if it is one.

    Database errors about the database itself (locked, damaged, unreachable) and
    an ``OSError`` on a file under the data folder; anything else is a bug.
    """
    from graphops.db.failures import storage_error

    url = settings.database if settings is not None else None
    if not isinstance(exc, OSError):
        return storage_error(exc, url)
    filename = getattr(exc, "filename", None)
    if settings is None or filename is None:
        return None
    data = settings.data_dir.absolute()
    path = type(data)(str(filename)).absolute()
    if path != data and data not in path.parents:
        return None
    return ConfigurationError(
        f"cannot use {path} in GRAPHOPS_DATA_DIR ({exc.strerror or exc}): point "
        "GRAPHOPS_DATA_DIR at a folder graphops can write"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    settings: Settings | None = None
    try:
        args = _parser().parse_args(argv)
        settings = load_settings()
        configure_logging(settings.log_format, settings.log_level)
        code: int = args.handler(args, settings)
        return code
    except GraphopsError as exc:
        return _failed(exc)
    except KeyboardInterrupt:
        print("graphops: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`graphops ask ... | head -3`): stop quietly, as cat does;
        # stdout points at /dev/null so Python's own flush at exit does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a killed writer
    except Exception as exc:
        error = _translated(exc, settings)
        if error is None:
            raise  # a bug: keep its traceback
        return _failed(error)


def _failed(exc: GraphopsError) -> int:
    print(f"graphops: error: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, UserError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
