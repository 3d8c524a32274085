"""The resilient chat model against real faults: a real OpenAI client on a real local server.

Each inner model is a ``ChatOpenAI`` with ``max_retries=0`` on a
:mod:`tests.fault_server` (a 500, a 429 with ``Retry-After``, a hang), so every
retry, fallback and breaker decision shows in the requests the server counted.
What that server cannot answer (a 400, a 422, a 401, a tool call) comes from an
``httpx.MockTransport`` under the same real client, so the SDK parses it as it
would parse the provider's. Async tests make their clients in the test: an async
OpenAI client belongs to the event loop it first ran in.
"""

from __future__ import annotations

import json
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import anyio
import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

import graphops.resilience.retry as retry_module
from graphops import build_observed_graph, run_scope
from graphops.errors import BudgetExhausted, ConfigurationError, ProvidersUnavailable
from graphops.models.resilient import PROVIDER_KEY, Link, ResilientChatModel, resilient_chat
from graphops.models.scripted import ScriptedChatModel
from graphops.observe.metrics import Metrics
from graphops.policies import BudgetPolicy, Ops
from graphops.resilience.breaker import BreakerPolicy, CircuitBreaker
from graphops.resilience.retry import RetryPolicy
from graphops.resilience.retry_budget import RetryBudget
from tests.fault_server import FaultServer, fault_server

FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.02)
NEVER_OPENS = BreakerPolicy(window=1000, min_calls=1000)


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture
def primary() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def fallback() -> Iterator[FaultServer]:
    with fault_server(seed=1) as server:
        yield server


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def chat(server: FaultServer, timeout: float | None = 5.0, **more: Any) -> ChatOpenAI:
    """A real OpenAI client on ``server``, without its own retries."""
    return ChatOpenAI(
        **{"model": "a", **more},
        api_key="x",  # type: ignore[arg-type]
        base_url=server.url,
        max_retries=0,
        timeout=timeout,
    )


def mocked(status: int, body: dict[str, Any], seen: list[httpx.Request]) -> ChatOpenAI:
    """A real OpenAI client whose provider answers ``status`` and ``body`` to every request."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    transport = httpx.MockTransport(answer)
    return ChatOpenAI(
        model="m",
        api_key="x",  # type: ignore[arg-type]
        base_url="http://provider.invalid/v1",
        max_retries=0,
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
    )


def error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None, "param": None}}


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def provider(message: BaseMessage) -> Any:
    return message.response_metadata.get(PROVIDER_KEY)


# ---------------------------------------------------------------- answering
def test_a_healthy_primary_answers_alone_and_is_named(
    primary: FaultServer, fallback: FaultServer, metrics: Metrics
) -> None:
    model = resilient_chat({"a": chat(primary), "b": chat(fallback)}, metrics=metrics)
    answer = model.invoke("hello")
    assert answer.text == "echo: hello"
    assert provider(answer) == "a"
    assert (primary.requests, fallback.requests) == (1, 0)
    assert sample(metrics, "graphops_llm_retries_total", provider="a", outcome="retried") == 0
    assert model.model_name == "a"  # what telemetry reads is the primary's


@pytest.mark.parametrize("door", ["invoke", "stream"])
def test_a_failing_primary_hands_the_call_to_the_fallback_sync(
    primary: FaultServer, fallback: FaultServer, metrics: Metrics, door: str
) -> None:
    primary.fail("500")
    model = resilient_chat({"a": chat(primary), "b": chat(fallback)}, retry=FAST, metrics=metrics)
    if door == "invoke":
        answer = model.invoke("hi")
        text, named = answer.text, provider(answer)
    else:
        chunks = list(model.stream("hi"))
        text, named = "".join(c.text for c in chunks), provider(chunks[0])
    assert text == "echo: hi"
    assert named == "b"
    assert (primary.requests, fallback.requests) == (3, 1)  # three attempts, then the fallback
    assert sample(metrics, "graphops_llm_retries_total", provider="a", outcome="retried") == 2
    fallbacks = sample(
        metrics, "graphops_llm_fallbacks_total",
        from_provider="a", to_provider="b", reason="server",
    )  # fmt: skip
    assert fallbacks == 1


@pytest.mark.anyio
@pytest.mark.parametrize("door", ["ainvoke", "astream"])
async def test_a_failing_primary_hands_the_call_to_the_fallback_async(
    primary: FaultServer, fallback: FaultServer, metrics: Metrics, door: str
) -> None:
    primary.fail("500")
    model = resilient_chat({"a": chat(primary), "b": chat(fallback)}, retry=FAST, metrics=metrics)
    if door == "ainvoke":
        answer = await model.ainvoke("hi")
        text, named = answer.text, provider(answer)
    else:
        chunks = [chunk async for chunk in model.astream("hi")]
        text, named = "".join(c.text for c in chunks), provider(chunks[0])
    assert text == "echo: hi"
    assert named == "b"
    assert (primary.requests, fallback.requests) == (3, 1)
    assert sample(metrics, "graphops_llm_retries_total", provider="a", outcome="retried") == 2


class _BreaksMidStream(BaseChatModel):
    """Streams two chunks, then fails as a provider whose connection dropped."""

    @property
    def _llm_type(self) -> str:
        return "breaks"

    def _generate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        raise ConnectionError("dropped")

    def _stream(self, messages: list[BaseMessage], *a: Any, **k: Any) -> Iterator[Any]:
        yield ChatGenerationChunk(message=AIMessageChunk(content="half "))
        yield ChatGenerationChunk(message=AIMessageChunk(content="an answer"))
        raise ConnectionError("dropped")


def test_a_stream_falls_back_only_before_its_first_chunk() -> None:
    spare = ScriptedChatModel(respond=lambda m: "spare")
    model = resilient_chat({"a": _BreaksMidStream(), "b": spare}, retry=FAST)
    seen: list[str] = []
    with pytest.raises(ConnectionError, match="dropped"):
        for chunk in model.stream("hi"):
            seen.append(chunk.text)
    assert seen == ["half ", "an answer"]  # the answer began at a: it stays a's
    assert spare.calls == []


# ---------------------------------------------------------------- errors no retry fixes
@pytest.mark.parametrize("status", [400, 422])
def test_a_request_error_raises_at_once_without_fallback_or_breaker_charge(
    fallback: FaultServer, status: int
) -> None:
    seen: list[httpx.Request] = []
    bad = mocked(status, error("the request is wrong", "invalid_request_error"), seen)
    breaker = BreakerPolicy(window=2, min_calls=2)
    model = resilient_chat({"a": bad, "b": chat(fallback)}, retry=FAST, breaker=breaker)
    for calls in range(1, 6):
        with pytest.raises(Exception, match="the request is wrong") as caught:
            model.invoke("hi")
        assert not isinstance(caught.value, ProvidersUnavailable)
        assert len(seen) == calls  # one request each: no retry
    assert fallback.requests == 0  # no provider would take it: none was asked
    assert model.links[0].breaker.state() == "closed"  # five "failures", none charged


# ---------------------------------------------------------------- Retry-After
@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every sleep the sync retry loop asks for (and takes); only retry.py sees the patch."""
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        time.sleep(seconds)

    clock = types.SimpleNamespace(sleep=sleep, time=time.time, monotonic=time.monotonic)
    monkeypatch.setattr(retry_module, "time", clock)
    return asked


def test_retry_after_is_waited_out_before_the_retry(
    primary: FaultServer, fallback: FaultServer, sleeps: list[float]
) -> None:
    primary.fail("429", retry_after=0.3)
    model = resilient_chat({"a": chat(primary), "b": chat(fallback)}, retry=FAST)
    assert provider(model.invoke("hi")) == "b"  # the retry got a 429 too
    assert primary.requests == 3
    assert len(sleeps) == 2 and min(sleeps) >= 0.3  # the jitter alone is at most 0.02


def test_a_retry_after_longer_than_allowed_falls_back_without_waiting(
    primary: FaultServer, fallback: FaultServer, sleeps: list[float], metrics: Metrics
) -> None:
    primary.fail("429", retry_after=30)
    policy = RetryPolicy(attempts=3, backoff_s=0.01, max_retry_after_s=5.0)
    model = resilient_chat({"a": chat(primary), "b": chat(fallback)}, retry=policy, metrics=metrics)
    assert provider(model.invoke("hi")) == "b"
    assert primary.requests == 1 and sleeps == []
    fallbacks = sample(
        metrics, "graphops_llm_fallbacks_total",
        from_provider="a", to_provider="b", reason="rate_limited",
    )  # fmt: skip
    assert fallbacks == 1


# ---------------------------------------------------------------- the breaker
def test_the_breaker_opens_after_its_window_and_the_open_provider_is_skipped(
    primary: FaultServer, fallback: FaultServer, metrics: Metrics
) -> None:
    primary.fail("500")
    policy = BreakerPolicy(window=4, min_calls=4, open_s=60)
    model = resilient_chat(
        {"a": chat(primary), "b": chat(fallback)},
        retry=RetryPolicy(attempts=1),
        breaker=policy,
        metrics=metrics,
    )
    for _ in range(10):
        assert provider(model.invoke("hi")) == "b"
    assert primary.requests == 4  # the window's calls, then none
    assert fallback.requests == 10
    assert model.links[0].breaker.state() == "open"
    skipped = sample(
        metrics, "graphops_llm_fallbacks_total", from_provider="a", to_provider="b", reason="open"
    )
    assert skipped == 6
    assert sample(metrics, "graphops_breaker_state", provider="a") == 2
    opened = sample(
        metrics, "graphops_breaker_transitions_total",
        provider="a", from_state="closed", to_state="open",
    )  # fmt: skip
    assert opened == 1


# ---------------------------------------------------------------- the retry budget
def test_the_retry_budget_caps_retries_across_calls(
    primary: FaultServer, fallback: FaultServer, metrics: Metrics
) -> None:
    primary.fail("500")
    policy = RetryPolicy(attempts=5, backoff_s=0.0, max_backoff_s=0.0)
    budgeted = resilient_chat(
        {"a": chat(primary), "b": chat(fallback)},
        retry=policy,
        breaker=NEVER_OPENS,
        retry_budget=lambda: RetryBudget(percent=0.2, min_per_s=0),
        metrics=metrics,
    )
    calls = 40
    for _ in range(calls):
        assert provider(budgeted.invoke("hi")) == "b"
    retries = primary.requests - calls
    assert 0 < retries <= 0.2 * calls  # without the budget: 4 per call, 160
    assert sample(metrics, "graphops_llm_retries_total", provider="a", outcome="retried") == retries
    assert sample(metrics, "graphops_llm_retries_total", provider="a", outcome="budget") > 0


def test_each_call_pays_the_retry_budget_once_whether_it_needed_a_retry_or_not(
    primary: FaultServer,
) -> None:
    budget = RetryBudget(percent=1.0, min_per_s=0)
    model = resilient_chat(
        {"a": chat(primary)}, retry=FAST, breaker=NEVER_OPENS, retry_budget=lambda: budget
    )
    for _ in range(3):
        model.invoke("hi")
    assert budget.balance() == 3  # three first attempts answered: three deposits
    primary.fail("500")
    with pytest.raises(ProvidersUnavailable):
        model.invoke("hi")  # one deposit, two retries withdrawn
    assert budget.balance() == 2
    assert primary.requests == 6


# ---------------------------------------------------------------- tools and structured output
def _tool_call_reply() -> dict[str, Any]:
    call = {"name": "add", "arguments": json.dumps({"a": 1, "b": 2})}
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": call}],
    }
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.mark.anyio
async def test_bound_tools_go_down_the_chain_and_the_tool_call_comes_back(
    primary: FaultServer,
) -> None:
    primary.fail("500")
    seen: list[httpx.Request] = []
    model = resilient_chat(
        {"a": chat(primary), "t": mocked(200, _tool_call_reply(), seen)}, retry=FAST
    )
    bound = model.bind_tools([add], tool_choice="add")
    assert isinstance(bound, ResilientChatModel)
    assert bound.links[0].breaker is model.links[0].breaker  # one breaker per provider still
    for answer in (bound.invoke("add 1 and 2"), await bound.ainvoke("add 1 and 2")):
        assert answer.tool_calls == [
            {"name": "add", "args": {"a": 1, "b": 2}, "id": "call_1", "type": "tool_call"}
        ]
        assert provider(answer) == "t"
    sent = json.loads(seen[0].content)
    assert [t["function"]["name"] for t in sent["tools"]] == ["add"]
    assert sent["tool_choice"]["function"]["name"] == "add"
    assert primary.requests == 6  # the primary was asked, with its retries, each time


class Verdict(BaseModel):
    said: str
    sure: bool


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_structured_output_goes_through_the_chain_with_the_primary_failing(
    primary: FaultServer, fallback: FaultServer, method: str
) -> None:
    primary.fail("500")
    fallback.reply = lambda messages: '{"said": "yes", "sure": true}'
    model = resilient_chat({"a": chat(primary), "b": chat(fallback)}, retry=FAST)
    structured = model.with_structured_output(Verdict, method=method)
    assert structured.invoke("answer in JSON") == Verdict(said="yes", sure=True)
    raw = model.with_structured_output(Verdict, method=method, include_raw=True).invoke("again")
    assert raw["parsed"] == Verdict(said="yes", sure=True)
    assert provider(raw["raw"]) == "b"
    assert primary.requests == 6 and fallback.requests == 2


@pytest.mark.anyio
async def test_structured_output_names_every_provider_when_none_answers(
    primary: FaultServer, fallback: FaultServer
) -> None:
    primary.fail("500")
    fallback.fail("503")
    model = resilient_chat({"a": chat(primary), "b": chat(fallback)}, retry=RetryPolicy(attempts=1))
    structured = model.with_structured_output(Verdict, method="json_mode")
    both = (("a", "OpenAIAPIError"), ("b", "OpenAIAPIError"))
    with pytest.raises(ProvidersUnavailable) as caught:
        structured.invoke("answer in JSON")
    assert caught.value.attempts == both
    with pytest.raises(ProvidersUnavailable) as caught:
        await structured.ainvoke("answer in JSON")
    assert caught.value.attempts == both


# ---------------------------------------------------------------- the run's deadline
class _State(TypedDict, total=False):
    question: str
    answer: str


def _deadline_graph(model: ResilientChatModel, calls: list[float], done: threading.Event) -> Any:
    """One node (sync and async) that asks ``model`` and notes its run's deadline; ``done``
    is set once the call ended. The run has 1 s, its nodes 0.8 s."""

    def ask(state: _State, config: RunnableConfig) -> _State:
        scope = run_scope(config)
        assert scope is not None and scope.deadline is not None
        calls.append(scope.deadline)
        try:
            return {"answer": model.invoke(state["question"]).text}
        finally:
            done.set()

    async def aask(state: _State, config: RunnableConfig) -> _State:
        scope = run_scope(config)
        assert scope is not None and scope.deadline is not None
        calls.append(scope.deadline)
        try:
            return {"answer": (await model.ainvoke(state["question"])).text}
        finally:
            done.set()

    graph: StateGraph[_State] = StateGraph(_State)
    graph.add_node("ask", RunnableLambda(ask, afunc=aask, name="ask"))
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return build_observed_graph(
        graph, ops=Ops(budget=BudgetPolicy(total_s=1.0, reserve_s=0.2), telemetry=None)
    )


def _timed_client(
    server: FaultServer, sent: list[tuple[float, float]], timeout: float | None = 0.3
) -> ChatOpenAI:
    """A client on ``server`` that notes when each request left and its read timeout."""

    def note(request: httpx.Request) -> None:
        sent.append((time.monotonic(), request.extensions["timeout"]["read"]))

    async def anote(request: httpx.Request) -> None:
        note(request)

    return chat(
        server,
        timeout=timeout,
        http_client=httpx.Client(event_hooks={"request": [note]}),
        http_async_client=httpx.AsyncClient(event_hooks={"request": [anote]}),
    )


@pytest.mark.anyio
@pytest.mark.parametrize("door", ["invoke", "ainvoke"])
async def test_inside_a_run_each_request_gets_at_most_the_time_left_and_none_starts_late(
    primary: FaultServer, fallback: FaultServer, door: str
) -> None:
    primary.fail("hang")
    sent: list[tuple[float, float]] = []
    least = 0.05
    model = resilient_chat(
        {"a": _timed_client(primary, sent), "b": chat(fallback)},
        retry=RetryPolicy(attempts=10, backoff_s=0.01, max_backoff_s=0.01),
        min_attempt_s=least,
        fallback_share=1.0,  # "a" may use all the time there is: the deadline alone cuts it
    )
    deadlines: list[float] = []
    done = threading.Event()
    app = _deadline_graph(model, deadlines, done)
    with pytest.raises((ProvidersUnavailable, BudgetExhausted)) as caught:
        if door == "invoke":
            await anyio.to_thread.run_sync(app.invoke, {"question": "hi"})
        else:
            await app.ainvoke({"question": "hi"})
    assert done.wait(5)  # a sync node runs on past its limit: wait for its call to end
    (deadline,) = deadlines
    assert len(sent) >= 2  # the client's 0.3 s, not the run's 0.8 s, ended the first attempt
    for started, timeout in sent:
        assert started < deadline  # no request left after the deadline
        # each got min(0.3 s, the time left as its attempt began), never under min_attempt_s
        # (less 1 ms: the time left is read a moment after the check that let the attempt go)
        assert least - 0.001 <= timeout <= 0.3
    capped = [(started, timeout) for started, timeout in sent if timeout < 0.3]
    assert capped  # the deadline cut the last attempt's timeout below the client's
    for started, timeout in capped:
        assert deadline - timeout <= started  # it was the time left before the request left
    assert fallback.requests == 0  # no time was left for it
    if isinstance(caught.value, ProvidersUnavailable):
        assert caught.value.attempts[-1] == ("b", "deadline")


@pytest.mark.anyio
@pytest.mark.parametrize("door", ["invoke", "ainvoke"])
async def test_a_hanging_provider_leaves_the_next_one_its_share_of_the_time(
    primary: FaultServer, fallback: FaultServer, door: str
) -> None:
    primary.fail("hang")
    sent: list[tuple[float, float]] = []
    model = resilient_chat(
        {"a": _timed_client(primary, sent, timeout=None), "b": chat(fallback)},
        retry=RetryPolicy(attempts=10, backoff_s=0.01, max_backoff_s=0.01),
    )
    deadlines: list[float] = []
    done = threading.Event()
    app = _deadline_graph(model, deadlines, done)
    if door == "invoke":
        out = await anyio.to_thread.run_sync(app.invoke, {"question": "hi"})
    else:
        out = await app.ainvoke({"question": "hi"})
    assert out["answer"] == "echo: hi" and fallback.requests == 1  # the fallback answered
    (deadline,) = deadlines
    started, timeout = sent[0]
    # the first provider had half the time left (no client timeout of its own), all its
    # attempts within it, so the fallback still had the other half
    assert timeout <= (deadline - started) / 2 + 0.01
    assert all(s + t <= started + (deadline - started) / 2 + 0.01 for s, t in sent)


class _JustUnder:
    """A ``Retry-After`` the server works out as it answers: the run's time left less 20 ms.

    The fault server formats ``retry_after`` with ``:g`` when it sends a 429, so this
    asks for a wait after which a retry would start with 20 ms left, whenever it answers.
    """

    def __init__(self, deadlines: list[float]) -> None:
        self.deadlines = deadlines

    def __format__(self, spec: str) -> str:
        return format(self.deadlines[0] - time.monotonic() - 0.02, spec)


def test_a_retry_that_would_start_with_too_little_time_left_is_not_made(
    primary: FaultServer, fallback: FaultServer, sleeps: list[float]
) -> None:
    deadlines: list[float] = []
    primary.fail("429")
    primary.retry_after = _JustUnder(deadlines)  # type: ignore[assignment]
    model = resilient_chat(
        {"a": chat(primary), "b": chat(fallback)},
        retry=RetryPolicy(attempts=3, backoff_s=0.01),
        min_attempt_s=0.05,
    )
    result = _deadline_graph(model, deadlines, threading.Event()).invoke({"question": "hi"})
    assert result["answer"] == "echo: hi"  # the fallback answered, in time
    assert (primary.requests, fallback.requests) == (1, 1)
    assert sleeps == []  # no sleep towards a retry with 20 ms left (min_attempt_s is 50)


def test_the_llm_span_names_who_answered_with_its_retries_and_fallbacks(
    primary: FaultServer, fallback: FaultServer, telemetry: Any, exporter: Any
) -> None:
    primary.fail("500")
    model = resilient_chat(
        {"a": chat(primary), "b": chat(fallback)},
        retry=RetryPolicy(attempts=2, backoff_s=0.01),
        metrics=telemetry.metrics,
    )
    graph: StateGraph[_State] = StateGraph(_State)
    graph.add_node("ask", lambda state: {"answer": model.invoke(state["question"]).text})
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    app = build_observed_graph(graph, ops=Ops(telemetry=telemetry))
    assert app.invoke({"question": "hi"})["answer"] == "echo: hi"
    (span,) = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert span.attributes["graphops.llm.provider"] == "b"
    events = [(e.name, dict(e.attributes)) for e in span.events]
    assert [name for name, _ in events] == ["graphops.llm.retry", "graphops.llm.fallback"]
    assert events[0][1]["attempt"] == 1
    assert events[1][1] == {
        "from": "a",
        "to": "b",
        "reason": "server",
        "error.type": "OpenAIAPIError",
    }


# ---------------------------------------------------------------- what each provider did
def test_providers_unavailable_says_what_each_provider_did(
    primary: FaultServer, fallback: FaultServer
) -> None:
    primary.fail("500")
    denied: list[httpx.Request] = []
    policy = BreakerPolicy(window=2, min_calls=2, open_s=60)
    model = resilient_chat(
        {
            "opened": chat(fallback),
            "failing": chat(primary),
            "refusing": mocked(401, error("bad key", "invalid_api_key"), denied),
        },
        retry=RetryPolicy(attempts=2, backoff_s=0.0, max_backoff_s=0.0),
        breaker=policy,
    )
    breaker = model.links[0].breaker
    for _ in range(2):  # the first provider's breaker is open before the call
        permit = breaker.permit()
        assert permit is not None
        breaker.record(permit, ok=False, duration_s=0.0)
    with pytest.raises(ProvidersUnavailable) as caught:
        model.invoke("hi")
    assert caught.value.attempts == (
        ("opened", "open"),
        ("failing", "OpenAIAPIError"),
        ("refusing", "OpenAIAuthenticationError"),
    )
    assert "opened: open" in str(caught.value)
    assert fallback.requests == 0 and primary.requests == 2 and len(denied) == 1


# ---------------------------------------------------------------- construction
def _link(name: str) -> Link:
    return Link(name, ScriptedChatModel(respond=lambda m: "ok"), CircuitBreaker(name), None)


@pytest.mark.parametrize(
    "make",
    [
        lambda: resilient_chat([]),
        lambda: resilient_chat(["not a model"]),  # type: ignore[list-item]
        lambda: resilient_chat([ScriptedChatModel(), ScriptedChatModel()]),  # same name twice
        lambda: resilient_chat([ScriptedChatModel()], retry="3 times"),  # type: ignore[arg-type]
        lambda: resilient_chat([ScriptedChatModel()], breaker={"window": 5}),  # type: ignore[arg-type]
        lambda: resilient_chat([ScriptedChatModel()], breaker_store="redis://"),  # type: ignore[arg-type]
        lambda: resilient_chat([ScriptedChatModel()], retry_budget=5),  # type: ignore[arg-type]
        lambda: resilient_chat([ScriptedChatModel()], min_attempt_s=-1.0),
        lambda: resilient_chat([ScriptedChatModel()], min_attempt_s=float("nan")),
        lambda: resilient_chat([ScriptedChatModel()], metrics="prometheus"),  # type: ignore[arg-type]
        lambda: ResilientChatModel(links=()),
        lambda: ResilientChatModel(links=(_link("a"), "b")),
        lambda: ResilientChatModel(links=(_link("a"), _link("a"))),
        lambda: ResilientChatModel(links=(_link("a"),), min_attempt_s="soon"),
    ],
)
def test_bad_construction_is_a_configuration_error(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError):
        make()


@pytest.mark.anyio
async def test_scripted_inner_models_retry_builtin_connection_errors_too() -> None:
    """The in-process fake (what the benchmark measures) meets the same chain."""
    failing = ScriptedChatModel(replies=[ConnectionError("down")] * 6)
    spare = ScriptedChatModel(respond=lambda m: "from the spare")
    model = resilient_chat({"a": failing, "b": spare}, retry=FAST)
    for answer in (model.invoke("hi"), await model.ainvoke("hi")):
        assert (answer.text, provider(answer)) == ("from the spare", "b")
    assert len(failing.calls) == 6 and len(spare.calls) == 2


def test_retries_fallbacks_and_breaker_transitions_show_on_the_spans(
    primary: FaultServer, fallback: FaultServer, telemetry: Any, exporter: Any
) -> None:
    primary.fail("500")
    metrics = Metrics(CollectorRegistry())
    model = resilient_chat(
        {"a": chat(primary), "b": chat(fallback, model="b")},
        retry=RetryPolicy(attempts=2, backoff_s=0.001, max_backoff_s=0.001),
        breaker=BreakerPolicy(window=2, min_calls=2, open_s=60),
        metrics=metrics,
    )

    def ask(state: _State) -> _State:
        return {"answer": model.invoke(state["question"]).text}

    graph: StateGraph[_State] = StateGraph(_State)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    app = build_observed_graph(graph, ops=Ops(budget=BudgetPolicy(), telemetry=telemetry))
    assert app.invoke({"question": "hi"})["answer"] == "echo: hi"
    spans = exporter.get_finished_spans()
    (llm,) = [s for s in spans if s.name.startswith("chat")]
    events = [e.name for e in llm.events]
    # attempt 1 failed, a retry, attempt 2 failed and opened the breaker, then "b"
    assert events == ["graphops.llm.retry", "graphops.breaker.transition", "graphops.llm.fallback"]
    opened = llm.events[1].attributes
    assert (opened["from_state"], opened["graphops.breaker.state"]) == ("closed", "open")
    assert llm.attributes["graphops.llm.provider"] == "b"
    # the span names the model that answered, and so do its metrics
    assert llm.name == "chat b" and llm.attributes["gen_ai.request.model"] == "b"
    calls = {"provider": "openai", "model": "b", "status": "ok"}
    assert telemetry.metrics.registry.get_sample_value("graphops_llm_calls_total", calls) == 1.0
    (node,) = [s for s in spans if s.name == "ask"]
    assert 0 < node.attributes["graphops.budget.left_s"] <= 59.5
    assert metrics.registry.get_sample_value("graphops_breaker_state", {"provider": "a"}) == 2.0
    labels = {"from_provider": "a", "to_provider": "b", "reason": "server"}
    assert metrics.registry.get_sample_value("graphops_llm_fallbacks_total", labels) == 1.0
