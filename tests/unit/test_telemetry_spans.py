"""The span tree of the observed reference graph, read from an in-memory exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import generate_latest
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.corpus import CorpusRetriever
from graphops.models import HashEmbeddings, ScriptedChatModel
from graphops.observe import Telemetry
from graphops.policies import CachePolicy, GuardPolicy, Ops
from graphops.prompts import PromptLibrary
from graphs.agentic_rag import RagDeps, build_agentic_rag
from tests.conftest import rag_replies

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    found = [
        s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]
    return sorted(found, key=lambda s: s.start_time or 0)


def observed_rag(telemetry: Telemetry, index_dir: Path, chat: ScriptedChatModel) -> Any:
    retriever = CorpusRetriever(
        index_dir=index_dir, embeddings=telemetry.embeddings(HashEmbeddings()), k=2
    )
    deps = RagDeps(chat=chat, retriever=retriever, prompts=PromptLibrary(ROOT / "prompts"), top_k=2)
    ops = Ops(guard=GuardPolicy(), cache=CachePolicy(), telemetry=telemetry)
    return build_observed_graph(build_agentic_rag(deps), ops=ops, name="agentic_rag")


async def test_span_tree_of_the_reference_graph(
    telemetry: Telemetry, exporter: Any, index_dir: Path
) -> None:
    chat = ScriptedChatModel(respond=rag_replies)
    app = observed_rag(telemetry, index_dir, chat)
    config = {"configurable": {"thread_id": "t-1"}, "metadata": {"user": "ann", "tenant": "acme"}}
    result = await app.ainvoke({"question": "What are the cache keys?"}, config)
    spans = list(exporter.get_finished_spans())

    assert len({s.context.trace_id for s in spans}) == 1
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "invoke_agent agentic_rag"
    assert root.attributes["graphops.thread_id"] == "t-1"
    assert root.attributes["gen_ai.conversation.id"] == "t-1"
    assert root.attributes["graphops.user"] == "ann"
    assert root.attributes["graphops.tenant"] == "acme"
    assert result["graphops"]["run"]["trace_id"] == f"{root.context.trace_id:032x}"

    nodes = children(spans, root)
    assert [n.name for n in nodes] == [
        "guard",
        "cache_lookup",
        "generate_query_or_respond",
        "retrieve",
        "grade_documents",
        "generate_answer",
        "cache_store",
        "settle",
    ]
    assert [n.attributes["graphops.node.kind"] for n in nodes] == [
        "step",
        "step",
        "node",
        "node",
        "node",
        "node",
        "step",
        "step",
    ]
    # every LLM call is a chat span under the node that made it, tokens as the model reported
    chat_spans = [s for s in spans if s.name == "chat scripted"]
    assert len(chat_spans) == len(chat.calls) == 1 + 2 + 1
    grade_node = next(n for n in nodes if n.name == "grade_documents")
    assert len(children(spans, grade_node)) == 2
    for span in chat_spans:
        assert span.kind == SpanKind.CLIENT
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "scripted"
        assert span.attributes["gen_ai.request.model"] == "scripted"
        assert span.attributes["gen_ai.response.model"] == "scripted"
        assert span.attributes["graphops.cost_usd"] == 0.0
    answer_span = children(spans, nodes[5])[0]
    final = result["messages"][-1]
    assert isinstance(final, AIMessage) and final.usage_metadata is not None
    assert (
        answer_span.attributes["gen_ai.usage.input_tokens"] == final.usage_metadata["input_tokens"]
    )
    assert (
        answer_span.attributes["gen_ai.usage.output_tokens"]
        == final.usage_metadata["output_tokens"]
    )

    # retrieval → embeddings, with the ids and scores of what came back
    (retrieval,) = children(spans, nodes[3])
    assert retrieval.name == "retrieval CorpusRetriever"
    assert retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    assert retrieval.attributes["gen_ai.request.top_k"] == 2
    assert list(retrieval.attributes["graphops.retrieval.document_ids"]) == [
        d["id"] for d in result["documents"]
    ]
    assert len(retrieval.attributes["graphops.retrieval.scores"]) == 2
    (embedding,) = children(spans, retrieval)
    assert embedding.name == "embeddings hash-256"
    assert embedding.attributes["gen_ai.operation.name"] == "embeddings"

    # routing decisions are events on the node that routed
    route = nodes[2].events[0]
    assert route.name == "graphops.route"
    assert list(route.attributes["graphops.route.to"]) == ["retrieve"]
    grade_route = grade_node.events[0]
    assert list(grade_route.attributes["graphops.route.to"]) == ["generate_answer"]
    assert grade_route.attributes["graphops.route.by"] == "after_grading"
    assert telemetry.handler.open_runs() == 0


async def test_prompts_are_recorded_only_when_enabled_and_then_redacted(
    exporter: Any, index_dir: Path
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from prometheus_client import CollectorRegistry

    from graphops.observe import Metrics

    def redact(text: str) -> str:
        return text.replace("cache keys", "[REDACTED]")

    off = Telemetry(exporters=[SimpleSpanProcessor(exporter)], metrics=Metrics(CollectorRegistry()))
    await observed_rag(off, index_dir, ScriptedChatModel(respond=rag_replies)).ainvoke(
        {"question": "What are the cache keys?"}
    )
    assert not any("gen_ai.input.messages" in s.attributes for s in exporter.get_finished_spans())
    exporter.clear()
    on = Telemetry(
        exporters=[SimpleSpanProcessor(exporter)],
        metrics=Metrics(CollectorRegistry()),
        capture_content=True,
        redact=redact,
    )
    await observed_rag(on, index_dir, ScriptedChatModel(respond=rag_replies)).ainvoke(
        {"question": "What are the cache keys?"}
    )
    recorded = [s for s in exporter.get_finished_spans() if "gen_ai.input.messages" in s.attributes]
    assert recorded
    for span in recorded:
        assert "[REDACTED]" in span.attributes["gen_ai.input.messages"]
        assert "cache keys" not in span.attributes["gen_ai.input.messages"]
        assert "gen_ai.output.messages" in span.attributes


class Counter(TypedDict, total=False):
    n: int


async def test_a_failing_node_records_an_error_and_still_raises(
    telemetry: Telemetry, exporter: Any
) -> None:
    def boom(state: Counter) -> Counter:
        raise ValueError("the user's own error")

    graph = StateGraph(Counter)
    graph.add_node("boom", boom)
    graph.add_edge(START, "boom")
    graph.add_edge("boom", END)
    app = build_observed_graph(graph, ops=Ops(telemetry=telemetry), name="failing")
    with pytest.raises(ValueError, match="the user's own error"):
        await app.ainvoke({"n": 0})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    node = spans["boom"]
    assert node.status.status_code == StatusCode.ERROR
    assert node.attributes["error.type"] == "ValueError"
    assert any(e.name == "exception" for e in node.events)
    assert spans["invoke_agent failing"].status.status_code == StatusCode.ERROR
    text = generate_latest(telemetry.metrics.registry).decode()
    assert 'graphops_runs_total{graph="failing",status="error"} 1.0' in text
    assert (
        'graphops_node_duration_seconds_count{graph="failing",node="boom",status="error"} 1.0'
        in text
    )
    assert telemetry.handler.open_runs() == 0


async def test_retries_are_events_on_the_next_attempt(telemetry: Telemetry, exporter: Any) -> None:
    attempts: list[int] = []

    def flaky(state: Counter) -> Counter:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("transient")
        return {"n": 1}

    graph = StateGraph(Counter)
    graph.add_node(
        "flaky", flaky, retry_policy=RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=False)
    )
    graph.add_edge(START, "flaky")
    graph.add_edge("flaky", END)
    app = build_observed_graph(graph, ops=Ops(telemetry=telemetry))
    assert (await app.ainvoke({"n": 0}))["n"] == 1
    first, second = sorted(
        (s for s in exporter.get_finished_spans() if s.name == "flaky"), key=lambda s: s.start_time
    )
    assert first.status.status_code == StatusCode.ERROR
    assert second.status.status_code != StatusCode.ERROR
    assert [e.name for e in second.events] == ["graphops.retry"]
    assert second.attributes["graphops.attempt"] == 2


async def test_llm_failures_are_error_spans_and_metrics(
    telemetry: Telemetry, exporter: Any
) -> None:
    chat = ScriptedChatModel(replies=[TimeoutError("provider timed out")])

    async def ask(state: Counter) -> Counter:
        await chat.ainvoke("hi")
        return {}

    graph = StateGraph(Counter)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    with pytest.raises(TimeoutError):
        await build_observed_graph(graph, ops=Ops(telemetry=telemetry)).ainvoke({"n": 0})
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "chat scripted"]
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "TimeoutError"
    text = generate_latest(telemetry.metrics.registry).decode()
    assert (
        'graphops_llm_calls_total{model="scripted",provider="scripted",status="error"} 1.0' in text
    )
