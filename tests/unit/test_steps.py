"""Each step alone: a function of (state, scope), its outcome, span attributes and metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from graphops.errors import ConfigurationError
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
        ({"question": "tab\tand\nbreaks\r\n: text"}, "allowed", None),
        ({"question": "x" * 30}, "allowed", None),  # exactly the limit
        ({"question": "   "}, "refused", "the question is empty"),
        ({"question": "x" * 31}, "refused", "the question is 31 bytes long in UTF-8; the limit"),
        # 16 characters, 32 bytes: the limit counts bytes
        ({"question": "é" * 16}, "refused", "the question is 32 bytes long in UTF-8; the limit"),
        ({"question": "a\x00b"}, "refused", "the question contains a control character (U+0000)"),
        ({"question": "\x1b[2J"}, "refused", "the question contains a control character (U+001B)"),
        ({"question": "a\x85b"}, "refused", "the question contains a control character (U+0085)"),
        ({"question": 42}, "refused", "the question is int, not text"),
        ({"question": b"bytes"}, "refused", "the question is bytes, not text"),
        (Question(question=""), "refused", "the question is empty"),
        # the messages form: the last user message is the question
        ({"messages": [HumanMessage("What is a tenant?")]}, "allowed", None),
        ({"messages": [HumanMessage("  ")]}, "refused", "the question is empty"),
        ({"messages": [HumanMessage("y" * 31)]}, "refused", "the question is 31 bytes long"),
        ({"messages": [AIMessage("an answer, not checked" * 9)]}, "allowed", None),
    ],
)
def test_the_guard_validates_the_question(state: Any, outcome: str, message: str | None) -> None:
    step = guard_step(GuardPolicy(max_input_bytes=30))
    run = scope()
    result = step.run(state, run)
    assert result.outcome["outcome"] == outcome
    assert result.attributes["graphops.guard.outcome"] == outcome
    assert run.admission == result.outcome
    if message is None:
        assert result.stop is None and result.outcome["reason"] is None
    else:
        assert result.stop == "refused"
        assert result.outcome["reason"] == "invalid_input"
        assert result.outcome["retry_after_s"] is None  # the same input will never pass
        assert result.attributes["graphops.guard.reason"] == "invalid_input"
        assert str(result.outcome["message"]).startswith(message)
    metrics = Metrics(CollectorRegistry())
    assert step.count is not None
    step.count(result, metrics)
    reason = result.outcome["reason"] or ""
    assert metrics.guard_decisions.labels(outcome, reason)._value.get() == 1


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_input_bytes": 0}, "GuardPolicy.max_input_bytes is 0"),
        ({"max_input_bytes": "8k"}, "GuardPolicy.max_input_bytes is '8k'"),
        ({"token_estimate": -1}, "GuardPolicy.token_estimate is -1"),
        ({"question_key": ""}, "question_key"),
        ({"messages_key": ""}, "messages_key"),
        ({"on_refusal": "explode"}, "GuardPolicy.on_refusal is 'explode'"),
        ({"requests": ("10/minute",)}, "GuardPolicy.requests takes a tuple of RequestLimit"),
        ({"quotas": (100,)}, "GuardPolicy.quotas takes a tuple of TokenQuota"),
        ({"store": "redis://"}, "GuardPolicy.store takes a LimitStore, not str"),
    ],
)
def test_policies_refuse_bad_values(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        GuardPolicy(**options)


@dataclass(frozen=True)
class Scripted(CachePolicy):
    """A cache that answers every lookup, whatever the question."""

    def lookup(self, state: Any, scope: RunScope) -> CacheAnswer | None:
        return CacheAnswer({"answer": "cached"}, tier="semantic")


def test_the_cache_lookup_misses_until_a_tier_answers() -> None:
    metrics = Metrics(CollectorRegistry())
    miss = cache_lookup_step(CachePolicy())
    result = miss.run({"question": "q"}, scope())
    assert result.outcome == {"hit": False, "tier": None} and result.stop is None
    assert result.attributes == {"graphops.cache.hit": False, "graphops.cache.lookup": "miss"}
    assert miss.count is not None
    miss.count(result, metrics)
    assert metrics.cache_requests.labels("exact", "miss")._value.get() == 1

    hit = cache_lookup_step(Scripted())
    result = hit.run({"question": "q"}, scope())
    assert result.outcome == {
        "hit": True,
        "tier": "semantic",
        "similarity": 1.0,
        "age_s": 0.0,
        "key": None,
    }
    assert result.update == {"answer": "cached"} and result.stop == "answered"
    assert hit.count is not None
    hit.count(result, metrics)
    assert metrics.cache_requests.labels("semantic", "hit")._value.get() == 1


def test_the_store_skips_cached_and_degraded_answers() -> None:
    step = cache_store_step(CachePolicy())
    run = scope()
    assert step.run({}, run).outcome == {"stored": False, "reason": "not_looked_up"}
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
