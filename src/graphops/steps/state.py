"""The ops channel: graphops' own slot in the graph state.

Steps talk to each other (guard → route, cache lookup → route) through one
namespaced channel, ``graphops``, so no user key is ever touched. The first step
of a run overwrites it, so a new turn on a thread never sees the last turn's
outcome.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

__all__ = ["OPS_KEY", "OpsChannel", "cache_hit", "merge_ops", "ops_of", "refused"]

OPS_KEY = "graphops"


def merge_ops(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Shallow merge: each step owns its own key."""
    return {**(left or {}), **(right or {})}


class OpsChannel(TypedDict, total=False):
    """The channel as a schema fragment."""

    graphops: Annotated[dict[str, Any], merge_ops]


def ops_of(state: Any) -> dict[str, Any]:
    """The ops channel of ``state`` (a dict or an object), empty when absent."""
    value = state.get(OPS_KEY) if isinstance(state, dict) else getattr(state, OPS_KEY, None)
    return value or {}


def refused(state: Any) -> bool:
    """Whether the guard refused this run."""
    return bool(ops_of(state).get("guard", {}).get("outcome") == "refused")


def cache_hit(state: Any) -> bool:
    """Whether the cache answered this run."""
    return bool(ops_of(state).get("cache", {}).get("hit"))
