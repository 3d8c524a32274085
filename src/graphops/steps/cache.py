"""The cache steps: ``cache_lookup`` in the head, ``cache_store`` as the run closes.

The lookup asks :meth:`CachePolicy.lookup`; a hit writes the cached state
update, and the run ends there, past the user's nodes. The store asks
:meth:`CachePolicy.store` with the run's output, for a run that ended normally
and was neither refused, answered from the cache, nor degraded. The cache tiers
themselves are not built yet: every lookup misses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphops.observe import semconv as sc
from graphops.policies import CachePolicy
from graphops.runtime import RunScope
from graphops.steps.base import Step, StepResult

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["cache_lookup_step", "cache_store_step"]


def cache_lookup_step(policy: CachePolicy) -> Step:
    """The lookup as a step: a hit answers the run, a miss lets it run."""

    def cache_lookup(state: Any, scope: RunScope) -> StepResult:
        answer = policy.lookup(state, scope)
        if answer is None:
            return StepResult({"hit": False, "tier": None}, {sc.CACHE_HIT: False})
        return StepResult(
            {"hit": True, "tier": answer.tier},
            {sc.CACHE_HIT: True},
            update=dict(answer.update),
            stop="answered",
        )

    return Step("cache_lookup", "cache", cache_lookup, _count)


def _count(result: StepResult, metrics: Metrics) -> None:
    tier = result.outcome.get("tier") or ""
    metrics.cache_requests.labels(tier, "hit" if result.outcome["hit"] else "miss").inc()


def cache_store_step(policy: CachePolicy) -> Step:
    """The store as a step, run at close on the run's output.

    Never stores what a run that did not end normally, was refused, was answered
    from the cache or was degraded returned.
    """

    def cache_store(state: Any, scope: RunScope) -> StepResult:
        skipped = _skip_store(scope)
        if skipped is not None:
            attributes = {sc.CACHE_STORED: False, sc.CACHE_STORE_SKIPPED: skipped}
            return StepResult({"stored": False, "reason": skipped}, attributes)
        stored = policy.store(state, scope)
        return StepResult({"stored": stored, "reason": None}, {sc.CACHE_STORED: stored})

    return Step("cache_store", "cache_store", cache_store)


def _skip_store(scope: RunScope) -> str | None:
    """Why this run's answer is not one to store, or None when it is."""
    if scope.ended is not None and scope.ended != "ok":
        return scope.ended
    if scope.outcomes.get("guard", {}).get("outcome") == "refused":
        return "refused"
    if scope.outcomes.get("cache", {}).get("hit"):
        return "cache_hit"
    if "degraded" in scope.outcomes:
        return "degraded"
    return None
