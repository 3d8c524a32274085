"""The cache steps: ``cache_lookup`` in the head, ``cache_store`` in the tail.

The lookup asks :meth:`CachePolicy.lookup`; a hit writes the cached state
update, and the run goes past the user's nodes to the tail. The store asks
:meth:`CachePolicy.store` for a run that was neither answered from the cache nor
degraded. The cache tiers themselves are not built yet: every lookup misses.
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
    """The store as a step: never stores an answer that came from the cache or was degraded."""

    def cache_store(state: Any, scope: RunScope) -> StepResult:
        if scope.outcomes.get("cache", {}).get("hit"):
            return StepResult({"stored": False, "reason": "cache_hit"})
        if "degraded" in scope.outcomes:
            return StepResult({"stored": False, "reason": "degraded"})
        return StepResult({"stored": policy.store(state, scope), "reason": None})

    return Step("cache_store", "cache_store", cache_store)
