"""The degradation ladder: a node that still fails, or runs out of time, answers degraded."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import TimeoutPolicy
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from graphops import build_observed_graph
from graphops.errors import ConfigurationError, InvalidInputError, ProvidersUnavailable
from graphops.models.hashing import HashEmbeddings
from graphops.observe.metrics import Metrics
from graphops.observe.telemetry import Telemetry
from graphops.policies import BudgetPolicy, DegradePolicy, GuardPolicy, NodeOps, Ops

pytestmark = pytest.mark.anyio

DOCS = [
    {
        "id": "limits#requests",
        "title": "Limits",
        "text": "A request limit counts runs per user. Ten runs per minute is the default "
        "limit for each user of the service.",
    },
    {
        "id": "cache#keys",
        "title": "Cache",
        "text": "The cache key holds the tenant, the prompt versions and the corpus version.",
    },
]


class State(TypedDict, total=False):
    question: str
    documents: list[dict[str, Any]]
    answer: str
    sources: list[str]


def _rag(fail: Any) -> StateGraph[State]:
    def retrieve(state: State) -> State:
        return {"documents": DOCS}

    graph = StateGraph(State)
    graph.add_node("retrieve", retrieve)
    graph.add_node("generate", fail)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "generate")
    graph.add_edge("generate", END)
    return graph


def _down(state: State) -> State:
    raise ProvidersUnavailable("no provider answered (openai: open, local: ModelError)")


def _telemetry() -> tuple[Telemetry, InMemorySpanExporter, CollectorRegistry]:
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(exporters=[SimpleSpanProcessor(exporter)], metrics=Metrics(registry))
    return telemetry, exporter, registry


async def test_a_failing_node_answers_from_the_passages_already_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry, exporter, registry = _telemetry()
    ops = Ops(degrade=DegradePolicy(embeddings=HashEmbeddings()), telemetry=telemetry)
    app = build_observed_graph(_rag(_down), ops=ops, name="rag")
    with caplog.at_level(logging.WARNING, logger="graphops.resilience"):
        out = await app.ainvoke({"question": "How many runs per minute may each user make?"})
    assert out["graphops"]["degraded"] == {
        "level": "extractive",
        "reason": "providers_unavailable",
        "node": "generate",
        "error": "ProvidersUnavailable",
    }
    assert "Ten runs per minute" in out["answer"] and "[1]" in out["answer"]
    assert out["sources"] == ["limits#requests"]
    assert (
        registry.get_sample_value(
            "graphops_degraded_total",
            {"graph": "rag", "level": "extractive", "reason": "providers_unavailable"},
        )
        == 1.0
    )
    (handler,) = [s for s in exporter.get_finished_spans() if s.name == "__default_error_handler__"]
    assert handler.attributes["graphops.degraded"] == "extractive"
    assert [e.name for e in handler.events] == ["graphops.degraded"]
    assert any("degraded to extractive" in r.getMessage() for r in caplog.records)


def test_without_embeddings_or_passages_the_ladder_refuses_politely() -> None:
    ops = Ops(degrade=DegradePolicy(), telemetry=None)
    out = build_observed_graph(_rag(_down), ops=ops).invoke({"question": "q?"})
    assert out["graphops"]["degraded"]["level"] == "refusal"
    assert out["answer"] == DegradePolicy().refusal and out["sources"] == []


def test_a_node_out_of_time_degrades() -> None:
    def slow(state: State) -> State:
        time.sleep(2.0)
        return {"answer": "late"}

    ops = Ops(
        budget=BudgetPolicy(total_s=0.5, reserve_s=0.2),
        degrade=DegradePolicy(embeddings=HashEmbeddings()),
        telemetry=None,
    )
    started = time.monotonic()
    out = build_observed_graph(_rag(slow), ops=ops).invoke({"question": "runs per minute?"})
    assert time.monotonic() - started < 1.5  # it answered without waiting for the node
    assert out["graphops"]["degraded"]["reason"] == "budget_exhausted"
    assert out["graphops"]["degraded"]["level"] == "extractive"


async def test_a_langgraph_node_timeout_degrades_too() -> None:
    """LangGraph issue #8842 (error handlers not seeing node timeouts) does not bite here."""

    async def slow(state: State) -> State:
        await asyncio.sleep(5)
        return {"answer": "late"}

    graph = StateGraph(State)
    graph.add_node("slow", slow, timeout=TimeoutPolicy(run_timeout=0.1))
    graph.add_edge(START, "slow")
    graph.add_edge("slow", END)
    out = await build_observed_graph(graph, ops=Ops(degrade=DegradePolicy())).ainvoke(
        {"question": "q"}
    )
    assert out["graphops"]["degraded"]["reason"] == "node_timeout"


def test_what_says_the_call_is_wrong_is_not_degraded() -> None:
    def wrong(state: State) -> State:
        raise InvalidInputError("no question")

    with pytest.raises(InvalidInputError):
        build_observed_graph(_rag(wrong), ops=Ops(degrade=DegradePolicy())).invoke({})
    refusing = Ops(
        guard=GuardPolicy(max_input_bytes=4, on_refusal="raise"), degrade=DegradePolicy()
    )
    from graphops.errors import RefusedError

    with pytest.raises(RefusedError):
        build_observed_graph(_rag(_down), ops=refusing).invoke({"question": "far too long"})


def test_a_node_may_have_its_own_ladder_or_none() -> None:
    embeddings = HashEmbeddings()
    own = Ops(
        degrade=DegradePolicy(embeddings=embeddings),
        nodes={"generate": NodeOps(degrade=("refusal",))},
        telemetry=None,
    )
    out = build_observed_graph(_rag(_down), ops=own).invoke({"question": "runs per minute?"})
    assert out["graphops"]["degraded"]["level"] == "refusal"
    none = Ops(
        degrade=DegradePolicy(embeddings=embeddings), nodes={"generate": NodeOps(degrade=())}
    )
    with pytest.raises(ProvidersUnavailable):
        build_observed_graph(_rag(_down), ops=none).invoke({"question": "runs per minute?"})


def test_a_graphs_own_error_handler_is_kept() -> None:
    graph = _rag(_down)
    graph.set_node_defaults(error_handler=lambda state: {"answer": "mine"})
    out = build_observed_graph(graph, ops=Ops(degrade=DegradePolicy())).invoke({"question": "q"})
    assert out["answer"] == "mine" and "degraded" not in out["graphops"]


def test_the_stale_level_asks_the_cache_first() -> None:
    from graphops.policies import CachePolicy

    class Stale(CachePolicy):
        def stale(self, state: Any, scope: Any) -> dict[str, Any]:
            return {"answer": "yesterday's answer", "sources": ["old"]}

    ops = Ops(cache=Stale(), degrade=DegradePolicy(embeddings=HashEmbeddings()), telemetry=None)
    out = build_observed_graph(_rag(_down), ops=ops).invoke({"question": "runs per minute?"})
    assert out["answer"] == "yesterday's answer"
    assert out["graphops"]["degraded"]["level"] == "stale"
    assert out["graphops"]["cache"] == {"hit": False, "tier": None}


@pytest.mark.parametrize(
    "changes",
    [
        {"levels": ("stale", "guess")},
        {"levels": ("refusal", "refusal")},
        {"levels": "refusal"},
        {"refusal": "  "},
        {"embeddings": "minilm"},
    ],
)
def test_bad_ladders_are_configuration_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="DegradePolicy"):
        DegradePolicy(**changes)
    if "levels" in changes:
        with pytest.raises(ConfigurationError, match=r"NodeOps\.degrade"):
            NodeOps(degrade=changes["levels"])
