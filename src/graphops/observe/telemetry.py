"""The telemetry pipeline as one object: tracer, metrics, prices, content policy.

Build it once per process (:meth:`Telemetry.from_settings`, or with explicit
exporters in tests) and hand it to :func:`graphops.build_observed_graph`; its
:attr:`handler` is the single event source every signal comes from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.embeddings import Embeddings
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Tracer

from graphops.observe.metrics import Metrics, default_metrics
from graphops.observe.pricing import PriceTable
from graphops.observe.spans import SpanFactory
from graphops.observe.tracing import exporters_named, make_tracer_provider

__all__ = ["Redactor", "Telemetry", "default_telemetry"]

Redactor = Callable[[str], str]
"""Applied to every prompt, response and query before it is recorded."""


def _anonymous_or_user(metadata: Mapping[str, Any]) -> str:
    explicit = metadata.get("user_class")
    if explicit:
        return str(explicit)
    return "user" if metadata.get("user") else "anonymous"


class Telemetry:
    """Where spans go, which metrics count, and what content may be recorded.

    ``capture_content`` is off by default: prompts, responses and queries are
    recorded only when it is on, and then always through ``redact``. API keys are
    never recorded: they are not in callback payloads, and model objects are never
    serialised into attributes.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        exporters: Sequence[SpanExporter | SpanProcessor] = (),
        metrics: Metrics | None = None,
        prices: PriceTable | None = None,
        capture_content: bool = False,
        redact: Redactor | None = None,
        user_class: Callable[[Mapping[str, Any]], str] = _anonymous_or_user,
        service_name: str = "graphops",
        max_queue_size: int = 2048,
    ) -> None:
        self.metrics = metrics if metrics is not None else default_metrics()
        self.tracer_provider = tracer_provider or make_tracer_provider(
            exporters,
            self.metrics.spans_dropped.inc,
            service_name=service_name,
            max_queue_size=max_queue_size,
        )
        self.tracer: Tracer = self.tracer_provider.get_tracer("graphops")
        # the handler's spans are light records when that exports the same (a provider
        # passed in keeps the SDK's spans: its processors may need on_start)
        self.spans = SpanFactory(self.tracer_provider, self.tracer, light=tracer_provider is None)
        self.prices = prices or PriceTable()
        self.capture_content = capture_content
        self._redact = redact
        self.user_class = user_class
        from graphops.observe.handler import TelemetryHandler

        self.handler = TelemetryHandler(self)

    def redacted(self, text: str) -> str:
        """``text`` after the redaction hook (unchanged without one)."""
        return self._redact(text) if self._redact is not None else text

    def embeddings(self, embeddings: Embeddings) -> Embeddings:
        """``embeddings`` wrapped so each call is an ``embeddings {model}`` span."""
        from graphops.observe.embeddings import ObservedEmbeddings

        return ObservedEmbeddings(inner=embeddings, telemetry=self)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now (at shutdown, or before reading a store)."""
        return bool(self.tracer_provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Flush and stop the exporters."""
        self.tracer_provider.shutdown()

    @classmethod
    def from_settings(
        cls, traces_exporter: str = "none", extra: Sequence[SpanExporter | SpanProcessor] = ()
    ) -> Telemetry:
        """Exporters named in ``traces_exporter`` (``otlp``, ``console``, comma-separated)."""
        return cls(exporters=[*exporters_named(traces_exporter), *extra])


_default: Telemetry | None = None
_default_lock = threading.Lock()


def default_telemetry() -> Telemetry:
    """The process-wide pipeline, configured from ``GRAPHOPS_TRACES_EXPORTER`` on first use."""
    global _default
    with _default_lock:
        if _default is None:
            from graphops.settings import load_settings

            _default = Telemetry.from_settings(load_settings().traces_exporter)
        return _default
