"""Embedding calls as spans: LangChain ``Embeddings`` fire no callbacks, so we wrap them.

The wrapper opens an ``embeddings {model}`` span under whatever span is current
(the retrieval span, when the retriever embeds its query), and records the GenAI
operation-duration metric. It forwards everything else to the wrapped object.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from opentelemetry.trace import SpanKind, Status, StatusCode

from graphops.observe import semconv as sc

if TYPE_CHECKING:
    from graphops.observe.telemetry import Telemetry

__all__ = ["ObservedEmbeddings"]


class ObservedEmbeddings(Embeddings):
    """Embeddings that report each call as a span and a metric sample."""

    def __init__(self, *, inner: Embeddings, telemetry: Telemetry) -> None:
        self.inner = inner
        self.telemetry = telemetry
        self.model_name = str(
            getattr(inner, "model_name", None)
            or getattr(inner, "model", None)
            or type(inner).__name__
        )
        self.provider = (
            "llama_cpp"
            if type(inner).__name__.startswith("Local")
            else (type(inner).__module__.split(".")[0].removeprefix("langchain_"))
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextmanager
    def _span(self, count: int) -> Iterator[None]:
        attrs: dict[str, str | int] = {
            sc.OPERATION: sc.OP_EMBEDDINGS,
            sc.PROVIDER: self.provider,
            sc.REQUEST_MODEL: self.model_name,
            "graphops.embeddings.inputs": count,
        }
        started = time.perf_counter()
        error_type = ""
        with self.telemetry.tracer.start_as_current_span(
            f"{sc.OP_EMBEDDINGS} {self.model_name}",
            kind=SpanKind.CLIENT,
            attributes=attrs,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except Exception as exc:
                error_type = type(exc).__qualname__
                span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
                span.set_attribute(sc.ERROR_TYPE, error_type)
                raise
            finally:
                self.telemetry.metrics.operation_duration.labels(
                    sc.OP_EMBEDDINGS, self.provider, self.model_name, error_type
                ).observe(time.perf_counter() - started)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents inside a span."""
        with self._span(len(texts)):
            return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed a query inside a span."""
        with self._span(1):
            return self.inner.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async: the wrapped model's own async path, inside a span."""
        with self._span(len(texts)):
            return await self.inner.aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async query embedding inside a span."""
        with self._span(1):
            return await self.inner.aembed_query(text)
