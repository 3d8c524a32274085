"""Chaos: observed graph runs against real fault-injecting providers, real Redis, real processes.

Every run is a small observed graph (one node asking the resilient model, a run
budget of ``D`` seconds, the degradation ladder), on real OpenAI clients talking to
:mod:`tests.fault_server` servers. What is measured (the answered share, the worst
end of a run against its deadline, the requests that reached a dead provider) is
printed as ``CHAOS ...`` lines: ``pytest -s`` shows them. The only timing assertions
are the spec's: a run ends by its deadline plus 5 %.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, TypedDict

import anyio
import pytest
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from prometheus_client import CollectorRegistry

from graphops import build_observed_graph
from graphops.models.hashing import HashEmbeddings
from graphops.models.resilient import PROVIDER_KEY, ResilientChatModel, resilient_chat
from graphops.observe.metrics import Metrics
from graphops.policies import BudgetPolicy, DegradePolicy, Ops
from graphops.resilience.breaker import BreakerPolicy
from graphops.resilience.breaker_redis import RedisBreakerStore
from graphops.resilience.retry import RetryPolicy
from graphops.resilience.retry_budget import RetryBudget
from tests.fault_server import FaultServer, fault_server
from tests.integration.redis_support import ROOT, redis_prefix, shared_redis_url

__all__ = ["redis_prefix", "shared_redis_url"]  # the fixtures, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SLACK = 1.05  # a run must end by its deadline + 5 %
QUESTION = "what colour is the sky at noon"
DOCUMENTS = [
    {"id": "sky", "title": "Sky", "text": "The sky at noon is blue. Clouds are white."},
    {"id": "grass", "title": "Grass", "text": "Grass is green in spring."},
]
STATE = {"question": QUESTION, "documents": DOCUMENTS}


class ChaosState(TypedDict, total=False):
    question: str
    documents: list[dict[str, str]]
    answer: str
    sources: list[str]
    provider: str


@pytest.fixture
def primary() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def fallback() -> Iterator[FaultServer]:
    with fault_server(seed=1) as server:
        yield server


def chat(server: FaultServer, timeout: float | None = 5.0) -> ChatOpenAI:
    return ChatOpenAI(
        model="a",
        api_key="x",  # type: ignore[arg-type]
        base_url=server.url,
        max_retries=0,
        timeout=timeout,
    )


def graph(model: ResilientChatModel, total_s: float, reserve_s: float = 0.3) -> Any:
    """One node (sync and async twins) asking ``model``; a budget of ``total_s``; the ladder."""

    def ask(state: ChaosState) -> ChaosState:
        answer = model.invoke(state["question"])
        return {"answer": answer.text, "provider": answer.response_metadata[PROVIDER_KEY]}

    async def aask(state: ChaosState) -> ChaosState:
        answer = await model.ainvoke(state["question"])
        return {"answer": answer.text, "provider": answer.response_metadata[PROVIDER_KEY]}

    builder: StateGraph[ChaosState] = StateGraph(ChaosState)
    builder.add_node("ask", RunnableLambda(ask, afunc=aask, name="ask"))
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    ops = Ops(
        budget=BudgetPolicy(total_s=total_s, reserve_s=reserve_s),
        degrade=DegradePolicy(embeddings=HashEmbeddings(), messages_key=None),
        telemetry=None,
    )
    return build_observed_graph(builder, ops=ops, name="chaos")


Run = tuple[float, dict[str, Any]]  # how long a run took, and its output


async def runs(app: Any, count: int, *, sync: bool = False, at_once: int = 8) -> list[Run]:
    """``count`` runs of ``app``, ``at_once`` at a time (``sync``: ``invoke`` in threads)."""
    done: list[Run] = []
    limiter = anyio.CapacityLimiter(at_once)

    async def one() -> None:
        async with limiter:
            started = time.monotonic()
            if sync:
                output = await anyio.to_thread.run_sync(app.invoke, dict(STATE))
            else:
                output = await app.ainvoke(dict(STATE))
            done.append((time.monotonic() - started, output))

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(one)
    return done


def degraded(output: dict[str, Any]) -> dict[str, Any] | None:
    record: dict[str, Any] | None = output.get("graphops", {}).get("degraded")
    return record


def overshoot(done: list[Run], total_s: float) -> float:
    """The latest run's end against its deadline, as a share of it (negative: early)."""
    return max(took for took, _ in done) / total_s - 1.0


def report(what: str, **figures: object) -> None:
    said = ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    print(f"\nCHAOS {what}: {said}")


# ---------------------------------------------------------------- a dead primary
async def test_a_dead_primary_and_a_healthy_fallback_answer_nearly_every_run(
    primary: FaultServer, fallback: FaultServer
) -> None:
    primary.fail("500")
    total_s, count = 1.0, 200
    model = resilient_chat(
        {"primary": chat(primary), "fallback": chat(fallback)},
        retry=RetryPolicy(attempts=2, backoff_s=0.05),
        metrics=Metrics(CollectorRegistry()),
    )
    done = await runs(graph(model, total_s), count)
    answered = [out for _, out in done if degraded(out) is None]
    share = len(answered) / count
    report(
        "dead primary, healthy fallback",
        runs=count,
        answered_share=share,
        worst_overshoot=overshoot(done, total_s),
        slowest_s=max(t for t, _ in done),
        primary_requests=primary.requests,
        fallback_requests=fallback.requests,
    )
    assert share >= 0.99
    assert all(out["provider"] == "fallback" for out in answered)
    assert all(took <= total_s * SLACK for took, _ in done)
    assert primary.requests < count  # its breaker opened: most runs never asked it


# ---------------------------------------------------------------- every provider down
async def test_with_every_provider_down_every_run_degrades_in_time(
    primary: FaultServer, fallback: FaultServer
) -> None:
    primary.fail("500")
    fallback.fail("503")
    total_s, count = 1.0, 60
    model = resilient_chat(
        {"primary": chat(primary), "fallback": chat(fallback)},
        retry=RetryPolicy(attempts=2, backoff_s=0.05),
        metrics=Metrics(CollectorRegistry()),
    )
    done = await runs(graph(model, total_s), count)
    records = [degraded(out) for _, out in done]
    levels = Counter(r["level"] for r in records if r is not None)
    reasons = Counter(r["reason"] for r in records if r is not None)
    report(
        "every provider down",
        runs=count,
        degraded=sum(levels.values()),
        levels=dict(levels),
        reasons=dict(reasons),  # budget_exhausted too, when the machine is slow
        worst_overshoot=overshoot(done, total_s),
        requests=primary.requests + fallback.requests,
    )
    assert all(r is not None for r in records)
    assert levels == {"extractive": count}  # the retrieved passages answered, cited
    assert all(out["sources"] == ["sky"] for _, out in done)
    assert all(took <= total_s * SLACK for took, _ in done)


# ---------------------------------------------------------------- a hanging provider
@pytest.mark.parametrize("door", ["invoke", "ainvoke"])
@pytest.mark.parametrize(("client_timeout", "share"), [(None, 0.5), (0.3, 0.5), (None, 1.0)])
async def test_a_hanging_provider_never_holds_a_run_past_its_deadline(
    primary: FaultServer,
    fallback: FaultServer,
    door: str,
    client_timeout: float | None,
    share: float,
) -> None:
    """The hanging primary gets half the time left (``fallback_share``), or its own
    client timeout (0.3 s) if shorter, and the fallback answers; given all the time
    (``fallback_share=1``) with no timeout of its own, the hang takes it and the run
    degrades. Every way, in time."""
    primary.fail("hang")
    total_s, count = 3.0, 8  # the fallback has over a second, even on a loaded machine
    model = resilient_chat(
        {"primary": chat(primary, timeout=client_timeout), "fallback": chat(fallback)},
        retry=RetryPolicy(attempts=2, backoff_s=0.05),
        fallback_share=share,
        metrics=Metrics(CollectorRegistry()),
    )
    done = await runs(graph(model, total_s), count, sync=door == "invoke", at_once=count)
    answered = sum(1 for _, out in done if degraded(out) is None)
    report(
        f"hanging primary, {door}, client timeout {client_timeout}, share {share}",
        runs=count,
        answered=answered,
        worst_overshoot=overshoot(done, total_s),
        slowest_s=max(t for t, _ in done),
        primary_requests=primary.requests,
    )
    assert all(took <= total_s * SLACK for took, _ in done)
    if share == 1.0:
        assert answered == 0  # the hang had all the time there was; the ladder answered
    else:
        assert answered == count
        assert all(out["provider"] == "fallback" for _, out in done)


# ---------------------------------------------------------------- the breaker
async def test_the_breaker_keeps_calls_off_a_dead_provider_then_recovers(
    primary: FaultServer, fallback: FaultServer
) -> None:
    primary.fail("500")
    metrics = Metrics(CollectorRegistry())
    policy = BreakerPolicy(window=10, min_calls=10, open_s=0.5, half_open_calls=2)
    model = resilient_chat(
        {"primary": chat(primary), "fallback": chat(fallback)},
        retry=RetryPolicy(attempts=1),
        breaker=policy,
        metrics=metrics,
    )
    app, count = graph(model, 2.0), 100
    started = time.monotonic()
    done = await runs(app, count, at_once=1)
    elapsed = time.monotonic() - started
    reached = primary.requests
    report("dead provider behind its breaker", runs=count, requests_reaching_it=reached)
    assert all(out["provider"] == "fallback" for _, out in done)
    # the window's calls, then only probes: at most half_open_calls per open_s elapsed
    assert reached <= policy.window + policy.half_open_calls * (elapsed / policy.open_s + 1)

    primary.heal()
    breaker = model.links[0].breaker
    polls, give_up = 0, time.monotonic() + 15
    while breaker.state() != "closed" and time.monotonic() < give_up:
        await runs(app, 1)  # each run asks the breaker for a permit: a probe, once it is due
        polls += 1
        await anyio.sleep(0.05)
    assert breaker.state() == "closed"
    (last,) = await runs(app, 1)
    assert last[1]["provider"] == "primary"

    def moved(a: str, b: str) -> float:
        labels = {"provider": "primary", "from_state": a, "to_state": b}
        value = metrics.registry.get_sample_value("graphops_breaker_transitions_total", labels)
        return value or 0.0

    report(
        "recovery",
        polls=polls,
        opened=moved("closed", "open"),
        half_opened=moved("open", "half_open"),
        reopened=moved("half_open", "open"),
        closed=moved("half_open", "closed"),
    )
    assert moved("closed", "open") == 1
    assert moved("open", "half_open") == moved("half_open", "open") + 1
    assert moved("half_open", "closed") == 1


# ---------------------------------------------------------------- two processes, one breaker
def test_a_breaker_opened_by_one_process_is_open_for_another(
    primary: FaultServer, fallback: FaultServer, shared_redis_url: str, redis_prefix: str
) -> None:
    primary.fail("500")
    policy = BreakerPolicy(window=5, min_calls=5, open_s=60)
    spec = {
        "url": shared_redis_url,
        "prefix": redis_prefix,
        "dead": primary.url,
        "healthy": fallback.url,
        "policy": asdict(policy),
        "calls": 12,
    }
    worker = subprocess.run(
        [sys.executable, "-m", "tests.integration.chaos_worker", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    heard = json.loads(worker.stdout.strip().splitlines()[-1])
    assert heard["state"] == "open"
    assert heard["answered_by"] == ["healthy"] * 12
    assert primary.requests == policy.window  # the other process's window, then nothing

    store = RedisBreakerStore.from_url(shared_redis_url, timeout=2.0, prefix=redis_prefix)
    try:
        model = resilient_chat(
            {"dead": chat(primary), "healthy": chat(fallback)},
            retry=RetryPolicy(attempts=1),
            breaker=policy,
            breaker_store=store,
        )
        answers = [model.invoke("hi").response_metadata[PROVIDER_KEY] for _ in range(5)]
        assert model.links[0].breaker.state() == "open"
    finally:
        store.close()
    report("two processes", requests_reaching_dead=primary.requests, here=Counter(answers))
    assert answers == ["healthy"] * 5
    assert primary.requests == policy.window  # this process never called it


# ---------------------------------------------------------------- the retry budget
def _calls(model: ResilientChatModel, count: int) -> list[str]:
    def one(_: int) -> str:
        return str(model.invoke("hi").response_metadata[PROVIDER_KEY])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize(
    ("budget", "allowed"),
    [
        (lambda: RetryBudget(percent=0.2, min_per_s=0), lambda calls: 0.2 * calls),
        (RetryBudget, lambda calls: 0.2 * calls + 10 * 10),  # the default reserve: 10/s for 10 s
    ],
    ids=["no reserve", "default reserve"],
)
def test_the_retry_budget_holds_at_a_fifty_percent_failure_rate(
    primary: FaultServer,
    fallback: FaultServer,
    budget: Callable[[], RetryBudget],
    allowed: Callable[[int], float],
) -> None:
    primary.fail("500", 0.5)
    calls = 400
    model = resilient_chat(
        {"primary": chat(primary), "fallback": chat(fallback)},
        retry=RetryPolicy(attempts=3, backoff_s=0.0, max_backoff_s=0.0),
        breaker=BreakerPolicy(window=100, min_calls=100, failure_rate=0.9),
        retry_budget=budget,
    )
    answered = Counter(_calls(model, calls))
    retries = primary.requests - calls
    report(
        "retry budget at 50 % failures",
        calls=calls,
        retries=retries,
        retry_share=retries / calls,
        allowed=allowed(calls),
        answered=dict(answered),
    )
    assert sum(answered.values()) == calls
    assert 0 < retries <= allowed(calls)
    assert model.links[0].breaker.state() == "closed"  # the budget, not the breaker, held


def test_without_a_retry_budget_the_same_load_retries_far_more(
    primary: FaultServer, fallback: FaultServer
) -> None:
    """The control: what the budget saved (each failure retried, up to two times)."""
    primary.fail("500", 0.5)
    calls = 400
    model = resilient_chat(
        {"primary": chat(primary), "fallback": chat(fallback)},
        retry=RetryPolicy(attempts=3, backoff_s=0.0, max_backoff_s=0.0),
        breaker=BreakerPolicy(window=100, min_calls=100, failure_rate=0.9),
        retry_budget=None,
    )
    _calls(model, calls)
    retries = primary.requests - calls
    report("no retry budget at 50 % failures", calls=calls, retries=retries)
    assert retries > 0.5 * calls  # expected 0.75 per call
