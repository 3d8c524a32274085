"""The OpenTelemetry side: a tracer provider and its exporters.

Spans are exported in batches from a background thread, so export never runs on
the request path. When the queue is full a new span is dropped and counted in
``graphops_spans_dropped_total`` (the SDK's own processor evicts the oldest one
and logs a warning per span, on the hot path: neither is what an overloaded
service needs).

Exporters: OTLP/HTTP (configured by the standard ``OTEL_EXPORTER_OTLP_*``
variables), console, in-memory (tests, and the CLI's span tree), and any
``SpanExporter`` you pass, which is where the SQL span store plugs in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from graphops.errors import ConfigurationError

EXPORTER_NAMES = ("otlp", "console", "none")
"""What ``GRAPHOPS_TRACES_EXPORTER`` may list (checked when the settings load)."""

__all__ = [
    "EXPORTER_NAMES",
    "CountingBatchSpanProcessor",
    "exporter_named",
    "exporters_named",
    "make_tracer_provider",
]


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A :class:`BatchSpanProcessor` that drops the newest span when full, and counts it."""

    def __init__(
        self,
        exporter: SpanExporter,
        on_drop: Callable[[], None],
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_millis: float = 1000,
    ) -> None:
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=min(max_export_batch_size, max_queue_size),
            schedule_delay_millis=schedule_delay_millis,
        )
        self._limit = max_queue_size
        self._on_drop = on_drop
        # the SDK keeps its queue private; without it, behave like the SDK processor
        self._queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)

    def on_end(self, span: ReadableSpan) -> None:
        """Queue ``span`` for export, or drop and count it when the queue is full."""
        if self._queue is not None and len(self._queue) >= self._limit:
            self._on_drop()
            return
        super().on_end(span)


def exporter_named(name: str) -> SpanExporter:
    """``otlp`` or ``console``: the exporters ``GRAPHOPS_TRACES_EXPORTER`` can name."""
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    raise ConfigurationError(
        f"unknown trace exporter {name!r} in GRAPHOPS_TRACES_EXPORTER: use otlp, console or none"
    )


def exporters_named(spec: str) -> list[SpanExporter]:
    """The exporters a ``GRAPHOPS_TRACES_EXPORTER`` value names (comma-separated; ``none``)."""
    names = [n.strip() for n in spec.split(",")]
    return [exporter_named(n) for n in names if n and n != "none"]


def make_tracer_provider(
    exporters: Sequence[SpanExporter | SpanProcessor],
    on_drop: Callable[[], None],
    *,
    service_name: str = "graphops",
    max_queue_size: int = 2048,
) -> TracerProvider:
    """A provider exporting to each of ``exporters`` (processors are added as they are)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for exporter in exporters:
        if isinstance(exporter, SpanProcessor):
            provider.add_span_processor(exporter)
        else:
            provider.add_span_processor(
                CountingBatchSpanProcessor(exporter, on_drop, max_queue_size=max_queue_size)
            )
    return provider
