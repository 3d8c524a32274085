"""The ops channel: this run's step outcomes, in graphops' own slot of the state.

Steps talk to routes and to the caller through one namespaced key, ``graphops``,
so no user key is ever touched. The channel is LangGraph's ``UntrackedValue``:
it is never checkpointed, so every invocation (fresh, resumed, forked) starts
without it and no run ever sees another run's outcome. It holds only typed
outcomes: the run's record, the guard's decision, the cache lookup, and whether
the answer was degraded. The store and the settlement happen as the run's scope
closes, after its output is made: they are in the scope (``scope.outcomes``,
which close hooks read) and in their spans, not in the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypedDict

from langgraph.channels.untracked_value import UntrackedValue

__all__ = [
    "OPS_KEY",
    "CacheOutcome",
    "Degraded",
    "GuardOutcome",
    "OpsChannel",
    "OpsOutcomes",
    "QuotaSettlement",
    "RunRecord",
    "Settlement",
    "StoreOutcome",
    "cache_hit",
    "ops_channel",
    "ops_of",
    "refused",
]

OPS_KEY = "graphops"


class RunRecord(TypedDict, total=False):
    """Who ran, under which ids: the run scope's identity as the caller sees it."""

    run_id: str
    trace_id: str | None
    graph: str
    thread_id: str | None
    user: str | None
    tenant: str | None
    session: str | None


class GuardOutcome(TypedDict, total=False):
    """The guard's decision: ``refused`` ends the run with a reason and maybe a retry-after."""

    outcome: Literal["allowed", "refused"]
    reason: str | None
    message: str | None
    retry_after_s: float | None
    limit: dict[str, Any] | None  # the limit that refused: kind, per, amount, window, remaining
    unchecked: bool  # admitted although the limit store did not answer (fail-open)


class CacheOutcome(TypedDict, total=False):
    """The cache lookup: a hit names the tier that answered."""

    hit: bool
    tier: Literal["exact", "semantic"] | None


class Degraded(TypedDict):
    """The answer came from a lower rung of the degradation ladder, and why."""

    reason: str


class StoreOutcome(TypedDict, total=False):
    """Whether the run's answer was stored in the cache (``scope.outcomes["cache_store"]``)."""

    stored: bool
    reason: str | None


class QuotaSettlement(TypedDict):
    """Tokens reserved at admission and really used: the difference was refunded or charged."""

    reserved: int
    used: int


class Settlement(TypedDict, total=False):
    """The run's usage, settled once (``scope.outcomes["settled"]``): LLM calls and tokens."""

    llm_calls: int
    input_tokens: int
    output_tokens: int
    quota: QuotaSettlement


class OpsOutcomes(TypedDict, total=False):
    """Everything the ops channel holds (each key written by one step)."""

    run: RunRecord
    guard: GuardOutcome
    cache: CacheOutcome
    degraded: Degraded


def ops_channel() -> Any:
    """The channel's annotation for a state schema: ``graphops: ops_channel()``."""
    return Annotated[OpsOutcomes, UntrackedValue(dict, guard=False)]


class OpsChannel(TypedDict, total=False):
    """The channel as a schema fragment, for a hand-built graph's state."""

    graphops: Annotated[OpsOutcomes, UntrackedValue(dict, guard=False)]


def ops_of(state: Any) -> Mapping[str, Any]:
    """The ops channel of ``state`` (a dict or an object), empty when absent."""
    value = state.get(OPS_KEY) if isinstance(state, Mapping) else getattr(state, OPS_KEY, None)
    return value or {}


def refused(state: Any) -> bool:
    """Whether the guard refused this run."""
    return bool(ops_of(state).get("guard", {}).get("outcome") == "refused")


def cache_hit(state: Any) -> bool:
    """Whether the cache answered this run."""
    return bool(ops_of(state).get("cache", {}).get("hit"))
