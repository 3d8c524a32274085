"""Exporters: a full queue drops and counts instead of blocking; OTLP/HTTP for real."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langgraph.graph import END, START, StateGraph
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from tests.conftest import Stuck


def test_a_full_export_queue_drops_and_counts_instead_of_blocking() -> None:
    stuck = Stuck()
    metrics = Metrics(CollectorRegistry())
    telemetry = Telemetry(exporters=[stuck], metrics=metrics, max_queue_size=16)
    for i in range(200):
        telemetry.tracer.start_span(f"s{i}").end()
    # all 200 spans ended while the exporter was still hung: nothing waited on it
    assert not stuck.release.is_set()
    dropped = metrics.spans_dropped._value.get()
    assert 200 - 16 - 16 <= dropped <= 200 - 16  # at most one batch is in flight
    stuck.release.set()
    telemetry.shutdown()
    assert stuck.exported + dropped == 200


class Traces(TypedDict, total=False):
    n: int


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.append(request)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1/traces", received
    server.shutdown()
    server.server_close()


def test_spans_reach_an_otlp_http_endpoint(
    otlp_receiver: tuple[str, list[ExportTraceServiceRequest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, received = otlp_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    telemetry = Telemetry.from_settings("otlp")
    graph = StateGraph(Traces)
    graph.add_node("step_one", lambda s: {"n": 1})
    graph.add_edge(START, "step_one")
    graph.add_edge("step_one", END)
    build_observed_graph(graph, ops=Ops(telemetry=telemetry), name="exported").invoke({"n": 0})
    assert telemetry.force_flush()
    names = {
        span.name
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert {"invoke_agent exported", "step_one"} <= names
    service = received[0].resource_spans[0].resource.attributes
    assert any(a.key == "service.name" and a.value.string_value == "graphops" for a in service)
    telemetry.shutdown()


def test_unknown_exporter_names_are_configuration_errors() -> None:
    from graphops.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown trace exporter 'jaeger'"):
        Telemetry.from_settings("otlp,jaeger")
