"""The cache steps: ``cache_lookup`` in the head, ``cache_store`` as the run closes.

The lookup asks :meth:`CachePolicy.lookup`; a hit writes the cached state
update (only the graph's own keys of it) and the run ends there, past the
user's nodes. The ops channel says ``cache: {hit, tier, similarity, age_s, key}``;
the span says the lookup's outcome, the best candidate's similarity and the
verifier's vetoes; the metrics count hits and misses per tier, vetoes per kind
and the tokens (and their cost) a hit saved.

The store asks :meth:`CachePolicy.store` with the run's output, for a run that
ended normally and was neither refused, answered from the cache, nor
degraded. In an event loop, a store that does I/O (a database, the semantic
tier's embedding) runs in the policy's background worker, so the loop never
waits on it (``await policy.drain()`` waits for it, in tests).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from graphops.cache.answers import Lookup
from graphops.observe import semconv as sc
from graphops.policies import CacheAnswer, CachePolicy
from graphops.runtime import RunScope
from graphops.steps.base import Step, StepResult

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["cache_lookup_step", "cache_store_step"]


def cache_lookup_step(policy: CachePolicy, channels: Collection[str] | None = None) -> Step:
    """The lookup as a step: a hit answers the run, a miss lets it run.

    ``channels`` are the graph's state keys: a hit writes only those of its update.
    """
    keep = None if channels is None else frozenset(channels)

    def cache_lookup(state: Any, scope: RunScope) -> StepResult:
        return _result(policy.lookup(state, scope), scope, keep)

    async def acache_lookup(state: Any, scope: RunScope) -> StepResult:
        if not policy.blocking:
            return cache_lookup(state, scope)
        answer = await anyio.to_thread.run_sync(policy.lookup, state, scope)
        return _result(answer, scope, keep)

    return Step("cache_lookup", "cache", cache_lookup, _count_lookup(policy), arun=acache_lookup)


def _result(answer: CacheAnswer | None, scope: RunScope, keep: frozenset[str] | None) -> StepResult:
    found = scope.cache if isinstance(scope.cache, Lookup) else None
    attributes: dict[str, Any] = {sc.CACHE_HIT: answer is not None}
    events: list[tuple[str, dict[str, Any]]] = []
    decision = found.decision if found is not None else None
    if decision is not None:
        for conflict in decision.rejected:
            events.append(
                (sc.CACHE_REJECTED_EVENT, {"reason": conflict.kind, "detail": conflict.detail})
            )
    if answer is None:
        outcome = "miss"
        if found is None:
            outcome = "no_question"
        elif found.error is not None:
            outcome = "error"
        elif decision is not None and decision.rejected:
            outcome = "rejected"
        attributes[sc.CACHE_LOOKUP] = outcome
        return StepResult({"hit": False, "tier": None}, attributes, events=tuple(events))
    attributes.update(
        {
            sc.CACHE_LOOKUP: "hit",
            sc.CACHE_TIER: answer.tier,
            sc.CACHE_SIMILARITY: answer.similarity,
            sc.CACHE_AGE: answer.age_s,
        }
    )
    if decision is not None and decision.threshold is not None:
        attributes[sc.CACHE_THRESHOLD] = decision.threshold
    update = dict(answer.update)
    if keep is not None:
        update = {k: v for k, v in update.items() if k in keep}
    outcome_record = {
        "hit": True,
        "tier": answer.tier,
        "similarity": answer.similarity,
        "age_s": answer.age_s,
        "key": answer.key,
    }
    return StepResult(
        outcome_record, attributes, update=update, stop="answered", events=tuple(events)
    )


def _count_lookup(policy: CachePolicy) -> Any:
    def count(result: StepResult, metrics: Metrics) -> None:
        outcome = result.outcome
        if outcome["hit"]:
            tier = outcome["tier"] or ""
            metrics.cache_requests.labels(tier, "hit").inc()
            if tier == "semantic":
                metrics.cache_requests.labels("exact", "miss").inc()
            entry_tokens = _tokens(policy, outcome.get("key"))
            if entry_tokens:
                metrics.cache_tokens_saved.labels(tier).inc(entry_tokens)
                if policy.tokens_cost:
                    metrics.cache_cost_saved.labels(tier).inc(entry_tokens * policy.tokens_cost)
            return
        lookup = result.attributes.get(sc.CACHE_LOOKUP)
        if lookup in ("no_question", "error"):
            metrics.cache_requests.labels("", lookup).inc()
            return
        metrics.cache_requests.labels("exact", "miss").inc()
        if policy.semantic is not None:
            metrics.cache_requests.labels("semantic", "miss").inc()
        for name, attributes in result.events:
            if name == sc.CACHE_REJECTED_EVENT:
                metrics.cache_verifier_rejections.labels(attributes["reason"]).inc()

    return count


def _tokens(policy: CachePolicy, key: Any) -> int:
    if not isinstance(key, str):
        return 0
    try:
        entry = policy.answer_store.get(key, 0.0)
    except Exception:  # counting must never fail a run
        return 0
    return int(entry.tokens) if entry is not None else 0


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
        if policy.blocking and policy.in_event_loop():
            policy.store_soon(state, scope)
            attributes = {sc.CACHE_STORED: False, sc.CACHE_STORE_SKIPPED: "background"}
            return StepResult({"stored": False, "reason": "background"}, attributes)
        stored = policy.store(state, scope)
        reason = _why_not(scope) if not stored else None
        attributes = {sc.CACHE_STORED: stored}
        if reason is not None:
            attributes[sc.CACHE_STORE_SKIPPED] = reason
        return StepResult({"stored": stored, "reason": reason}, attributes)

    return Step("cache_store", "cache_store", cache_store)


def _why_not(scope: RunScope) -> str | None:
    found = scope.cache
    return getattr(found, "not_stored", None) if found is not None else "not_looked_up"


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
