"""Which variant a run gets: a pure function of the flag and the run's context.

Assignment is sticky: the run's key (the first of the flag's ``sticky_by``
attributes the context has, say ``user=ana``) is hashed with the flag's name
into one of 10,000 buckets, and the weights are laid over the buckets in the
order the flag lists its variants. The same key always lands in the same
bucket, in every process and after every restart (SHA-256, no seed, no process
state), so a user keeps their variant, and growing a canary's share only moves
users onto the canary. Hashing the flag's name in too makes two flags' splits
independent of each other. A rule's percentage of a segment uses a bucket of
its own (the flag, the rule's position and the key).

The reasons are OpenFeature's: ``DISABLED`` (killed: the default),
``TARGETING_MATCH`` (a rule took the run), ``SPLIT`` (the weights did),
``DEFAULT`` (the run has no attribute to stick to).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from graphops.flags.model import Flag

__all__ = ["BUCKETS", "Assignment", "Reason", "bucket", "evaluate", "sticky_key"]

BUCKETS = 10_000
"""Buckets a key hashes into: a weight of 1% is 100 of them."""

Reason = Literal["DISABLED", "TARGETING_MATCH", "SPLIT", "DEFAULT", "STALE", "ERROR"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """What a run got from a flag: the variant, its value, why, and the flag's version.

    ``stale``: evaluated on the last flags read because the flag store failed.
    """

    flag: str
    variant: str
    value: Any
    reason: Reason
    version: int
    stale: bool = False

    def label(self) -> str:
        """``flag=variant``, as spans and the runs listing show it."""
        return f"{self.flag}={self.variant}"


def bucket(*parts: str) -> int:
    """The bucket (0 to 9,999) of ``parts`` joined: the same everywhere, always."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def sticky_key(flag: Flag, context: Mapping[str, Any]) -> str | None:
    """``attribute=value`` of the first ``sticky_by`` attribute the context has, or None."""
    for attribute in flag.sticky_by:
        value = context.get(attribute)
        if value is not None and str(value) != "":
            return f"{attribute}={value}"
    return None


def evaluate(flag: Flag, context: Mapping[str, Any]) -> Assignment:
    """The variant ``flag`` gives a run with ``context`` (user, tenant, thread, ...)."""
    if flag.killed:
        return _assigned(flag, flag.default, "DISABLED")
    key = sticky_key(flag, context)
    for position, rule in enumerate(flag.rules):
        value = context.get(rule.attribute)
        if value is None or str(value) not in rule.values:
            continue
        if rule.percent >= 100:
            return _assigned(flag, rule.variant, "TARGETING_MATCH")
        if key is not None and bucket(flag.name, f"rule{position}", key) < rule.percent * 100:
            return _assigned(flag, rule.variant, "TARGETING_MATCH")
    if key is None:
        return _assigned(flag, flag.default, "DEFAULT")
    slot = bucket(flag.name, key)
    edge = 0
    for variant in flag.split:
        edge += flag.weights[variant] * (BUCKETS // 100)
        if slot < edge:
            return _assigned(flag, variant, "SPLIT")
    return _assigned(flag, flag.split[-1], "SPLIT")  # unreachable: the weights sum to 100


def _assigned(flag: Flag, variant: str, reason: Reason) -> Assignment:
    return Assignment(flag.name, variant, flag.variants[variant], reason, flag.version)
