"""Overhead of build_observed_graph against the plain graph, measured in one process.

    .venv/bin/python benchmarks/overhead.py [--iterations N]

Runs a plain 5-node graph of no-op nodes and the same graph through
build_observed_graph (telemetry on: spans to a batch processor with a no-op
exporter, metrics on a private registry, JSON logs off; no checkpointer), in
alternating rounds so drift hits both alike, and prints medians and ratios.
Configurations: telemetry only (no inserted node), and every step on (guard,
cache_lookup, cache_store, settle; pass-through today).

    .venv/bin/python benchmarks/overhead.py --reference [--questions N]

runs the reference RAG graph on the local model instead, plain against observed
(every step on, telemetry on), alternating question by question.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from _graphs import five_nodes
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops


class NullExporter(SpanExporter):
    """Accepts and discards spans: measures the pipeline, not a network."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def median_ms(run: Callable[[], object], iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def reference(questions: int) -> None:
    import asyncio
    import json
    import tempfile
    from pathlib import Path

    from graphops.settings import load_settings
    from graphs.agentic_rag import RagDeps, build_agentic_rag

    settings = load_settings(data_dir=Path(tempfile.mkdtemp()), n_threads=2)
    deps = RagDeps.from_settings(settings)
    telemetry = Telemetry(exporters=[NullExporter()], metrics=Metrics(CollectorRegistry()))
    plain = build_agentic_rag(deps).compile()
    observed = build_observed_graph(build_agentic_rag(deps), ops=Ops.all_steps(telemetry=telemetry))
    golden = Path(__file__).resolve().parents[1] / "evals" / "golden.jsonl"
    items = [json.loads(line)["question"] for line in golden.read_text().splitlines()]
    times: dict[str, list[float]] = {"plain": [], "observed": []}

    async def run() -> None:
        await plain.ainvoke({"question": "warm up"})
        for question in items[:questions]:
            for name, graph in (("plain", plain), ("observed", observed)):
                started = time.perf_counter()
                await graph.ainvoke({"question": question})
                times[name].append(time.perf_counter() - started)

    asyncio.run(run())
    base = statistics.median(times["plain"])
    print(f"reference graph, local model, {questions} questions, median s and ratio")
    for name, samples in times.items():
        value = statistics.median(samples)
        print(f"{name:<10}{value:>8.2f} s{value / base:>8.3f}")
    total = sum(times["observed"]) / sum(times["plain"])
    print(f"sum observed / sum plain: {total:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--questions", type=int, default=8)
    args = parser.parse_args()
    if args.reference:
        reference(args.questions)
        return

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
