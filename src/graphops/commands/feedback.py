"""``graphops feedback RUN SCORE``: score a stored run, 0 (bad) to 1 (good).

``RUN`` is a run's trace id or a thread id (its latest run), as ``graphops runs``
lists them. A rollout compares the mean score of its canary's runs with its
control's (docs/rollout.md); in Python, ``graphops.rollout.feedback.Feedback``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from graphops.errors import InvalidInputError
from graphops.prompts.refs import default_actor

if TYPE_CHECKING:
    from graphops.settings import Settings

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``feedback`` to the ``graphops`` parser."""
    feedback = commands.add_parser("feedback", help="score a stored run, 0 (bad) to 1 (good)")
    feedback.add_argument("run", metavar="RUN", help="a trace id, or a thread id (its latest run)")
    feedback.add_argument("score", metavar="SCORE", help="0 (bad) to 1 (good)")
    feedback.add_argument("--comment", default="", help="why, kept with the score")
    feedback.add_argument("--actor", help="who scores it (default: the OS user)")
    feedback.set_defaults(handler=_feedback)


def _feedback(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.db import prepare
    from graphops.rollout.feedback import Feedback

    try:
        score = float(args.score)
    except ValueError:
        raise InvalidInputError(f"a score is a number from 0 to 1, not {args.score!r}") from None
    trace = Feedback(prepare(settings)).record(
        args.run, score, actor=args.actor or default_actor(), comment=args.comment
    )
    print(f"run {trace} scored {score:g}")
    return 0
