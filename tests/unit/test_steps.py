"""Each step alone: a function of (state, scope), its outcome, span attributes and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from graphops.observe import Metrics
from graphops.policies import CacheAnswer, CachePolicy, GuardPolicy
from graphops.runtime import Identity, RunScope
from graphops.steps import (
    cache_hit,
    cache_lookup_step,
    cache_store_step,
    guard_step,
    refused,
    settle_scope,
    settle_step,
)


def scope() -> RunScope:
    return RunScope("run-1", "g", Identity(user="ann"))


class Question(BaseModel):
    question: str = ""


@pytest.mark.parametrize(
    ("state", "outcome", "message"),
    [
        ({"question": "What are the cache keys?"}, "allowed", None),
        ({}, "allowed", None),  # nothing to check
        (Question(question="as a pydantic state"), "allowed", None),
        ({"question": "   "}, "refused", "the question is empty"),
        ({"question": "x" * 31}, "refused", "the question is 31 characters long; the limit is 30"),
        ({"question": "a\x00b"}, "refused", "the question contains a NUL character"),
        ({"question": 42}, "refused", "the 'question' input is int, not text"),
        (Question(question=""), "refused", "the question is empty"),
    ],
)
def test_the_guard_validates_the_question(state: Any, outcome: str, message: str | None) -> None:
    step = guard_step(GuardPolicy(max_question_chars=30))
    run = scope()
    result = step.run(state, run)
    assert result.outcome["outcome"] == outcome
    assert result.attributes == {"graphops.guard.outcome": outcome}
    assert run.admission == result.outcome
    if message is None:
        assert result.stop is None and result.outcome["reason"] is None
    else:
        assert result.stop == "refused"
        assert result.outcome["reason"] == "invalid_input"
        assert str(result.outcome["message"]).startswith(message)
    metrics = Metrics(CollectorRegistry())
    assert step.count is not None
    step.count(result, metrics)
    reason = result.outcome["reason"] or ""
    assert metrics.guard_decisions.labels(outcome, reason)._value.get() == 1


def test_policies_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="max_question_chars"):
        GuardPolicy(max_question_chars=0)
    with pytest.raises(ValueError, match="question_key"):
        GuardPolicy(question_key="")


@dataclass(frozen=True)
class Scripted(CachePolicy):
    """A cache that answers every lookup (the cache tiers are not built yet)."""

    def lookup(self, state: Any, scope: RunScope) -> CacheAnswer | None:
        return CacheAnswer({"answer": "cached"}, tier="semantic")


def test_the_cache_lookup_misses_until_a_tier_answers() -> None:
    metrics = Metrics(CollectorRegistry())
    miss = cache_lookup_step(CachePolicy())
    result = miss.run({"question": "q"}, scope())
    assert result.outcome == {"hit": False, "tier": None} and result.stop is None
    assert result.attributes == {"graphops.cache.hit": False}
    assert miss.count is not None
    miss.count(result, metrics)
    assert metrics.cache_requests.labels("", "miss")._value.get() == 1

    hit = cache_lookup_step(Scripted())
    result = hit.run({"question": "q"}, scope())
    assert result.outcome == {"hit": True, "tier": "semantic"}
    assert result.update == {"answer": "cached"} and result.stop == "answered"
    assert hit.count is not None
    hit.count(result, metrics)
    assert metrics.cache_requests.labels("semantic", "hit")._value.get() == 1


def test_the_store_skips_cached_and_degraded_answers() -> None:
    step = cache_store_step(CachePolicy())
    run = scope()
    assert step.run({}, run).outcome == {"stored": False, "reason": None}
    run.outcomes["cache"] = {"hit": True, "tier": "exact"}
    assert step.run({}, run).outcome == {"stored": False, "reason": "cache_hit"}
    run.outcomes.pop("cache")
    run.outcomes["degraded"] = {"reason": "provider down"}
    assert step.run({}, run).outcome == {"stored": False, "reason": "degraded"}


def test_a_scope_settles_once() -> None:
    run = scope()
    run.usage.llm_calls, run.usage.input_tokens, run.usage.output_tokens = 2, 30, 7
    first = settle_step().run({}, run).outcome
    assert first == {"llm_calls": 2, "input_tokens": 30, "output_tokens": 7}
    run.usage.input_tokens = 999  # counted after the settlement: not settled again
    assert settle_scope(run) == first


def test_routes_read_the_ops_channel() -> None:
    refused_state = {"graphops": {"guard": {"outcome": "refused"}}}
    hit_state = {"graphops": {"guard": {"outcome": "allowed"}, "cache": {"hit": True}}}
    assert refused(refused_state) and not refused(hit_state) and not refused({})
    assert cache_hit(hit_state) and not cache_hit(refused_state) and not cache_hit({})
    assert refused(Question()) is False  # an object state without the channel
