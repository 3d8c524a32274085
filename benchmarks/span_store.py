"""Spans per second into the SQL span store, SQLite and Postgres, batched as exported.

    .venv/bin/python benchmarks/span_store.py [--spans N] [--postgres URL]

Records N real spans (a root with node and LLM-like children, GenAI attributes and
an event each) once, then writes them through SqlSpanExporter in batches of 512,
the batch processor's export size, and prints spans/s per backend. Then:

* a five-node no-op graph, plain with LangGraph's AsyncSqliteSaver against observed
  (every step on) with the span-storing checkpointer feeding the span store, medians
  of alternating runs, and the ratio;
* the time to replay (load and render) a stored run of about 1,000 spans.

    .venv/bin/python benchmarks/span_store.py --reference [--questions N]

compares the reference RAG graph on the local model instead: plain with
AsyncSqliteSaver against observed (guard and cache steps, telemetry, span store)
with the span-storing saver, alternating question by question.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from graphops.checkpoint import SqlSpanExporter, SqlSpanStore
from graphops.checkpoint.span_export import span_row
from graphops.db import downgrade, upgrade


def record(count: int) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    made = 0
    while made < count:
        with tracer.start_as_current_span(
            "invoke_agent bench",
            attributes={"graphops.run_id": str(uuid.uuid4()), "graphops.thread_id": "t"},
        ):
            made += 1
            for node in range(9):
                with tracer.start_as_current_span(
                    f"node{node}",
                    attributes={"graphops.node": f"node{node}", "graphops.thread_id": "t"},
                ) as span:
                    span.add_event("graphops.route", {"graphops.route.to": ["next"]})
                    made += 1
                    with tracer.start_as_current_span(
                        "chat model",
                        attributes={
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "m",
                            "gen_ai.usage.input_tokens": 120,
                            "gen_ai.usage.output_tokens": 30,
                        },
                    ):
                        made += 1
    return list(memory.get_finished_spans())[:count]


def measure(url: str, spans: list) -> float:
    downgrade(url, "base")
    upgrade(url)
    exporter = SqlSpanExporter(SqlSpanStore(url))
    started = time.perf_counter()
    for i in range(0, len(spans), 512):
        exporter.export(spans[i : i + 512])
    return len(spans) / (time.perf_counter() - started)


async def checkpointed_overhead(rounds: int = 5, runs: int = 200) -> dict[str, float]:
    import statistics

    from _graphs import five_nodes
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from prometheus_client import CollectorRegistry

    from graphops.builder import build_observed_graph
    from graphops.checkpoint.savers import open_checkpointer
    from graphops.observe import Metrics, Telemetry
    from graphops.policies import Ops

    folder = Path(tempfile.mkdtemp())
    url = f"sqlite:///{folder / 'graphops.sqlite'}"
    upgrade(url)
    times: dict[str, list[float]] = {"plain": [], "telemetry only": [], "all steps": []}
    async with (
        AsyncSqliteSaver.from_conn_string(str(folder / "plain.sqlite")) as plain_saver,
        open_checkpointer(url) as saver,
    ):
        telemetry = Telemetry(
            exporters=[saver.span_processor()], metrics=Metrics(CollectorRegistry())
        )
        apps = {
            "plain": five_nodes().compile(checkpointer=plain_saver),
            "telemetry only": build_observed_graph(
                five_nodes(), ops=Ops(telemetry=telemetry), checkpointer=saver
            ),
            "all steps": build_observed_graph(
                five_nodes(), ops=Ops.all_steps(telemetry=telemetry), checkpointer=saver
            ),
        }
        for _ in range(rounds):
            for name, app in apps.items():
                samples = []
                for i in range(runs):
                    started = time.perf_counter()
                    await app.ainvoke({"x": 0}, {"configurable": {"thread_id": f"{name}-{i}"}})
                    samples.append(time.perf_counter() - started)
                times[name].append(statistics.median(samples))
        telemetry.shutdown()
    return {name: statistics.median(samples) * 1000 for name, samples in times.items()}


def replay_render_seconds(spans: list) -> tuple[int, float]:
    from graphops.checkpoint import SqlSpanStore
    from graphops.checkpoint.replay import replay

    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'replay.sqlite'}"
    upgrade(url)
    store = SqlSpanStore(url)
    rows = [span_row(s) for s in spans[:1000]]
    trace = rows[0]["trace_id"]
    for row in rows:  # one run: the same trace and thread for every span
        row["trace_id"], row["thread_id"] = trace, "big"
    store.write(rows)
    started = time.perf_counter()
    text = replay("big", url, with_state=False).render()
    return text.count("\n") + 1, time.perf_counter() - started


async def reference_checkpointed(items: list[str]) -> dict[str, list[float]]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from graphops.builder import build_observed_graph
    from graphops.checkpoint.savers import open_checkpointer
    from graphops.observe import Telemetry
    from graphops.policies import CachePolicy, GuardPolicy, Ops
    from graphops.settings import load_settings
    from graphs.agentic_rag import RagDeps, build_agentic_rag

    folder = Path(tempfile.mkdtemp())
    settings = load_settings(data_dir=folder, n_threads=2)
    deps = RagDeps.from_settings(settings)
    url = settings.database
    upgrade(url)
    times: dict[str, list[float]] = {"plain": [], "observed": []}
    async with (
        AsyncSqliteSaver.from_conn_string(str(folder / "plain.sqlite")) as plain_saver,
        open_checkpointer(url) as saver,
    ):
        telemetry = Telemetry(exporters=[saver.span_processor()])
        apps = {
            "plain": build_agentic_rag(deps).compile(checkpointer=plain_saver),
            "observed": build_observed_graph(
                build_agentic_rag(deps),
                ops=Ops(guard=GuardPolicy(), cache=CachePolicy(), telemetry=telemetry),
                checkpointer=saver,
            ),
        }
        await apps["plain"].ainvoke({"question": "warm up"}, {"configurable": {"thread_id": "w"}})
        for i, question in enumerate(items):
            # who goes first alternates: llama.cpp reuses the previous call's prompt prefix
            order = list(apps.items()) if i % 2 == 0 else list(apps.items())[::-1]
            for name, app in order:
                started = time.perf_counter()
                await app.ainvoke({"question": question}, {"configurable": {"thread_id": f"q{i}"}})
                times[name].append(time.perf_counter() - started)
        telemetry.shutdown()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--questions", type=int, default=8)
    args = parser.parse_args()
    if args.reference:
        import asyncio
        import json
        import statistics

        golden = Path(__file__).resolve().parents[1] / "evals" / "golden.jsonl"
        items = [json.loads(line)["question"] for line in golden.read_text().splitlines()]
        times = asyncio.run(reference_checkpointed(items[: args.questions]))
        base = statistics.median(times["plain"])
        print(f"reference graph, local model, checkpointed, {args.questions} questions")
        for name, samples in times.items():
            value = statistics.median(samples)
            print(f"  {name:<10}{value:>8.2f} s{value / base:>7.3f}")
        print(f"  sum observed / sum plain: {sum(times['observed']) / sum(times['plain']):.3f}")
        return
    spans = record(args.spans)
    sqlite_url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'spans.sqlite'}"
    print(f"{len(spans)} spans, batches of 512")
    print(f"sqlite    {measure(sqlite_url, spans):>10,.0f} spans/s")
    print(f"postgres  {measure(args.postgres, spans):>10,.0f} spans/s")
    downgrade(args.postgres, "base")
    import asyncio

    medians = asyncio.run(checkpointed_overhead())
    print("5 no-op nodes, checkpointed (plain: AsyncSqliteSaver; observed: span-storing saver)")
    for name, value in medians.items():
        print(f"  {name:<16}{value:>8.2f} ms{value / medians['plain']:>7.2f}")
    lines, seconds = replay_render_seconds(spans)
    print(f"replay of a 1,000-span run: {lines} lines rendered in {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
