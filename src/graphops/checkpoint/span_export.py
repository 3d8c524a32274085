"""Spans into the SQL span store: an ordinary OpenTelemetry exporter.

:class:`SqlSpanExporter` is given to the telemetry pipeline's batch processor, so
spans are written from its thread, in batches, never on the request path.

Another process holding SQLite's write lock costs no span: a batch that meets
the lock is written again, with backoff, for up to :data:`WRITE_RETRY_S`; only
then, or on any other database failure, are its spans given up, counted, and
logged as a count, the error's class and the database, never a span's content
(with content capture on, attributes hold prompts and answers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode
from sqlalchemy.exc import SQLAlchemyError

from graphops.checkpoint.span_store import SqlSpanStore
from graphops.db.engine import safe_url
from graphops.db.failures import is_locked
from graphops.observe import semconv as sc

__all__ = ["WRITE_RETRY_S", "SqlSpanExporter", "span_row"]

WRITE_RETRY_S = 15.0
"""How long batches keep being retried while another process holds SQLite's lock."""

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
    """Exports spans to a :class:`SqlSpanStore` (give it to ``Telemetry(exporters=[...])``).

    ``on_lost`` is called once per span given up (the CLI counts them with the
    queue's drops); :attr:`lost` counts them too. ``sleep`` and ``clock`` are
    injectable so tests need not wait.
    """

    def __init__(
        self,
        store: SqlSpanStore,
        on_lost: Callable[[], None] = lambda: None,
        *,
        retry_for_s: float = WRITE_RETRY_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.lost = 0
        self._on_lost = on_lost
        self._retry_for = retry_for_s
        self._sleep = sleep
        self._clock = clock
        self._locked_since: float | None = None  # one retry window for every batch

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write one batch, retrying while the database is locked; never raises."""
        rows = [span_row(span) for span in spans]
        delay = 0.1
        while True:
            try:
                self.store.write(rows)
            except SQLAlchemyError as exc:
                if is_locked(exc):
                    now = self._clock()
                    since = self._locked_since = self._locked_since or now
                    if now + delay < since + self._retry_for:
                        self._sleep(delay)
                        delay = min(delay * 2, 2.0)
                        continue
                self._give_up(len(rows), exc)
                return SpanExportResult.FAILURE
            self._locked_since = None
            return SpanExportResult.SUCCESS

    def _give_up(self, count: int, exc: SQLAlchemyError) -> None:
        self.lost += count
        for _ in range(count):
            self._on_lost()
        orig = getattr(exc, "orig", None) or exc
        why = (
            f"locked by another process for {self._retry_for:.0f} s"
            if is_locked(exc)
            else type(orig).__name__
        )
        # never the exception's text: SQLAlchemy puts every row's values in it
        _log.warning(
            "span store write failed, %d span(s) lost (%s) in %s",
            count,
            why,
            safe_url(self.store.url),
        )

    def shutdown(self) -> None:
        """Nothing to release: the engine is shared."""
