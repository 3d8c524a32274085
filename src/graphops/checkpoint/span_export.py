"""Spans into the SQL span store: an ordinary OpenTelemetry exporter.

:class:`SqlSpanExporter` is given to the telemetry pipeline's batch processor, so
spans are written from its thread, in batches, never on the request path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode
from sqlalchemy.exc import SQLAlchemyError

from graphops.checkpoint.span_store import SqlSpanStore
from graphops.observe import semconv as sc

__all__ = ["SqlSpanExporter", "span_row"]

_log = logging.getLogger("graphops.span_store")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def span_row(span: ReadableSpan) -> dict[str, Any]:
    """The row a finished span is stored as."""
    attrs = {k: _plain(v) for k, v in (span.attributes or {}).items()}
    status = span.status.status_code
    context = span.context
    assert context is not None
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "kind": span.kind.name.lower(),
        "thread_id": attrs.get(sc.THREAD_ID),
        "run_id": attrs.get(sc.RUN_ID),
        "start_ns": span.start_time or 0,
        "end_ns": span.end_time or span.start_time or 0,
        "status": "error" if status == StatusCode.ERROR else "ok",
        "attributes": attrs,
        "events": [
            {
                "name": e.name,
                "time_ns": e.timestamp,
                "attributes": {k: _plain(v) for k, v in (e.attributes or {}).items()},
            }
            for e in span.events
        ],
    }


class SqlSpanExporter(SpanExporter):
    """Exports spans to a :class:`SqlSpanStore` (give it to ``Telemetry(exporters=[...])``)."""

    def __init__(self, store: SqlSpanStore) -> None:
        self.store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write one batch; a database failure is logged and reported, never raised."""
        try:
            self.store.write([span_row(span) for span in spans])
        except SQLAlchemyError as exc:
            _log.warning("span store write failed (%d spans): %s", len(spans), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: the engine is shared."""
