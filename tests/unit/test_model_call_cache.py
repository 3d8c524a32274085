"""The model-call cache: identical calls answered from SQLite, so evaluation re-runs are free."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, Generation
from langgraph.graph import END, START, StateGraph

from graphops.cache.model_calls import ModelCallCache, model_call_key
from graphops.models import ScriptedChatModel

MESSAGE = AIMessage(
    content="Cached answers are keyed by tenant [1].",
    usage_metadata={
        "input_tokens": 12,
        "output_tokens": 7,
        "total_tokens": 19,
        "input_token_details": {"cache_read": 3},
    },
    response_metadata={"model_name": "m", "finish_reason": "stop"},
    tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "call-1", "type": "tool_call"}],
)


def test_a_chat_generation_round_trips() -> None:
    cache = ModelCallCache(None)
    assert cache.lookup("prompt", "llm") is None
    cache.update("prompt", "llm", [ChatGeneration(message=MESSAGE, generation_info={"n": 1})])
    found = cache.lookup("prompt", "llm")
    assert found is not None
    [generation] = found
    assert isinstance(generation, ChatGeneration)
    assert isinstance(generation.message, AIMessage)
    assert generation.message == MESSAGE
    assert generation.message.usage_metadata == MESSAGE.usage_metadata
    assert generation.generation_info == {"n": 1}
    cache.update("plain", "llm", [Generation(text="a"), Generation(text="b")])
    assert cache.lookup("plain", "llm") == [Generation(text="a"), Generation(text="b")]


def test_prompt_and_llm_string_both_decide() -> None:
    cache = ModelCallCache(None)
    cache.update("prompt", "llm", [Generation(text="a")])
    assert cache.lookup("prompt", "llm-temperature-0.5") is None
    assert cache.lookup("prompt ", "llm") is None  # no normalisation: a model call is exact
    assert model_call_key("a", "bc") != model_call_key("ab", "c")
    cache.update("prompt", "llm", [Generation(text="b")])
    assert cache.lookup("prompt", "llm") == [Generation(text="b")]
    assert len(cache) == 1
    cache.clear()
    assert cache.lookup("prompt", "llm") is None
    assert len(cache) == 0


def test_entries_persist_across_instances_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "evals" / "calls.sqlite"
    first = ModelCallCache(path)
    first.update("prompt", "llm", [ChatGeneration(message=MESSAGE)])
    second = ModelCallCache(path)
    found = second.lookup("prompt", "llm")
    assert found is not None
    assert found[0] == ChatGeneration(message=MESSAGE)
    first.close()
    second.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_unreadable_entry_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    cache = ModelCallCache(path)
    cache.update("prompt", "llm", [Generation(text="a")])
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE graphops_model_calls SET generations = ?",
            ('[{"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {}}]',),
        )
    assert cache.lookup("prompt", "llm") is None


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as detector:
        yield detector


@pytest.mark.anyio
async def test_async_methods_keep_off_the_loop(tmp_path: Path, blockbuster: BlockBuster) -> None:
    blockbuster.deactivate()
    cache = ModelCallCache(tmp_path / "calls.sqlite")
    blockbuster.activate()
    assert await cache.alookup("prompt", "llm") is None
    await cache.aupdate("prompt", "llm", [ChatGeneration(message=MESSAGE)])
    assert await cache.alookup("prompt", "llm") == [ChatGeneration(message=MESSAGE)]
    await cache.aclear()
    assert await cache.alookup("prompt", "llm") is None


class EvalState(TypedDict, total=False):
    question: str
    answer: str


def _reply(messages: list[BaseMessage]) -> str:
    return f"The answer to {messages[-1].text}"


def _evaluation_graph(model: ScriptedChatModel) -> object:
    def answer(state: EvalState) -> EvalState:
        return {"answer": model.invoke(state["question"]).text}

    graph = StateGraph(EvalState)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()


QUESTIONS = [f"question number {i}?" for i in range(30)]


@pytest.mark.parametrize(("cached", "calls"), [(True, 30), (False, 300)])
def test_re_running_an_evaluation_costs_no_model_calls(
    tmp_path: Path, cached: bool, calls: int
) -> None:
    cache = ModelCallCache(tmp_path / "calls.sqlite") if cached else None
    model = ScriptedChatModel(respond=_reply, cache=cache)
    app = _evaluation_graph(model)
    for _ in range(10):
        for question in QUESTIONS:
            state = app.invoke({"question": question})  # type: ignore[attr-defined]
            assert state["answer"] == f"The answer to {question}"
    assert len(model.calls) == calls


def test_the_cache_survives_a_new_process_of_the_same_evaluation(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    first = ScriptedChatModel(respond=_reply, cache=ModelCallCache(path))
    for question in QUESTIONS[:5]:
        first.invoke(question)
    rerun = ScriptedChatModel(respond=_reply, cache=ModelCallCache(path))
    answers = [rerun.invoke(q) for q in QUESTIONS[:5]]
    assert rerun.calls == []
    assert answers[0].text == "The answer to question number 0?"
    assert answers[0].usage_metadata is not None
    assert answers[0].usage_metadata["output_tokens"] == 6
    rerun.invoke(QUESTIONS[0], stop=["."])  # another generation parameter: another call
    assert len(rerun.calls) == 1


@pytest.mark.anyio
async def test_async_model_calls_use_the_cache(tmp_path: Path) -> None:
    model = ScriptedChatModel(respond=_reply, cache=ModelCallCache(None))
    for _ in range(3):
        for question in QUESTIONS[:4]:
            reply = await model.ainvoke(question)
            assert reply.text == f"The answer to {question}"
    assert len(model.calls) == 4
