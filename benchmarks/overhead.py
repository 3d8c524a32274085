"""Overhead of build_observed_graph against the plain graph, measured in one process.

    .venv/bin/python benchmarks/overhead.py [--iterations N]

Runs a plain 5-node graph of no-op nodes and the same graph through
build_observed_graph (telemetry on: spans to a batch processor with a no-op
exporter, metrics on a private registry, JSON logs off; no checkpointer), in
alternating rounds so drift hits both alike, and prints medians and ratios.
Configurations: telemetry only (no inserted node), and every step on (guard,
cache_lookup, cache_store, settle; pass-through today).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.observe import Metrics, Telemetry
from graphops.ops import Ops


class State(TypedDict, total=False):
    x: int


class NullExporter(SpanExporter):
    """Accepts and discards spans: measures the pipeline, not a network."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def noop(state: State) -> State:
    return {"x": state.get("x", 0) + 1}


def five_nodes() -> StateGraph[State]:
    builder: StateGraph[State] = StateGraph(State)
    previous = START
    for i in range(5):
        builder.add_node(f"n{i}", noop)
        builder.add_edge(previous, f"n{i}")
        previous = f"n{i}"
    builder.add_edge(previous, END)
    return builder


def median_ms(run: Callable[[], object], iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    telemetry = Telemetry(exporters=[NullExporter()], metrics=Metrics(CollectorRegistry()))
    graphs = {
        "plain": five_nodes().compile(),
        "observed, telemetry only": build_observed_graph(
            five_nodes(), ops=Ops(telemetry=telemetry)
        ),
        "observed, all steps": build_observed_graph(
            five_nodes(), ops=Ops.all_steps(telemetry=telemetry)
        ),
    }
    for graph in graphs.values():  # warm up
        for _ in range(300):
            graph.invoke({"x": 0})
    results: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(args.rounds):
        for name, graph in graphs.items():
            results[name].append(median_ms(lambda g=graph: g.invoke({"x": 0}), args.iterations))
    plain = statistics.median(results["plain"])
    print(f"{'graph (5 no-op nodes, invoke)':<32}{'median ms':>10}{'ratio':>8}")
    for name, samples in results.items():
        value = statistics.median(samples)
        print(f"{name:<32}{value:>10.3f}{value / plain:>8.2f}")
    telemetry.shutdown()


if __name__ == "__main__":
    main()
