"""Chat model, retriever and tool callbacks of the telemetry handler.

They are :class:`~graphops.observe.handler.TelemetryHandler`'s, kept in a mixin of
their own only so ``handler.py`` stays short: graph, node and step runs (the span
tree's shape, aliases, routes, steps) stay in the handler, and the leaf calls made
inside a node (one span each, GenAI attributes, token, cost and latency metrics,
one log line) live here. The handler inherits :class:`CallEvents` directly, so an
event costs the same method lookup as before; the attributes and plumbing methods
used here are declared for the type checker only and are the handler's own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry.trace import SpanKind

from graphops.observe import genai
from graphops.observe import semconv as sc
from graphops.observe.records import _Open, _Root

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics
    from graphops.observe.telemetry import Telemetry

__all__ = ["CallEvents"]


class CallEvents:
    """Chat model, retriever and tool callbacks; mixed into ``TelemetryHandler``."""

    # set by TelemetryHandler.__init__
    telemetry: Telemetry
    metrics: Metrics
    _open: dict[UUID, _Open]
    _roots: dict[UUID, _Root]
    _quiet: set[UUID]

    if TYPE_CHECKING:  # TelemetryHandler's plumbing, declared for the type checker

        def _parent(self, parent_run_id: UUID | None) -> _Open | None: ...

        def _start(
            self,
            run_id: UUID,
            parent: _Open | None,
            name: str,
            kind: str,
            attributes: dict[str, Any],
            span_kind: SpanKind = SpanKind.INTERNAL,
        ) -> _Open: ...

        def _end(self, run_id: UUID, error: BaseException | None) -> _Open | None: ...

        def _log(self, event: str, opened: _Open, **fields: Any) -> None: ...

    # ---------------------------------------------------------------- chat models
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id in self._quiet:
            return
        parent = self._parent(parent_run_id)
        provider, model, attrs = genai.chat_request(metadata or {}, invocation_params or {})
        if parent is not None and parent.prompts:  # the prompt the node formatted last
            attrs.update(genai.prompt_attributes(parent.prompts[-1]))
        if self.telemetry.capture_content:
            attrs[sc.INPUT_MESSAGES] = self.telemetry.redacted(genai.messages_json(messages))
        opened = self._start(run_id, parent, f"{sc.OP_CHAT} {model}", "llm", attrs, SpanKind.CLIENT)
        opened.model, opened.provider = model, provider

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        opened = self._open.get(run_id)
        if opened is None or opened.kind != "llm":
            return
        usage, response_model, finish = genai.chat_response(response)
        span = opened.span
        if response_model:
            span.set_attribute(sc.RESPONSE_MODEL, response_model)
        if finish:
            span.set_attribute(sc.RESPONSE_FINISH_REASONS, finish)
        input_tokens, output_tokens = usage
        span.set_attribute(sc.USAGE_INPUT_TOKENS, input_tokens)
        span.set_attribute(sc.USAGE_OUTPUT_TOKENS, output_tokens)
        cost = self.telemetry.prices.cost(
            opened.provider, response_model or opened.model, input_tokens, output_tokens
        )
        if cost is not None:
            span.set_attribute(sc.COST_USD, cost)
        if self.telemetry.capture_content:
            span.set_attribute(
                sc.OUTPUT_MESSAGES, self.telemetry.redacted(genai.generations_json(response))
            )
        self._end(run_id, None)
        self._record_llm(opened, "ok", None, input_tokens, output_tokens, cost)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        opened = self._end(run_id, error)
        if opened is not None and opened.kind == "llm":
            self._record_llm(opened, "error", type(error).__qualname__, 0, 0, None)

    def _record_llm(
        self,
        opened: _Open,
        status: str,
        error_type: str | None,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
    ) -> None:
        m = self.metrics
        seconds = time.perf_counter() - opened.started
        root = self._roots.get(opened.root)
        user_class = root.user_class if root else "anonymous"
        m.llm_calls.labels(opened.provider, opened.model, status).inc()
        m.operation_duration.labels(
            sc.OP_CHAT, opened.provider, opened.model, error_type or ""
        ).observe(seconds)
        if root is not None:
            root.tokens += input_tokens + output_tokens
            root.cost += cost or 0.0
        if status == "ok":
            for kind, count in (("input", input_tokens), ("output", output_tokens)):
                m.token_usage.labels(sc.OP_CHAT, opened.provider, opened.model, kind).observe(count)
                m.tokens.labels(opened.model, kind, user_class).inc(count)
            if cost:
                m.cost.labels(opened.model, user_class).inc(cost)
        self._log(
            "llm_call",
            opened,
            model=opened.model,
            provider=opened.provider,
            status=status,
            latency_ms=round(seconds * 1000, 2),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
        )

    # ---------------------------------------------------------------- retrievers and tools
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id in self._quiet:
            return
        source = str(kwargs.get("name") or (metadata or {}).get("ls_retriever_name") or "retriever")
        attrs = genai.retrieval_request(source, metadata or {})
        if self.telemetry.capture_content:
            attrs[sc.RETRIEVAL_QUERY] = self.telemetry.redacted(query)
        opened = self._start(
            run_id,
            self._parent(parent_run_id),
            f"{sc.OP_RETRIEVAL} {source}",
            "retrieval",
            attrs,
            SpanKind.CLIENT,
        )
        opened.model = source

    def on_retriever_end(
        self, documents: Sequence[Document], *, run_id: UUID, **kwargs: Any
    ) -> None:
        opened = self._open.get(run_id)
        if opened is None:
            return
        ids, scores = genai.document_ids_and_scores(documents)
        opened.span.set_attribute(sc.RETRIEVAL_IDS, ids)
        opened.span.set_attribute(sc.RETRIEVAL_SCORES, scores)
        self._end(run_id, None)
        seconds = time.perf_counter() - opened.started
        self.metrics.retrieval_duration.labels(opened.model, "ok").observe(seconds)
        self._log(
            "retrieval",
            opened,
            source=opened.model,
            documents=ids,
            scores=scores,
            latency_ms=round(seconds * 1000, 2),
        )

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        opened = self._end(run_id, error)
        if opened is not None:
            seconds = time.perf_counter() - opened.started
            self.metrics.retrieval_duration.labels(opened.model, "error").observe(seconds)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id in self._quiet:
            return
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
        attrs = {sc.OPERATION: sc.OP_TOOL, sc.TOOL_NAME: name}
        self._start(run_id, self._parent(parent_run_id), f"{sc.OP_TOOL} {name}", "tool", attrs)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)
