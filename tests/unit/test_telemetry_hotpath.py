"""Light spans (graphops.observe.spans) export what the SDK's spans exported."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.observe import Metrics, Telemetry
from graphops.observe.handler import node_span, step_span
from graphops.observe.spans import LightSpan
from graphops.observe.tracing import make_tracer_provider
from graphops.policies import Ops
from tests.conftest import Stuck


class S(TypedDict, total=False):
    n: int


def _exported(span: ReadableSpan) -> dict[str, Any]:
    """Everything an exporter reads, ids and times aside."""
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": dict(span.attributes or {}),
        "events": [
            (e.name, {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"})
            for e in span.events
        ],
        "links": list(span.links),
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource.attributes,
        "scope": span.instrumentation_scope,
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "sampled": span.context.trace_flags,
        "trace_state": span.context.trace_state,
        "is_remote": span.context.is_remote,
        "json_keys": sorted(__import__("json").loads(span.to_json())),
    }


def _work(span: trace.Span) -> None:
    span.set_attribute("graphops.prompts", ["a@1", "b@2"])  # a list: a tuple once set
    span.set_attribute("graphops.count", 3)
    span.set_attribute("graphops.bad", None)  # type: ignore[arg-type]  # dropped, as the SDK does
    span.set_attributes({"graphops.count": 4, "graphops.ratio": 0.5})
    span.add_event("graphops.route", {"graphops.route.to": ["x", "y"]})
    try:
        raise ValueError("boom")
    except ValueError as error:
        span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.set_status(Status(StatusCode.UNSET))  # ignored, as the SDK ignores it


def test_a_light_span_exports_what_an_sdk_span_exported_through_simple_and_batch() -> None:
    simple, batched = InMemorySpanExporter(), InMemorySpanExporter()
    telemetry = Telemetry(
        exporters=[SimpleSpanProcessor(simple), batched], metrics=Metrics(CollectorRegistry())
    )
    assert telemetry.spans.light
    attrs = {"graphops.node": "n", "graphops.step": 1, "graphops.tags": ["t"]}

    sdk_root = telemetry.tracer.start_span("root", attributes={"graphops.run": "r"})
    sdk = telemetry.tracer.start_span(
        "n", context=trace.set_span_in_context(sdk_root), kind=SpanKind.CLIENT, attributes=attrs
    )
    light_root = telemetry.spans.start("root", None, attributes={"graphops.run": "r"})
    light = telemetry.spans.start("n", light_root, SpanKind.CLIENT, attrs)
    assert isinstance(light, LightSpan)
    for span in (sdk, light):
        _work(span)
        span.end()
        span.set_attribute("graphops.late", 1)  # refused once ended, by both
    sdk_root.end()
    light_root.end()
    assert telemetry.force_flush()

    for exporter in (simple, batched):
        by_name: dict[tuple[str, bool], ReadableSpan] = {}
        for span in exporter.get_finished_spans():
            by_name[(span.name, isinstance(span, LightSpan))] = span
        assert len(by_name) == 4
        for name in ("root", "n"):
            assert _exported(by_name[(name, True)]) == _exported(by_name[(name, False)])
        light_child, sdk_child = by_name[("n", True)], by_name[("n", False)]
        assert light_child.parent == by_name[("root", True)].context
        assert sdk_child.parent == by_name[("root", False)].context
        assert light_child.attributes["graphops.prompts"] == ("a@1", "b@2")
        assert list(light_child.attributes) == list(sdk_child.attributes)  # same order
        stack = light_child.events[1].attributes["exception.stacktrace"]
        assert "ValueError: boom" in stack
        start, end = light_child.start_time, light_child.end_time
        assert start is not None and end is not None and start <= end
    telemetry.shutdown()


def _graph(telemetry: Telemetry, node: Any) -> Any:
    graph = StateGraph(S)
    graph.add_node("work", node)
    graph.add_edge(START, "work")
    graph.add_edge("work", END)
    return build_observed_graph(graph, ops=Ops.all_steps(telemetry=telemetry), name="hot")


def test_sdk_spans_made_inside_a_node_are_children_of_the_node_span(
    telemetry: Telemetry, exporter: Any
) -> None:
    def work(state: S, config: RunnableConfig) -> S:
        node = node_span(config)
        node.set_attribute("graphops.custom", "yes")
        with telemetry.tracer.start_as_current_span(
            "custom", context=trace.set_span_in_context(node)
        ):
            telemetry.embeddings(_Fixed()).embed_query("q")  # nests under the current span
        return {"n": 1}

    _graph(telemetry, work).invoke({"n": 0}, {"configurable": {"thread_id": "t"}})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    node, custom = spans["work"], spans["custom"]
    assert not isinstance(custom, LightSpan) and isinstance(node, LightSpan)
    assert custom.parent is not None and custom.parent.span_id == node.context.span_id
    embeddings = next(s for s in spans.values() if s.name.startswith("embeddings"))
    assert embeddings.parent is not None and embeddings.parent.span_id == custom.context.span_id
    assert node.attributes["graphops.custom"] == "yes"
    assert len({s.context.trace_id for s in spans.values()}) == 1
    # the steps' spans are node-kind spans under the run, as before
    (root,) = [s for s in spans.values() if s.parent is None]
    steps = [s.name for s in spans.values() if s.parent == root.context and s.name != "work"]
    assert sorted(steps) == ["cache_lookup", "cache_store", "guard", "settle"]


class _Fixed:
    model = "fixed"

    def embed_query(self, text: str) -> list[float]:
        return [1.0]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[1.0] for _ in texts]


def test_a_run_inside_an_active_span_joins_its_trace(telemetry: Telemetry, exporter: Any) -> None:
    app = _graph(telemetry, lambda s: {"n": 1})
    with telemetry.tracer.start_as_current_span("request") as outer:
        app.invoke({"n": 0})
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "invoke_agent hot"]
    assert root.parent == outer.get_span_context()
    assert {s.context.trace_id for s in spans} == {outer.get_span_context().trace_id}


def test_a_full_queue_still_drops_and_counts_light_spans() -> None:
    stuck = Stuck()
    metrics = Metrics(CollectorRegistry())
    telemetry = Telemetry(exporters=[stuck], metrics=metrics, max_queue_size=16)
    app = _graph(telemetry, lambda s: {"n": 1})
    runs = 20
    for _ in range(runs):
        app.invoke({"n": 0})
    total = runs * 6  # the run, guard, cache_lookup, work, cache_store, settle
    assert not stuck.release.is_set()
    dropped = metrics.spans_dropped._value.get()
    assert total - 16 - 16 <= dropped <= total - 16
    stuck.release.set()
    telemetry.shutdown()
    assert stuck.exported + dropped == total


def test_node_and_step_spans_outside_a_run_are_no_ops() -> None:
    span = node_span({})
    assert not span.is_recording()
    span.set_attribute("graphops.anything", 1)
    with step_span({}, "guard") as step:
        assert not step.is_recording()
        step.set_attribute("graphops.anything", 1)


def test_a_provider_or_a_sampler_of_your_own_keeps_the_sdk_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory = InMemorySpanExporter()
    provider = make_tracer_provider([SimpleSpanProcessor(memory)], lambda: None)
    mine = Telemetry(tracer_provider=provider, metrics=Metrics(CollectorRegistry()))
    assert not mine.spans.light
    _graph(mine, lambda s: {"n": 1}).invoke({"n": 0})
    assert memory.get_finished_spans()
    assert not any(isinstance(s, LightSpan) for s in memory.get_finished_spans())

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    dropped = InMemorySpanExporter()
    off = Telemetry(exporters=[SimpleSpanProcessor(dropped)], metrics=Metrics(CollectorRegistry()))
    assert not off.spans.light
    _graph(off, lambda s: {"n": 1}).invoke({"n": 0})
    assert dropped.get_finished_spans() == ()
