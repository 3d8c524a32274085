"""Span-store failures are logged without payloads (case 7 of issue 9).

SQLAlchemy's ``str(exc)`` carries every SQL parameter, which with content capture
on is prompts and answers: the warning says how many spans, the error class and
the database, never a value.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.exc import OperationalError

from graphops.checkpoint import SqlSpanExporter, SqlSpanStore

SECRET = "my-card-is-4111-1111"


def test_a_failing_span_write_logs_no_trace_of_the_payload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.prompt", SECRET)
        span.add_event("gen_ai.choice", {"text": f"answer with {SECRET}"})
    url = f"sqlite:///{tmp_path / 'no-tables.sqlite'}"  # no graphops_spans: every write fails
    exporter = SqlSpanExporter(SqlSpanStore(url))
    with caplog.at_level(logging.DEBUG):
        assert exporter.export(memory.get_finished_spans()) == SpanExportResult.FAILURE
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert "1 span" in logged and "OperationalError" in logged
    assert str(tmp_path / "no-tables.sqlite") in logged
    assert SECRET not in logged and "4111" not in logged
    assert "INSERT" not in logged  # nor the statement
    assert exporter.lost == 1


class LockedStore:
    """A span store whose database stays locked by another process."""

    url = "sqlite:///elsewhere/graphops.sqlite"

    def __init__(self, free_after: int | None = None) -> None:
        self.attempts = 0
        self.free_after = free_after
        self.rows: list[object] = []

    def write(self, rows: list[object]) -> None:
        self.attempts += 1
        if self.free_after is None or self.attempts <= self.free_after:
            raise OperationalError(
                "INSERT …", {"secret": SECRET}, sqlite3.OperationalError("database is locked")
            )
        self.rows.extend(rows)


def _spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for name in ("a", "b"):
        provider.get_tracer("t").start_span(name, attributes={"x": SECRET}).end()
    return list(memory.get_finished_spans())


def test_a_locked_database_is_retried_for_a_bounded_time_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    dropped: list[None] = []
    store = LockedStore()
    exporter = SqlSpanExporter(
        store,  # type: ignore[arg-type]
        on_lost=lambda: dropped.append(None),
        retry_for_s=10,
        sleep=sleep,
        clock=lambda: now[0],
    )
    with caplog.at_level(logging.WARNING, "graphops.span_store"):
        assert exporter.export(_spans()) == SpanExportResult.FAILURE
    assert sum(slept) < 10 and store.attempts == len(slept) + 1 > 3
    assert exporter.lost == len(dropped) == 2
    (record,) = caplog.records
    assert record.getMessage() == (
        "span store write failed, 2 span(s) lost (locked by another process for 10 s) in "
        "sqlite:///elsewhere/graphops.sqlite"
    )
    # the retry window is spent: the next batch tries once, not for another 10 s
    assert exporter.export(_spans()) == SpanExportResult.FAILURE
    assert store.attempts == len(slept) + 2


def test_a_lock_released_in_time_loses_nothing() -> None:
    store = LockedStore(free_after=3)
    exporter = SqlSpanExporter(store, sleep=lambda _: None)  # type: ignore[arg-type]
    assert exporter.export(_spans()) == SpanExportResult.SUCCESS
    assert len(store.rows) == 2 and exporter.lost == 0
