"""Overhead of build_observed_graph against the plain graph, measured in one process.

    .venv/bin/python benchmarks/overhead.py [--iterations N] [--rounds R]

Runs a plain 5-node graph of no-op nodes and the same graph through
build_observed_graph (telemetry on: spans to a batch processor with a no-op
exporter, metrics on a private registry, JSON logs off; no checkpointer), the
graphs taking turns on every invoke so drift hits all alike, and prints, per
graph, the median over the rounds and its ratio to the plain graph (median, and
the lowest and highest round). Configurations: telemetry only (no inserted
node), every step on (guard, cache_lookup in graphops_head; cache_store,
settle as the run's scope closes, in no node), and every step with the guard
holding four limits on the memory store (user, tenant and IP request limits, a
user token quota reserved and settled per run). A plain graph of 6 no-op nodes
shows what the one node a fresh run passes through (the head) costs by itself.

Then the same with a SQLite checkpointer (skip with ``--no-checkpointer``): the
sync ``SqliteSaver`` (``invoke``) and the ``AsyncSqliteSaver`` (``ainvoke``), the
same saver class on both sides, a fresh database file per graph in a temporary
folder and a new thread id per invoke, for each of LangGraph's ``durability``
modes (``sync``, ``async`` — LangGraph's default — and ``exit``), again with
the 6-node plain graph. Ratios are against the plain 5-node graph with the same
saver and durability.

    .venv/bin/python benchmarks/overhead.py --reference [--questions N]

runs the reference RAG graph on the local model instead, plain against observed
(every step on, telemetry on), alternating question by question.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from _graphs import five_nodes, line_of
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.limits import RequestLimit, TokenQuota
from graphops.observe import Metrics, Telemetry
from graphops.policies import BudgetPolicy, CachePolicy, GuardPolicy, Ops

DURABILITIES = ("sync", "async", "exit")
WHO: Any = {"metadata": {"user": "ann", "tenant": "acme", "ip": "10.0.0.1"}}


def four_limits() -> GuardPolicy:
    """The guard with the four limits of benchmarks/limiter.py, on the memory store.

    User, tenant and IP request limits too high to refuse, and a user token quota
    (each run reserves, then settles: the runs use no tokens, so all is refunded).
    """
    return GuardPolicy(
        requests=(
            RequestLimit("user", "100000000/hour"),
            RequestLimit("tenant", "100000000/hour"),
            RequestLimit("ip", "100000000/hour"),
        ),
        quotas=(TokenQuota("user", 10**15),),
    )


class NullExporter(SpanExporter):
    """Accepts and discards spans: measures the pipeline, not a network."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def interleaved_ms(
    graphs: dict[str, Any], run: Callable[[Any], object], iterations: int
) -> dict[str, float]:
    """Each graph's median ms over ``iterations`` invokes, the graphs taking turns per invoke.

    Taking turns on every invoke, not in blocks, puts the machine's drift (other
    processes, CPU frequency) on every graph alike: on a shared 2-core machine a
    block-wise ratio moved by ±0.1 from run to run.
    """
    samples: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(iterations):
        for name, graph in graphs.items():
            started = time.perf_counter()
            run(graph)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


async def ainterleaved_ms(
    graphs: dict[str, Any], run: Callable[[Any], Awaitable[object]], iterations: int
) -> dict[str, float]:
    """:func:`interleaved_ms` for ``ainvoke``."""
    samples: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(iterations):
        for name, graph in graphs.items():
            started = time.perf_counter()
            await run(graph)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def new_thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


def print_table(title: str, rounds: list[dict[str, float]], base: str) -> None:
    """Medians over the rounds, each graph's ratio to ``base``: median, lowest, highest round."""
    print(f"{title:<44}{'median ms':>10}{'ratio':>8}{'rounds':>14}")
    for name in rounds[0]:
        value = statistics.median(r[name] for r in rounds)
        ratios = [r[name] / r[base] for r in rounds]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"{name:<44}{value:>10.3f}{statistics.median(ratios):>8.2f}{spread:>14}")
    print()


def reference(questions: int) -> None:
    import json

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


def no_checkpointer(telemetry: Telemetry, iterations: int, rounds: int) -> None:
    graphs = {
        "plain": five_nodes().compile(),
        "plain, 6 nodes": line_of(6).compile(),
        "observed, telemetry only": build_observed_graph(
            five_nodes(), ops=Ops(telemetry=telemetry)
        ),
        "observed, guard + cache": build_observed_graph(
            five_nodes(), ops=Ops(guard=GuardPolicy(), cache=CachePolicy(), telemetry=telemetry)
        ),
        "observed, all steps": build_observed_graph(
            five_nodes(), ops=Ops.all_steps(telemetry=telemetry)
        ),
        "observed, all steps, sync nodes inline": build_observed_graph(
            five_nodes(),
            ops=replace(
                Ops.all_steps(telemetry=telemetry), budget=BudgetPolicy(sync_nodes="inline")
            ),
        ),
        "observed, all steps + 4 limits (memory)": build_observed_graph(
            five_nodes(),
            ops=replace(Ops.all_steps(telemetry=telemetry), guard=four_limits()),
        ),
    }
    for graph in graphs.values():  # warm up
        for _ in range(300):
            graph.invoke({"x": 0}, WHO)
    results = [
        interleaved_ms(graphs, lambda g: g.invoke({"x": 0}, WHO), iterations) for _ in range(rounds)
    ]
    print_table("graph (5 no-op nodes, invoke)", results, "plain")


def _saver_graphs(telemetry: Telemetry, saver_for: Callable[[str], Any]) -> dict[str, Any]:
    """plain, plain with one more node, observed: each with its own fresh saver."""
    return {
        "plain + saver": five_nodes().compile(checkpointer=saver_for("plain")),
        "plain, 6 nodes + saver": line_of(6).compile(checkpointer=saver_for("six")),
        "observed, telemetry only + saver": build_observed_graph(
            five_nodes(), ops=Ops(telemetry=telemetry), checkpointer=saver_for("telemetry")
        ),
        "observed, all steps + saver": build_observed_graph(
            five_nodes(),
            ops=Ops.all_steps(telemetry=telemetry),
            checkpointer=saver_for("all"),
        ),
    }


def sync_saver(telemetry: Telemetry, folder: Path, iterations: int, rounds: int) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    for durability in DURABILITIES:
        with ExitStack() as stack:

            def saver_for(name: str, durability: str = durability) -> SqliteSaver:
                path = folder / f"sync-{durability}-{name}.sqlite"
                connection = sqlite3.connect(path, check_same_thread=False)
                stack.callback(connection.close)
                return SqliteSaver(connection)

            graphs = _saver_graphs(telemetry, saver_for)

            def run(graph: Any, durability: str = durability) -> object:
                return graph.invoke({"x": 0}, new_thread(), durability=durability)

            for graph in graphs.values():  # warm up
                for _ in range(50):
                    run(graph)
            results = [interleaved_ms(graphs, run, iterations) for _ in range(rounds)]
            print_table(f"SqliteSaver, invoke, durability={durability}", results, "plain + saver")


async def async_saver(telemetry: Telemetry, folder: Path, iterations: int, rounds: int) -> None:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    for durability in DURABILITIES:
        async with AsyncExitStack() as stack:
            savers: dict[str, AsyncSqliteSaver] = {}
            for name in ("plain", "six", "telemetry", "all"):
                path = folder / f"async-{durability}-{name}.sqlite"
                connection = await stack.enter_async_context(aiosqlite.connect(path))
                savers[name] = AsyncSqliteSaver(connection)
            graphs = _saver_graphs(telemetry, savers.__getitem__)

            async def run(graph: Any, durability: str = durability) -> object:
                return await graph.ainvoke({"x": 0}, new_thread(), durability=durability)

            for graph in graphs.values():  # warm up
                for _ in range(50):
                    await run(graph)
            results = [await ainterleaved_ms(graphs, run, iterations) for _ in range(rounds)]
            print_table(
                f"AsyncSqliteSaver, ainvoke, durability={durability}", results, "plain + saver"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--saver-iterations", type=int, default=200)
    parser.add_argument("--no-checkpointer", action="store_true")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--questions", type=int, default=8)
    args = parser.parse_args()
    if args.reference:
        reference(args.questions)
        return

    telemetry = Telemetry(exporters=[NullExporter()], metrics=Metrics(CollectorRegistry()))
    no_checkpointer(telemetry, args.iterations, args.rounds)
    if not args.no_checkpointer:
        with tempfile.TemporaryDirectory() as folder:
            sync_saver(telemetry, Path(folder), args.saver_iterations, args.rounds)
            asyncio.run(async_saver(telemetry, Path(folder), args.saver_iterations, args.rounds))
    telemetry.shutdown()


if __name__ == "__main__":
    main()
