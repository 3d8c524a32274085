"""The concurrency-limited chat model: N calls in flight per provider, however it is called.

The inner model is the scripted one, answering through a gate that blocks until the
test opens it, so calls overlap for as long as the test wants. Slots are in memory
(a fresh store per test, except where the process-wide default is the point).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any, cast

import anyio
import httpx
import pytest
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.errors import ConfigurationError, ModelError, UserError
from graphops.limits.slot_store import SlotRefused
from graphops.limits.slots import Slots
from graphops.limits.slots_memory import MemorySlotStore
from graphops.limits.store import StoreUnavailable
from graphops.models import ScriptedChatModel, local_chat
from graphops.models.limited import ConcurrencyLimitedChatModel, limit_concurrency, shared_slots
from graphops.observe import Telemetry
from graphops.policies import GuardPolicy, Ops
from graphops.runtime import run_scope

pytestmark = pytest.mark.anyio

REPLY = '{"answer": "ok"}'


class Answer(BaseModel):
    answer: str


class State(TypedDict, total=False):
    question: str
    answer: str


class Gate:
    """A respond function that blocks until opened, counting the calls inside it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = threading.Event()
        self.inside = self.peak = self.entered = 0

    def __call__(self, messages: list[BaseMessage]) -> str:
        with self.lock:
            self.inside += 1
            self.entered += 1
            self.peak = max(self.peak, self.inside)
        try:
            assert self.opened.wait(20), "the test never opened the gate"
        finally:
            with self.lock:
                self.inside -= 1
        return REPLY


@pytest.fixture
def slots() -> Slots:
    return Slots(MemorySlotStore(), ttl_s=5)


def gated(slots: Slots, n: int, gate: Gate, **options: Any) -> ConcurrencyLimitedChatModel:
    return limit_concurrency(ScriptedChatModel(respond=gate), n, slots=slots, **options)


def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


async def auntil(condition: Callable[[], bool], seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await anyio.sleep(0.005)
    raise AssertionError("condition never held")


@contextmanager
def holding(model: ConcurrencyLimitedChatModel, gate: Gate, n: int = 1) -> Iterator[None]:
    """``n`` calls of ``model`` in flight (in threads) until the block ends."""
    threads = [threading.Thread(target=model.invoke, args=("hold",)) for _ in range(n)]
    for thread in threads:
        thread.start()
    until(lambda: gate.inside == n)
    try:
        yield
    finally:
        gate.opened.set()
        for thread in threads:
            thread.join(20)


def call(model: ConcurrencyLimitedChatModel, how: str) -> str:
    if how == "stream":
        return "".join(chunk.text for chunk in model.stream("q"))
    if how == "structured":
        return model.with_structured_output(Answer).invoke("q").model_dump_json()  # type: ignore[union-attr]
    return model.invoke("q").text


async def acall(model: ConcurrencyLimitedChatModel, how: str) -> str:
    if how == "stream":
        return "".join([chunk.text async for chunk in model.astream("q")])
    if how == "structured":
        answer = await model.with_structured_output(Answer).ainvoke("q")
        return answer.model_dump_json()  # type: ignore[union-attr]
    return (await model.ainvoke("q")).text


HOW = ["invoke", "stream", "structured"]


def same_answer(text: str) -> bool:
    return bool(json.loads(text) == json.loads(REPLY))


# ------------------------------------------------------------------ the bound
@pytest.mark.parametrize("how", HOW)
def test_at_most_n_calls_are_in_flight_under_threads(slots: Slots, how: str) -> None:
    gate = Gate()
    model = gated(slots, 2, gate)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(call(model, how))) for _ in range(6)]
    for thread in threads:
        thread.start()
    until(lambda: gate.inside == 2 and slots.store.occupancy(model.key) == (2, 4))
    time.sleep(0.1)  # the four others keep waiting
    assert gate.entered == 2
    gate.opened.set()
    for thread in threads:
        thread.join(20)
    assert gate.peak == 2 and gate.entered == 6
    assert len(results) == 6 and all(same_answer(r) for r in results)
    assert slots.store.occupancy(model.key) == (0, 0)


@pytest.mark.parametrize("how", HOW)
async def test_at_most_n_calls_are_in_flight_under_tasks(slots: Slots, how: str) -> None:
    gate = Gate()
    model = gated(slots, 2, gate)
    results: list[str] = []

    async def one() -> None:
        results.append(await acall(model, how))

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(one)
        await auntil(lambda: gate.inside == 2 and slots.store.occupancy(model.key) == (2, 4))
        await anyio.sleep(0.1)
        assert gate.entered == 2
        gate.opened.set()
    assert gate.peak == 2 and gate.entered == 6
    assert len(results) == 6 and all(same_answer(r) for r in results)
    assert slots.store.occupancy(model.key) == (0, 0)


async def test_a_stream_holds_its_slot_until_it_ends_or_is_closed(slots: Slots) -> None:
    model = limit_concurrency(ScriptedChatModel(respond=lambda _: "a b c"), 1, slots=slots)
    other = limit_concurrency(ScriptedChatModel(replies=["x"]), 1, slots=slots, wait_s=0.05)
    stream = cast(Generator[Any, None, None], model.stream("q"))
    next(stream)
    assert slots.store.occupancy(model.key) == (1, 0)
    with pytest.raises(SlotRefused):
        other.invoke("q")
    stream.close()
    assert slots.store.occupancy(model.key) == (0, 0)

    astream = cast(AsyncGenerator[Any, None], model.astream("q"))
    await astream.__anext__()
    assert slots.store.occupancy(model.key) == (1, 0)
    await astream.aclose()
    assert slots.store.occupancy(model.key) == (0, 0)
    assert "".join(c.text for c in model.stream("q")) == "a b c"
    assert slots.store.occupancy(model.key) == (0, 0)


def test_a_waiter_past_wait_s_is_refused_with_a_retry_after(slots: Slots) -> None:
    gate = Gate()
    waiter = gated(slots, 1, Gate(), wait_s=0.2)
    with holding(gated(slots, 1, gate), gate):
        started = time.monotonic()
        with pytest.raises(SlotRefused) as refused:
            waiter.invoke("q")
        assert 0.2 <= time.monotonic() - started < 5
    assert refused.value.refusal.key == "llm:scripted"
    assert 0 < refused.value.retry_after_s <= 5
    assert slots.store.occupancy("llm:scripted") == (0, 0)


def test_one_provider_shares_its_limit_and_two_providers_do_not(slots: Slots) -> None:
    gate = Gate()
    same = limit_concurrency(ScriptedChatModel(replies=["x"]), 1, slots=slots, wait_s=0.05)
    other = limit_concurrency(
        ScriptedChatModel(replies=["y"]), 1, slots=slots, wait_s=0.05, provider="elsewhere"
    )
    with holding(gated(slots, 1, gate), gate):
        with pytest.raises(SlotRefused):
            same.invoke("q")
        assert other.invoke("q").text == "y"
    assert same.invoke("q").text == "x"


def test_by_default_every_limited_model_of_the_process_shares_one_store() -> None:
    gate = Gate()
    first = limit_concurrency(ScriptedChatModel(respond=gate), 1)
    second = limit_concurrency(ScriptedChatModel(replies=["x"]), 1, wait_s=0.05)
    assert first.slots is second.slots is shared_slots()
    with holding(first, gate), pytest.raises(SlotRefused):
        second.invoke("q")


# ------------------------------------------------------------------ the run's deadline
@pytest.mark.parametrize("how", HOW)
async def test_the_runs_deadline_bounds_the_wait(slots: Slots, how: str) -> None:
    gate = Gate()
    waiter = gated(slots, 1, Gate(), wait_s=30)

    def node(state: State, config: RunnableConfig) -> State:
        scope = run_scope(config)
        assert scope is not None
        scope.deadline = time.monotonic() + 0.2
        return {"answer": call(waiter, how)}

    async def anode(state: State, config: RunnableConfig) -> State:
        scope = run_scope(config)
        assert scope is not None
        scope.deadline = time.monotonic() + 0.2
        return {"answer": await acall(waiter, how)}

    ops = Ops(guard=GuardPolicy(), telemetry=None)
    app = build_observed_graph({"ask": node}, state_schema=State, ops=ops)
    aapp = build_observed_graph({"ask": anode}, state_schema=State, ops=ops)
    with holding(gated(slots, 1, gate), gate):
        for run in (lambda: app.invoke({"question": "q"}), lambda: aapp.ainvoke({"question": "q"})):
            started = time.monotonic()
            with pytest.raises(SlotRefused) as refused:
                result = run()
                if not isinstance(result, dict):
                    await result
            assert time.monotonic() - started < 2.5  # the deadline, not wait_s=30
            assert refused.value.refusal.waited_s < 1


# ------------------------------------------------------------------ telemetry sees the inner model
def llm_spans(exporter: Any) -> list[dict[str, Any]]:
    spans = exporter.get_finished_spans()
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    return [{k: v for k, v in s.attributes.items() if k.startswith("gen_ai.")} for s in chats]


def test_spans_and_tokens_are_the_inner_models(
    telemetry: Telemetry, exporter: Any, slots: Slots
) -> None:
    def run(chat: Any) -> tuple[list[dict[str, Any]], Any]:
        def node(state: State) -> State:
            texts = [chat.invoke("how many in flight").text]
            texts.append("".join(c.text for c in chat.stream("and now")))
            texts.append(chat.with_structured_output(Answer).invoke("as json").answer)
            return {"answer": " ".join(texts)}

        exporter.clear()
        app = build_observed_graph({"ask": node}, state_schema=State, ops=Ops(telemetry=telemetry))
        app.invoke({"question": "q"})
        root = next(s for s in exporter.get_finished_spans() if s.parent is None)
        return llm_spans(exporter), root.attributes.get("graphops.run.tokens")

    bare, bare_tokens = run(ScriptedChatModel(respond=lambda _: REPLY))
    wrapped, tokens = run(limit_concurrency(ScriptedChatModel(respond=lambda _: REPLY), 1))
    assert len(bare) == 3 and wrapped == bare and tokens == bare_tokens
    for attributes in wrapped:
        assert attributes["gen_ai.provider.name"] == "scripted"
        assert attributes["gen_ai.request.model"] == "scripted"
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.usage.output_tokens"] == 2


def test_a_wrapped_chat_openai_is_limited_and_reported_as_openai(
    telemetry: Telemetry, exporter: Any, slots: Slots
) -> None:
    held: list[tuple[int, int]] = []

    def reply(request: httpx.Request) -> httpx.Response:
        held.append(slots.store.occupancy("llm:openai"))
        body = {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
        return httpx.Response(200, json=body)

    client = httpx.Client(transport=httpx.MockTransport(reply))
    openai = ChatOpenAI(
        api_key="sk-test",
        base_url="http://openai.invalid/v1",
        model="gpt-4o-mini",
        http_client=client,
        max_retries=0,
    )
    chat = limit_concurrency(openai, 4, slots=slots)
    assert (chat.provider, chat.model_name) == ("openai", "gpt-4o-mini")

    def node(state: State) -> State:
        return {"answer": chat.with_structured_output(Answer).invoke("q").answer}  # type: ignore[union-attr]

    app = build_observed_graph({"ask": node}, state_schema=State, ops=Ops(telemetry=telemetry))
    assert app.invoke({"question": "q"})["answer"] == "ok"
    assert held == [(1, 0)]
    [span] = llm_spans(exporter)
    assert span["gen_ai.provider.name"] == "openai"
    assert span["gen_ai.request.model"] == "gpt-4o-mini"
    assert (span["gen_ai.usage.input_tokens"], span["gen_ai.usage.output_tokens"]) == (5, 3)


async def test_langgraph_still_streams_the_wrapped_models_tokens(slots: Slots) -> None:
    def graph(chat: Any) -> Any:
        async def node(state: State) -> State:
            return {"answer": (await chat.ainvoke(state["question"])).text}

        return build_observed_graph({"ask": node}, state_schema=State, ops=Ops(telemetry=None))

    async def tokens(chat: Any) -> list[str]:
        stream = graph(chat).astream({"question": "q"}, stream_mode="messages")
        return [message.content async for message, _ in stream]

    bare = await tokens(ScriptedChatModel(respond=lambda _: "one two three"))
    chat = limit_concurrency(ScriptedChatModel(respond=lambda _: "one two three"), 1, slots=slots)
    assert await tokens(chat) == bare == ["one ", "two ", "three", ""]
    assert slots.store.occupancy(chat.key) == (0, 0)


def test_the_wrapper_reports_itself_as_the_inner_model() -> None:
    openai = ChatOpenAI(api_key="sk-test", base_url="http://openai.invalid/v1", model="gpt-4o")
    for inner in (ScriptedChatModel(tags=["t"]), openai):
        chat = limit_concurrency(inner, 1)
        assert chat._get_ls_params(stop=["x"]) == inner._get_ls_params(stop=["x"])
        assert chat._get_invocation_params(stop=["x"]) == inner._get_invocation_params(stop=["x"])
        assert chat._identifying_params == inner._identifying_params
        assert chat._llm_type == inner._llm_type
        assert chat._serialized == inner._serialized
        assert chat._get_llm_string() == inner._get_llm_string()  # the same cache entries
        assert (chat.tags, chat.callbacks, chat.cache) == (inner.tags, inner.callbacks, inner.cache)


# ------------------------------------------------------------------ structured output's shape
def models_in(runnable: Any) -> list[BaseLanguageModel[Any]]:
    if isinstance(runnable, BaseLanguageModel):
        return [runnable]
    if isinstance(runnable, list | tuple):
        return [m for item in runnable for m in models_in(item)]
    if isinstance(runnable, dict):
        return [m for item in runnable.values() for m in models_in(item)]
    if isinstance(runnable, Runnable) and isinstance(runnable, BaseModel):
        return [
            m for name in type(runnable).model_fields for m in models_in(getattr(runnable, name))
        ]
    return []


@pytest.mark.parametrize(
    "options",
    [{}, {"method": "function_calling"}, {"method": "json_mode"}, {"include_raw": True}],
)
def test_chat_openais_structured_output_calls_the_wrapper(options: dict[str, Any]) -> None:
    inner = ChatOpenAI(api_key="sk-test", base_url="http://openai.invalid/v1", model="gpt-4o-mini")
    chat = limit_concurrency(inner, 2)
    found = models_in(chat.with_structured_output(Answer, **options))
    assert found and all(model is chat for model in found)

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    bound = chat.bind_tools([add], tool_choice="add")
    assert models_in(bound) == [chat]
    assert [t["function"]["name"] for t in bound.kwargs["tools"]] == ["add"]  # type: ignore[attr-defined]


def test_chat_local_llamas_structured_output_calls_the_wrapper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(local_chat, "load_llama", no_loading)
    inner = local_chat.ChatLocalLlama()
    chat = limit_concurrency(inner, 1)
    assert chat.provider == "llama_cpp" and chat.model_name == inner.model_name
    structured = chat.with_structured_output(Answer)
    assert models_in(structured) == [chat]
    assert structured.first.kwargs["response_format"]["type"] == "json_object"  # type: ignore[attr-defined]


def test_a_runnable_without_the_inner_model_is_refused_not_bypassed() -> None:
    class Opaque(ScriptedChatModel):
        def with_structured_output(self, schema: Any, **kwargs: Any) -> Any:
            return RunnableLambda(lambda text: self.invoke(text))

    with pytest.raises(
        UserError, match=r"Opaque\.with_structured_output returned a RunnableLambda"
    ):
        limit_concurrency(Opaque(replies=[REPLY]), 1).with_structured_output(Answer)


# ------------------------------------------------------------------ a store that does not answer
class Down:
    """A slot store that never answers."""

    def try_acquire(self, *args: Any) -> Any:
        raise StoreUnavailable("down")

    async def atry_acquire(self, *args: Any) -> Any:
        raise StoreUnavailable("down")

    def release(self, *args: Any) -> bool:
        raise StoreUnavailable("down")

    async def arelease(self, *args: Any) -> bool:
        raise StoreUnavailable("down")


async def test_a_store_that_does_not_answer_fails_open_or_closed() -> None:
    down = Slots(Down())  # type: ignore[arg-type]
    opened = limit_concurrency(ScriptedChatModel(respond=lambda _: "ok"), 1, slots=down)
    assert opened.invoke("q").text == "ok"
    assert (await opened.ainvoke("q")).text == "ok"
    closed = limit_concurrency(
        ScriptedChatModel(respond=lambda _: "ok"), 1, slots=down, fail="closed"
    )
    with pytest.raises(ModelError, match="fail='closed'"):
        closed.invoke("q")
    with pytest.raises(ModelError, match="fail='closed'"):
        await closed.ainvoke("q")


# ------------------------------------------------------------------ misuse
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_in_flight": 0}, "max_in_flight is 0"),
        ({"max_in_flight": -2}, "max_in_flight is -2"),
        ({"max_in_flight": True}, "max_in_flight is True"),
        ({"max_in_flight": 1.5}, "max_in_flight is 1.5"),
        ({"max_in_flight": "4"}, "max_in_flight is '4'"),
        ({"wait_s": 0}, "wait_s is 0"),
        ({"wait_s": -1.0}, "wait_s is -1.0"),
        ({"wait_s": math.inf}, "wait_s is inf"),
        ({"wait_s": "1"}, "wait_s is '1'"),
        ({"inner": "gpt-4o"}, "inner is 'gpt-4o'"),
        ({"inner": ScriptedChatModel}, "inner is <class"),
        ({"fail": "maybe"}, "fail is 'maybe'"),
        ({"slots": "redis://localhost"}, "slots is 'redis://localhost'"),
        ({"provider": ""}, "provider is ''"),
    ],
)
def test_bad_input_is_a_configuration_error_naming_the_value(
    options: dict[str, Any], named: str
) -> None:
    data = {"inner": ScriptedChatModel(), "max_in_flight": 2, **options}
    with pytest.raises(ConfigurationError) as error:
        ConcurrencyLimitedChatModel(**data)
    assert named in str(error.value)
