"""The guard's limits through a built graph, on the memory store with an injected clock.

Admission (request limits and token-quota reservations, decided at once), the
refusal as the caller, the span, the metrics and the log see it, settlement at
close, fail-open and fail-closed when the store does not answer, and bad
configuration. The same limits on Redis are in tests/integration.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.errors import ConfigurationError, RefusedError
from graphops.limits import Bulkhead, MemoryLimitStore, RequestLimit, TokenQuota
from graphops.limits.slot_store import Grant
from graphops.limits.slots_memory import MemorySlotStore
from graphops.limits.store import QuotaCheck, RateCheck, StoreUnavailable, Verdict
from graphops.models import ScriptedChatModel
from graphops.observe import Metrics, Telemetry
from graphops.policies import GuardPolicy, Ops

pytestmark = pytest.mark.anyio

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    """Epoch seconds that move only when a test moves them."""

    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class QA(TypedDict, total=False):
    question: str
    answer: str


def qa_graph(words: int = 9) -> StateGraph[QA]:
    """One node, one LLM call: the prompt is the question, the reply ``words`` words."""
    chat = ScriptedChatModel(respond=lambda messages: " ".join(["word"] * words))

    def answer(state: QA) -> QA:
        return {"answer": chat.invoke([HumanMessage(state["question"])]).text}

    async def aanswer(state: QA) -> QA:
        return {"answer": (await chat.ainvoke([HumanMessage(state["question"])])).text}

    graph: StateGraph[QA] = StateGraph(QA)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph


def observed(policy: GuardPolicy, telemetry: Telemetry | None = None, words: int = 9) -> Any:
    return build_observed_graph(qa_graph(words), ops=Ops(guard=policy, telemetry=telemetry))


def who(user: str = "ann", **more: str) -> Any:
    return {"metadata": {"user": user, **more}}


def guard_of(out: dict[str, Any]) -> dict[str, Any]:
    return dict(out["graphops"]["guard"])


# ---------------------------------------------------------------- request limits
def test_a_user_gets_the_limit_and_then_a_retry_after_pointing_at_the_oldest_run() -> None:
    clock = Clock()
    app = observed(GuardPolicy(requests=(RequestLimit("user", "3/minute"),), clock=clock))
    for second in range(3):
        clock.now = NOON + second * 10
        assert guard_of(app.invoke({"question": "hi"}, who()))["outcome"] == "allowed"
    clock.now = NOON + 30
    out = app.invoke({"question": "hi"}, who())
    guard = guard_of(out)
    assert guard["outcome"] == "refused" and guard["reason"] == "rate_limited"
    assert guard["retry_after_s"] == 30.0  # the run at NOON leaves the window at NOON + 60
    assert guard["limit"] == {
        "kind": "requests",
        "per": "user",
        "amount": 3,
        "window_s": 60,
        "rate": "3/minute",
        "remaining": 0,
        "reset_s": 30.0,
    }
    assert "answer" not in out  # refused before any node
    assert guard_of(app.invoke({"question": "hi"}, who("bob")))["outcome"] == "allowed"
    clock.now = NOON + 60.001  # the first run has left the moving window
    assert guard_of(app.invoke({"question": "hi"}, who()))["outcome"] == "allowed"


def test_every_window_of_a_rate_counts_and_runs_without_the_subject_are_not_limited() -> None:
    clock = Clock()
    policy = GuardPolicy(requests=(RequestLimit("ip", "2/second;3/hour"),), clock=clock)
    app = observed(policy)
    outcomes = []
    for step in range(5):
        clock.now = NOON + step * 2  # always within 2/second, not within 3/hour
        outcomes.append(guard_of(app.invoke({"question": "q"}, who(ip="10.0.0.1")))["outcome"])
    assert outcomes == ["allowed"] * 3 + ["refused"] * 2
    refused = guard_of(app.invoke({"question": "q"}, who(ip="10.0.0.1")))
    assert refused["limit"]["window_s"] == 3600 and refused["retry_after_s"] == 3600 - 8
    assert guard_of(app.invoke({"question": "q"}, who()))["outcome"] == "allowed"  # no ip


def test_all_of_a_runs_limits_are_decided_at_once() -> None:
    """A run refused by its tenant's limit does not use up its user's."""
    clock = Clock()
    policy = GuardPolicy(
        requests=(RequestLimit("user", "5/minute"), RequestLimit("tenant", "2/minute")),
        clock=clock,
    )
    app = observed(policy)
    assert guard_of(app.invoke({"question": "q"}, who("ann", tenant="t")))["outcome"] == "allowed"
    assert guard_of(app.invoke({"question": "q"}, who("bob", tenant="t")))["outcome"] == "allowed"
    for _ in range(3):
        refused = guard_of(app.invoke({"question": "q"}, who("ann", tenant="t")))
        assert refused["reason"] == "rate_limited" and refused["limit"]["per"] == "tenant"
    assert policy.limiter is not None
    (user_row,) = policy.limiter.usage("user", "ann")
    assert user_row["used"] == 1 and user_row["remaining"] == 4  # the refusals took nothing


def test_exactly_the_limit_is_admitted_from_threads_and_from_tasks() -> None:
    policy = GuardPolicy(requests=(RequestLimit("tenant", "25/minute"),), clock=Clock())
    app = observed(policy)
    outcomes: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        out = app.invoke({"question": "q"}, who(tenant="acme"))
        with lock:
            outcomes.append(guard_of(out)["outcome"])

    threads = [threading.Thread(target=run) for _ in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("allowed") == 25 and len(outcomes) == 60

    async def many() -> list[Any]:
        return list(
            await asyncio.gather(
                *(app.ainvoke({"question": "q"}, who(tenant="other")) for _ in range(60))
            )
        )

    results = asyncio.run(many())
    assert [guard_of(r)["outcome"] for r in results].count("allowed") == 25


# ---------------------------------------------------------------- token quotas
def test_the_seeds_example_100k_tokens_a_day_then_refused_until_midnight() -> None:
    """A user with 100k tokens a day is refused once it is used up, retry-after at 00:00 UTC."""
    clock = Clock()
    # each run reserves 24,984 + 8 bytes of question = 24,992 tokens, and uses 2 prompt
    # tokens + 24,990 words = 24,992: four fit in 100k, a fifth's reservation does not
    policy = GuardPolicy(quotas=(TokenQuota("user", 100_000),), token_estimate=24_984, clock=clock)
    app = observed(policy, words=24_990)
    for _ in range(4):
        out = app.invoke({"question": "hi there"}, who())
        assert guard_of(out)["outcome"] == "allowed"
    assert policy.limiter is not None
    (row,) = policy.limiter.usage("user", "ann")
    assert row["used"] == 4 * 24_992 and row["remaining"] == 32  # settled to the real usage
    clock.now = NOON + 3600
    out = app.invoke({"question": "hi there"}, who())
    guard = guard_of(out)
    assert guard["outcome"] == "refused" and guard["reason"] == "quota_exceeded"
    assert guard["retry_after_s"] == 11 * 3600  # from 13:00 to midnight UTC
    assert guard["limit"]["kind"] == "tokens" and guard["limit"]["remaining"] == 32
    clock.now = datetime(2026, 12, 2, 0, 0, tzinfo=UTC).timestamp()  # a new day
    assert guard_of(app.invoke({"question": "hi there"}, who()))["outcome"] == "allowed"


def test_a_reservation_is_refunded_or_charged_to_the_real_usage_at_close() -> None:
    clock = Clock()
    policy = GuardPolicy(quotas=(TokenQuota("tenant", 1000),), token_estimate=100, clock=clock)
    assert policy.limiter is not None
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(
        exporters=[SimpleSpanProcessor(exporter)], metrics=Metrics(CollectorRegistry())
    )
    small = observed(policy, telemetry, words=8)  # 1 prompt token ("q") + 8 = 9 tokens
    small.invoke({"question": "q"}, who(tenant="t"))
    (row,) = policy.limiter.usage("tenant", "t")
    assert row["used"] == 9  # reserved 100 + 1 byte of question, refunded to 9
    (settle,) = [s for s in exporter.get_finished_spans() if s.name == "settle"]
    assert settle.attributes is not None
    assert settle.attributes["graphops.quota.reserved"] == 101
    assert settle.attributes["graphops.quota.settled"] == 9 - 101
    big = observed(policy, words=299)  # an under-estimate: 300 tokens, 101 reserved
    big.invoke({"question": "q"}, who(tenant="t"))
    (row,) = policy.limiter.usage("tenant", "t")
    assert row["used"] == 9 + 300  # the difference charged


def test_concurrent_runs_never_take_a_quota_past_its_limit_with_upper_bound_estimates() -> None:
    policy = GuardPolicy(quotas=(TokenQuota("user", 1000),), token_estimate=99, clock=Clock())
    app = observed(policy, words=50)  # 51 tokens a run, reserve 100 (99 + 1 byte)

    async def many() -> list[Any]:
        return list(
            await asyncio.gather(*(app.ainvoke({"question": "q"}, who()) for _ in range(40)))
        )

    results = asyncio.run(many())
    admitted = [guard_of(r)["outcome"] for r in results].count("allowed")
    assert policy.limiter is not None
    (row,) = policy.limiter.usage("user", "ann")
    assert row["used"] == admitted * 51 <= 1000
    assert admitted >= 10  # all started before any settled: exactly 1000 // 100 fit at once


def test_a_run_that_could_never_fit_is_refused_without_a_retry_after() -> None:
    policy = GuardPolicy(quotas=(TokenQuota("user", 500),), token_estimate=1000, clock=Clock())
    guard = guard_of(observed(policy).invoke({"question": "q"}, who()))
    assert guard["reason"] == "quota_exceeded" and guard["retry_after_s"] is None
    assert "more than the whole user quota of 500" in guard["message"]


# ---------------------------------------------------------------- the refusal, as reported
def test_a_refusal_is_a_span_event_a_metric_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = InMemorySpanExporter()
    metrics = Metrics(CollectorRegistry())
    telemetry = Telemetry(exporters=[SimpleSpanProcessor(exporter)], metrics=metrics)
    policy = GuardPolicy(requests=(RequestLimit("user", "1/hour"),), clock=Clock())
    app = observed(policy, telemetry)
    app.invoke({"question": "q"}, who())
    with caplog.at_level(logging.WARNING, logger="graphops.guard"):
        out = app.invoke({"question": "q"}, who())
    assert guard_of(out)["reason"] == "rate_limited"
    (line,) = [r for r in caplog.records if r.name == "graphops.guard"]
    fields = line.graphops  # type: ignore[attr-defined]
    assert line.getMessage() == "run refused" and fields["reason"] == "rate_limited"
    assert fields["user"] == "ann" and fields["retry_after_s"] == 3600.0
    assert fields["trace_id"] and fields["run_id"]
    guards = [s for s in exporter.get_finished_spans() if s.name == "guard"]
    events = [e for e in guards[-1].events if e.name == "graphops.guard.refused"]
    assert len(events) == 1 and events[0].attributes is not None
    assert events[0].attributes["graphops.guard.limit"] == "requests:user"
    assert events[0].attributes["graphops.guard.retry_after_s"] == 3600.0
    assert metrics.guard_decisions.labels("refused", "rate_limited")._value.get() == 1
    assert metrics.guard_decisions.labels("allowed", "")._value.get() == 1


async def test_on_refusal_raise_raises_a_typed_error_after_recording_it() -> None:
    metrics = Metrics(CollectorRegistry())
    telemetry = Telemetry(exporters=[], metrics=metrics)
    policy = GuardPolicy(
        requests=(RequestLimit("user", "1/hour"),), on_refusal="raise", clock=Clock()
    )
    app = observed(policy, telemetry)
    await app.ainvoke({"question": "q"}, who())
    with pytest.raises(RefusedError) as caught:
        await app.ainvoke({"question": "q"}, who())
    assert caught.value.reason == "rate_limited" and caught.value.retry_after_s == 3600.0
    assert caught.value.outcome["limit"]["per"] == "user"
    assert metrics.guard_decisions.labels("refused", "rate_limited")._value.get() == 1


# ---------------------------------------------------------------- the store does not answer
class Down(MemoryLimitStore):
    """A store that cannot answer, as Redis down or past its timeout looks to the limiter."""

    remote = True

    def admit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        raise StoreUnavailable("redis://127.0.0.1:1: connection refused")

    async def aadmit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        return self.admit(rates, quotas, now)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_fail_open_admits_unchecked_and_fail_closed_refuses(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(CollectorRegistry())
    telemetry = Telemetry(exporters=[], metrics=metrics)
    opened = GuardPolicy(requests=(RequestLimit("user", "1/hour", fail="open"),), store=Down())
    closed = GuardPolicy(
        requests=(RequestLimit("user", "1/hour"),),
        quotas=(TokenQuota("user", 10_000, fail="closed"),),
        store=Down(),
    )

    def run(policy: GuardPolicy) -> dict[str, Any]:
        app = observed(policy, telemetry)
        if asynchronous:
            return dict(asyncio.run(app.ainvoke({"question": "q"}, who())))
        return dict(app.invoke({"question": "q"}, who()))

    with caplog.at_level(logging.WARNING, logger="graphops"):
        out = run(opened)
    assert guard_of(out) == {
        "outcome": "allowed",
        "reason": None,
        "retry_after_s": None,
        "unchecked": True,
    }
    assert out["answer"]
    assert any("fail-open" in r.getMessage() for r in caplog.records)
    out = run(closed)
    guard = guard_of(out)
    assert guard["reason"] == "limiter_unavailable" and guard["retry_after_s"] == 1.0
    assert "connection refused" in guard["message"] and "answer" not in out
    assert metrics.limiter_unavailable.labels("open")._value.get() == 1
    assert metrics.limiter_unavailable.labels("closed")._value.get() == 1


# ---------------------------------------------------------------- bad configuration
@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: RequestLimit("user", "ten/minute"), "'ten/minute' is not a rate"),
        (lambda: RequestLimit("user", ""), "RequestLimit.rate is ''"),
        (lambda: RequestLimit("user", "0/minute"), "every amount must be at least 1"),
        (lambda: RequestLimit("planet", "1/minute"), "RequestLimit.per is 'planet'"),
        (lambda: RequestLimit("user", "1/minute", fail="maybe"), "RequestLimit.fail is 'maybe'"),
        (lambda: TokenQuota("user", -5), "TokenQuota.tokens is -5"),
        (lambda: TokenQuota("user", 0), "TokenQuota.tokens is 0"),
        (lambda: TokenQuota("user", 10.5), "TokenQuota.tokens is 10.5"),
        (lambda: TokenQuota("ip", 100), "TokenQuota.per is 'ip'"),
        (lambda: TokenQuota("user", 100, window="week"), "TokenQuota.window is 'week'"),
    ],
)
def test_bad_limits_name_the_value(make: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make()
    assert fragment in str(caught.value)


# ---------------------------------------------------------------- bulkheads
class Gated(TypedDict, total=False):
    question: str
    answer: str


def gated_graph(gates: dict[str, threading.Event], entered: dict[str, int]) -> StateGraph[Gated]:
    """A node that holds the run until its question's event is set."""
    lock = threading.Lock()

    def work(state: Gated) -> Gated:
        with lock:
            entered[state["question"]] = entered.get(state["question"], 0) + 1
        assert gates[state["question"]].wait(10)
        return {"answer": state["question"]}

    graph: StateGraph[Gated] = StateGraph(Gated)
    graph.add_node("work", work)
    graph.add_edge(START, "work")
    graph.add_edge("work", END)
    return graph


def test_a_tenants_flood_waits_in_its_own_queue_and_never_delays_another_tenant() -> None:
    policy = GuardPolicy(bulkhead=Bulkhead(slots=2, wait_s=10))
    gates = {"a": threading.Event(), "b": threading.Event()}
    gates["b"].set()  # tenant b's runs go straight through
    entered: dict[str, int] = {}
    app = build_observed_graph(gated_graph(gates, entered), ops=Ops(guard=policy, telemetry=None))
    outs: list[dict[str, Any]] = []

    def run(tenant: str) -> None:
        outs.append(dict(app.invoke({"question": tenant}, who(tenant=tenant))))

    flood = [threading.Thread(target=run, args=("a",)) for _ in range(5)]
    for thread in flood:
        thread.start()
    assert policy.gate is not None and policy.slot_store is not None
    for _ in range(1000):
        if policy.slot_store.occupancy("runs:tenant%3Aa") == (2, 3) and entered == {"a": 2}:
            break
        threading.Event().wait(0.01)
    assert policy.slot_store.occupancy("runs:tenant%3Aa") == (2, 3)  # 2 in flight, 3 queued
    assert entered == {"a": 2}
    # tenant b is admitted at once while tenant a's slots are all taken and its queue is long
    out = app.invoke({"question": "b"}, who(tenant="b"))
    assert out["answer"] == "b" and guard_of(out)["outcome"] == "allowed"
    gates["a"].set()
    for thread in flood:
        thread.join()
    assert [o["answer"] for o in outs] == ["a"] * 5  # the queued ones ran once slots freed
    assert policy.slot_store.occupancy("runs:tenant%3Aa") == (0, 0)  # every slot came back


async def test_a_full_bulkhead_refuses_after_its_wait_with_a_retry_after() -> None:
    policy = GuardPolicy(bulkhead=Bulkhead(slots=1, wait_s=0.05, ttl_s=30))
    release = asyncio.Event()

    class S(TypedDict, total=False):
        question: str
        answer: str

    async def slow(state: S) -> S:
        await release.wait()
        return {"answer": "done"}

    graph: StateGraph[S] = StateGraph(S)
    graph.add_node("slow", slow)
    graph.add_edge(START, "slow")
    graph.add_edge("slow", END)
    app = build_observed_graph(graph, ops=Ops(guard=policy, telemetry=None))
    first = asyncio.ensure_future(app.ainvoke({"question": "q"}, who(tenant="t")))
    await asyncio.sleep(0.01)
    refused = guard_of(await app.ainvoke({"question": "q"}, who(tenant="t")))
    assert refused["reason"] == "bulkhead_full"
    assert 0 < refused["retry_after_s"] <= 30  # until the holder's lease would lapse
    assert refused["limit"] == {"kind": "concurrency", "per": "tenant", "amount": 1}
    release.set()
    assert (await first)["answer"] == "done"
    assert policy.slot_store is not None
    assert policy.slot_store.occupancy("runs:tenant%3At") == (0, 0)
    assert guard_of(await app.ainvoke({"question": "q"}, who(tenant="t")))["outcome"] == "allowed"


def test_a_failed_run_gives_its_slot_back_and_a_bulkhead_refusal_refunds_its_reservation() -> None:
    policy = GuardPolicy(
        bulkhead=Bulkhead(slots=1, wait_s=0),
        quotas=(TokenQuota("tenant", 1000),),
        token_estimate=99,
        clock=Clock(),
    )

    class S(TypedDict, total=False):
        question: str

    def boom(state: S) -> S:
        raise RuntimeError("node failed")

    graph: StateGraph[S] = StateGraph(S)
    graph.add_node("boom", boom)
    graph.add_edge(START, "boom")
    graph.add_edge("boom", END)
    app = build_observed_graph(graph, ops=Ops(guard=policy, telemetry=None))
    for _ in range(3):  # the slot comes back each time, or the 2nd and 3rd would be refused
        with pytest.raises(RuntimeError, match="node failed"):
            app.invoke({"question": "q"}, who(tenant="t"))
    assert policy.limiter is not None
    (row,) = policy.limiter.usage("tenant", "t")
    assert row["used"] == 0  # every reservation refunded: no tokens were used


def test_bad_bulkheads_name_the_value() -> None:
    for make, fragment in [
        (lambda: Bulkhead(slots=0), "Bulkhead.slots is 0"),
        (lambda: Bulkhead(slots=2, per="ip"), "Bulkhead.per is 'ip'"),  # type: ignore[arg-type]
        (lambda: Bulkhead(slots=2, wait_s=-1), "Bulkhead.wait_s is -1"),
        (lambda: Bulkhead(slots=2, ttl_s=0), "Bulkhead.ttl_s is 0"),
        (lambda: GuardPolicy(bulkhead=3), "GuardPolicy.bulkhead takes a Bulkhead, not int"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(ConfigurationError) as caught:
            make()
        assert fragment in str(caught.value)


class SlotsDown(MemorySlotStore):
    """A slot store that cannot answer, as Redis down looks to the bulkhead."""

    remote = True

    def try_acquire(
        self, key: str, capacity: int, holder: str, ttl_s: float, queue_ttl_s: float = 0.0
    ) -> Grant:
        raise StoreUnavailable("redis slot store: ConnectionError: connection refused")

    async def atry_acquire(
        self, key: str, capacity: int, holder: str, ttl_s: float, queue_ttl_s: float = 0.0
    ) -> Grant:
        return self.try_acquire(key, capacity, holder, ttl_s, queue_ttl_s)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_bulkhead_whose_store_does_not_answer_fails_open_or_closed(asynchronous: bool) -> None:
    metrics = Metrics(CollectorRegistry())
    telemetry = Telemetry(exporters=[], metrics=metrics)

    def run(fail: str) -> dict[str, Any]:
        policy = GuardPolicy(bulkhead=Bulkhead(slots=1, fail=fail), slot_store=SlotsDown())  # type: ignore[arg-type]
        app = observed(policy, telemetry)
        if asynchronous:
            return dict(asyncio.run(app.ainvoke({"question": "q"}, who(tenant="t"))))
        return dict(app.invoke({"question": "q"}, who(tenant="t")))

    opened = run("open")
    assert guard_of(opened)["outcome"] == "allowed" and guard_of(opened)["unchecked"] is True
    assert opened["answer"]  # ran without a slot
    closed = run("closed")
    guard = guard_of(closed)
    assert guard["reason"] == "limiter_unavailable" and guard["retry_after_s"] == 1.0
    assert guard["limit"] == {"kind": "concurrency", "per": "tenant", "amount": 1, "fail": "closed"}
    assert "answer" not in closed
    assert metrics.limiter_unavailable.labels("open")._value.get() == 1
    assert metrics.limiter_unavailable.labels("closed")._value.get() == 1
