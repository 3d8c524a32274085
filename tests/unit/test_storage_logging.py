"""Span-store failures are logged without payloads (case 7 of issue 9).

SQLAlchemy's ``str(exc)`` carries every SQL parameter, which with content capture
on is prompts and answers: the warning says how many spans, the error class and
the database, never a value.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

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
