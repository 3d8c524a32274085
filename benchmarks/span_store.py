"""Spans per second into the SQL span store, SQLite and Postgres, batched as exported.

    .venv/bin/python benchmarks/span_store.py [--spans N] [--postgres URL]

Records N real spans (a root with node and LLM-like children, GenAI attributes and
an event each) once, then writes them through SqlSpanExporter in batches of 512,
the batch processor's export size, and prints spans/s per backend.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    spans = record(args.spans)
    sqlite_url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'spans.sqlite'}"
    print(f"{len(spans)} spans, batches of 512")
    print(f"sqlite    {measure(sqlite_url, spans):>10,.0f} spans/s")
    print(f"postgres  {measure(args.postgres, spans):>10,.0f} spans/s")
    downgrade(args.postgres, "base")


if __name__ == "__main__":
    main()
