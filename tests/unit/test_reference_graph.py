"""The reference graph on the scripted model and fake embeddings: every path through it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphops.builder import build_observed_graph
from graphops.corpus import CorpusRetriever
from graphops.errors import InvalidInputError
from graphops.models import ScriptedChatModel
from graphops.policies import GuardPolicy, Ops
from graphops.prompts import PromptLibrary
from graphs.agentic_rag import RagDeps, build_agentic_rag

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def scripted(
    *,
    small_talk: bool = False,
    relevant: Callable[[str], bool] = lambda d: True,
    rewrite: str = "gemini chat model key",
    answer: str = "Use google:<model> [1].",
    route_reply: str | None = None,
) -> ScriptedChatModel:
    """A model that answers each prompt kind by recognising its system message."""

    def respond(messages: list[BaseMessage]) -> str:
        system = messages[0].text
        if system.startswith("Is the message only a greeting"):
            return route_reply or json.dumps({"small_talk": small_talk})
        if system.startswith("Say whether the document"):
            document = messages[-1].text.split("Document:", 1)[1]
            return json.dumps({"relevant": "yes" if relevant(document) else "no"})
        if system.startswith("Rewrite the user's question"):
            return rewrite
        if system.startswith("You are the graphops documentation assistant"):
            return "Hello! Ask me about graphops."
        if system.startswith("You answer questions about graphops"):
            return answer
        raise AssertionError(f"unexpected prompt: {system[:60]}")

    return ScriptedChatModel(respond=respond)


def make_graph(chat: ScriptedChatModel, retriever: CorpusRetriever, **limits: int) -> object:
    deps = RagDeps(
        chat=chat, retriever=retriever, prompts=PromptLibrary(ROOT / "prompts"), **limits
    )
    return build_agentic_rag(deps).compile(checkpointer=InMemorySaver())


CONFIG = {"configurable": {"thread_id": "t1"}}


async def test_retrieve_grade_answer_cites_relevant_chunks(retriever: CorpusRetriever) -> None:
    chat = scripted(relevant=lambda d: "GOOGLE_API_KEY" in d)
    app = make_graph(chat, retriever)
    state = await app.ainvoke({"question": "How do I use Gemini as the chat model?"}, CONFIG)  # type: ignore[attr-defined]
    assert state["route"] == "retrieve"
    assert state["answer"] == "Use google:<model> [1]."
    assert [s.split("/")[-1] for s in state["sources"]] == ["config.md#chat-model"]
    assert state["low_confidence"] is False
    assert isinstance(state["messages"][0], HumanMessage)
    assert isinstance(state["messages"][-1], AIMessage)
    # the answer prompt numbered the chosen passage
    answer_prompt = chat.calls[-1][0].text
    assert "[1] (Configuration > Chat model)" in answer_prompt


async def test_small_talk_is_answered_directly(retriever: CorpusRetriever) -> None:
    app = make_graph(scripted(small_talk=True), retriever)
    state = await app.ainvoke({"question": "hello!"}, CONFIG)  # type: ignore[attr-defined]
    assert state["route"] == "respond"
    assert state["answer"] == "Hello! Ask me about graphops."
    assert state["sources"] == []


async def test_unparseable_route_retrieves(retriever: CorpusRetriever) -> None:
    app = make_graph(scripted(route_reply="sure thing"), retriever)
    state = await app.ainvoke({"question": "chunk size?"}, CONFIG)  # type: ignore[attr-defined]
    assert state["route"] == "retrieve"


async def test_nothing_relevant_rewrites_then_answers_with_low_confidence(
    retriever: CorpusRetriever,
) -> None:
    chat = scripted(relevant=lambda d: False, rewrite='"chunk overlap"\nextra line')
    app = make_graph(chat, retriever, max_rewrites=2, top_k=2)
    state = await app.ainvoke({"question": "What about sizes?"}, CONFIG)  # type: ignore[attr-defined]
    assert state["rewrites"] == 2
    assert state["query"] == "chunk overlap"
    assert state["low_confidence"] is True
    assert len(state["sources"]) == 2
    assert state["sources"] == [d["id"] for d in state["documents"][:2]]
    rewrites = [c for c in chat.calls if c[0].text.startswith("Rewrite")]
    assert len(rewrites) == 2


async def test_grader_failures_count_as_not_relevant(retriever: CorpusRetriever) -> None:
    def respond(messages: list[BaseMessage]) -> str:
        system = messages[0].text
        if system.startswith("Is the message"):
            return '{"small_talk": false}'
        if system.startswith("Say whether"):
            return "maybe?"
        return "answer"

    app = make_graph(ScriptedChatModel(respond=respond), retriever, max_rewrites=0)
    state = await app.ainvoke({"question": "cache keys"}, CONFIG)  # type: ignore[attr-defined]
    assert all(d["relevant"] is False for d in state["documents"])
    assert state["low_confidence"] is True


async def test_grader_provider_errors_propagate(retriever: CorpusRetriever) -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if messages[0].text.startswith("Is the message"):
            return '{"small_talk": false}'
        raise ConnectionError("provider down")

    app = make_graph(ScriptedChatModel(respond=respond), retriever)
    with pytest.raises(ConnectionError, match="provider down"):
        await app.ainvoke({"question": "cache keys"}, CONFIG)  # type: ignore[attr-defined]


@pytest.mark.parametrize("payload", [{"question": "   "}, {}, {"messages": []}])
async def test_a_run_without_a_question_fails_clearly(
    retriever: CorpusRetriever, payload: dict[str, Any]
) -> None:
    app = make_graph(scripted(), retriever)
    with pytest.raises(InvalidInputError, match="no question"):
        await app.ainvoke(payload, CONFIG)  # type: ignore[attr-defined]


async def test_the_guard_alone_holds_the_length_limit(retriever: CorpusRetriever) -> None:
    """The plain graph keeps no copy of the limit; observed, the guard refuses before any node."""
    long = "What is a tenant? " * 500  # 9000 bytes, over the guard's 8 kB default
    plain = make_graph(scripted(), retriever)
    assert (await plain.ainvoke({"question": long}, CONFIG))["answer"]  # type: ignore[attr-defined]
    deps = RagDeps(chat=scripted(), retriever=retriever, prompts=PromptLibrary(ROOT / "prompts"))
    observed = build_observed_graph(
        build_agentic_rag(deps), ops=Ops(guard=GuardPolicy(), telemetry=None)
    )
    out = await observed.ainvoke({"question": long})
    guard = out["graphops"]["guard"]
    assert guard["outcome"] == "refused" and guard["reason"] == "invalid_input"
    assert guard["message"].startswith("the question is 9000 bytes long in UTF-8")
    assert "answer" not in out


async def test_conversation_turns_reset_per_turn_fields(retriever: CorpusRetriever) -> None:
    app = make_graph(scripted(relevant=lambda d: "tenant" in d), retriever)
    await app.ainvoke({"question": "What are the cache keys?"}, CONFIG)  # type: ignore[attr-defined]
    second = await app.ainvoke(  # type: ignore[attr-defined]
        {"messages": [HumanMessage("hello again")]}, CONFIG
    )
    assert second["question"] == "hello again"
    assert second["rewrites"] == 0
    assert len(second["messages"]) == 4


def test_the_module_graph_imports_without_loading_models() -> None:
    import graphs.agentic_rag as module

    drawing = module.graph.get_graph().draw_mermaid()
    for node in (
        "generate_query_or_respond",
        "retrieve",
        "grade_documents",
        "rewrite_question",
        "generate_answer",
    ):
        assert node in drawing


def test_langgraph_json_points_at_a_compiled_graph() -> None:
    import importlib.util

    config = json.loads((ROOT / "langgraph.json").read_text())
    for target in config["graphs"].values():
        path, attribute = target.split(":")
        spec = importlib.util.spec_from_file_location("lg_target", ROOT / path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["lg_target"] = module  # as langgraph dev's loader does
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules["lg_target"]
        compiled = getattr(module, attribute)
        assert hasattr(compiled, "ainvoke")
        assert "generate_answer" in compiled.get_graph().nodes


async def test_the_answer_degrades_to_cited_passages_when_every_model_is_down(
    retriever: CorpusRetriever,
) -> None:
    """The reference ops: a generation that fails answers from the graded passages."""
    from graphops.errors import ProvidersUnavailable
    from graphs.agentic_rag import STAGE_LIMITS, reference_ops

    healthy = scripted(relevant=lambda d: "GOOGLE_API_KEY" in d)

    def respond(messages: list[BaseMessage]) -> str:
        if messages[0].text.startswith("You answer questions about graphops"):
            raise ProvidersUnavailable("no provider answered (openai: open, local: ModelError)")
        assert healthy.respond is not None
        return healthy.respond(messages)

    deps = RagDeps(
        chat=ScriptedChatModel(respond=respond),
        retriever=retriever,
        prompts=PromptLibrary(ROOT / "prompts"),
    )
    from graphops.settings import Settings

    remote = reference_ops(settings=Settings(chat_model="openai:gpt-4o-mini"), telemetry=None)
    assert {n: o.timeout for n, o in remote.nodes.items()} == STAGE_LIMITS
    assert reference_ops(settings=Settings(), telemetry=None).nodes == {}  # local: budget only
    ops = reference_ops(embeddings=retriever.embeddings, telemetry=None)
    app = build_observed_graph(build_agentic_rag(deps), ops=ops, name="agentic_rag")
    state = await app.ainvoke({"question": "How do I use Gemini as the chat model?"}, CONFIG)
    assert state["graphops"]["degraded"]["level"] == "extractive"
    assert state["graphops"]["degraded"]["node"] == "generate_answer"
    assert state["sources"] and "[1]" in state["answer"]
    assert isinstance(state["messages"][-1], AIMessage)
    assert state["messages"][-1].text == state["answer"]
