"""``graphops limits show|reset``: one user's (tenant's, IP's, key's) usage, and clearing it.

The limits are the ones the CLI runs with (``GRAPHOPS_LIMITS_FILE``), counted
where it counts them (``GRAPHOPS_REDIS_URL``; without it this process's memory,
which holds nothing yet: the command says so). A reset is audited: one log
line on ``graphops.limits`` with who was reset, by whom, and the keys cleared.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
from typing import Any

from graphops.errors import ConfigurationError, InvalidInputError, RunError
from graphops.settings import Settings

__all__ = ["add_parser"]

_log = logging.getLogger("graphops.limits")
_SUBJECTS = ("user", "tenant", "ip", "api_key")


def add_parser(commands: Any) -> None:
    """Add ``limits`` to the ``graphops`` parser."""
    limits = commands.add_parser("limits", help="show or reset request limits and token quotas")
    actions = limits.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="what a user (tenant, IP, key) used and has left")
    reset = actions.add_parser("reset", help="clear what a user (tenant, IP, key) used")
    for parser in (show, reset):
        who = parser.add_mutually_exclusive_group(required=True)
        for subject in _SUBJECTS:
            who.add_argument(f"--{subject.replace('_', '-')}", dest=subject, metavar="ID")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=_show)
    reset.set_defaults(handler=_reset)


def _subject(args: argparse.Namespace) -> tuple[str, str]:
    """Whose limits: the subject and its id as limits key it (an API key: its fingerprint)."""
    for subject in _SUBJECTS:
        value = getattr(args, subject)
        if value is not None:
            if not value.strip():
                raise InvalidInputError(f"--{subject.replace('_', '-')} needs a non-empty id")
            if subject == "api_key":
                from graphops.runtime.scope import Identity

                value = Identity.from_metadata({"api_key": value}).api_key_id or value
            return subject, value
    raise InvalidInputError("name whose limits: --user, --tenant, --ip or --api-key")


def _limiter(settings: Settings) -> Any:
    from graphops.commands.reference import reference_guard

    policy = reference_guard(settings)
    if policy.limiter is None:
        raise ConfigurationError(
            "no limits are configured: set GRAPHOPS_LIMITS_FILE (see docs/limits.md)"
        )
    return policy.limiter


def _where(limiter: Any) -> str:
    label = getattr(limiter.store, "label", None)
    if label is not None:
        return f"Redis at {label}"
    return "this process's memory (nothing is shared: set GRAPHOPS_REDIS_URL)"


def _store_call(call: Any, *args: Any) -> Any:
    from graphops.limits.store import StoreUnavailable

    try:
        return call(*args)
    except StoreUnavailable as exc:
        raise RunError(f"the limit store did not answer: {exc}") from None


def _show(args: argparse.Namespace, settings: Settings) -> int:
    subject, who = _subject(args)
    limiter = _limiter(settings)
    rows = _store_call(limiter.usage, subject, who)
    if args.json:
        print(json.dumps({"subject": subject, "id": who, "limits": rows}))
        return 0
    print(f"{subject} {who}, counted in {_where(limiter)}:")
    if not rows:
        print(f"  no limit counts a {subject}")
    for row in rows:
        left = f"{row['remaining']} left"
        reset = f", resets in {row['reset_s']:.0f} s" if row.get("reset_s") else ""
        print(f"  {row['kind']:<9}{row['limit']:<22}{row['used']:>10} used, {left}{reset}")
    return 0


def _reset(args: argparse.Namespace, settings: Settings) -> int:
    subject, who = _subject(args)
    limiter = _limiter(settings)
    cleared = _store_call(limiter.reset, subject, who)
    _log.warning(
        "limits reset",
        extra={
            "graphops": {
                "subject": subject,
                "id": who,
                "keys_cleared": cleared,
                "by": getpass.getuser(),
                "store": _where(limiter),
            }
        },
    )
    print(f"{subject} {who}: cleared {cleared} counters in {_where(limiter)}")
    return 0
