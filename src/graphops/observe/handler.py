"""The one event source: a LangChain callback handler that turns runs into telemetry.

Every LangGraph run already reports to LangChain callbacks: the graph run, one run
per node execution, every chat model, retriever and tool call inside, and every
conditional edge. This handler maps them to OpenTelemetry spans (GenAI semantic
conventions), Prometheus metrics and JSON log lines from the same event, so the
three always agree. It runs inline (``run_inline``) so a span opens in the context
its children run in: code inside a node, and the embeddings wrapper, find the
right parent through the ordinary OTel context.

Nothing here blocks, and little is spent on the request path: spans are light
records (:mod:`graphops.observe.spans`) that become SDK spans only when they end,
handed to batch processors that export from their own thread; metrics are
in-memory counters whose label children are bound once and reused; log lines are
skipped unless the ``graphops`` logger is enabled for INFO.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from graphops._compat.langgraph import is_conditional_edge_run, is_update_state_run
from graphops.observe import genai
from graphops.observe import semconv as sc
from graphops.observe.calls import CallEvents
from graphops.observe.logs import logger
from graphops.observe.records import _Children, _Open, _Root
from graphops.steps.names import HEAD_NODE, STEP_NAMES, TAIL_NODE

if TYPE_CHECKING:
    from graphops.observe.telemetry import Telemetry

__all__ = ["TelemetryHandler", "node_span", "step_span"]

_ATTACHED = frozenset({"llm", "retrieval", "tool"})

_STEPS = frozenset({*STEP_NAMES, TAIL_NODE})  # graphops' own: graphops.node.kind=step
_HOLDERS = frozenset({HEAD_NODE})  # nodes that hold steps: each step is a span


_NODE_INHERITS = (sc.THREAD_ID, sc.USER, sc.VARIANT)  # root attributes node spans repeat


def _variants_of(run_id: UUID) -> list[str]:
    """``flag=variant`` of every flag the run's scope resolved as it opened (sorted)."""
    from graphops.runtime.control import open_scope

    scope = open_scope(run_id)
    if scope is None or not scope.variants:
        return []
    return [a.label() for _, a in sorted(scope.variants.items())]


def _graph_bubble_up() -> type[BaseException]:
    from langgraph.errors import GraphBubbleUp

    return GraphBubbleUp


class TelemetryHandler(CallEvents, BaseCallbackHandler):
    """Spans, metrics and logs for every run that passes through LangChain callbacks."""

    run_inline = True
    raise_error = False  # a telemetry bug must never break a run

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.tracer = telemetry.tracer
        self.spans = telemetry.spans
        self.metrics = telemetry.metrics
        m = telemetry.metrics
        self._runs = _Children(m.runs)
        self._run_duration = _Children(m.run_duration)
        self._node_duration = _Children(m.node_duration)
        self._open: dict[UUID, _Open] = {}
        self._alias: dict[UUID, UUID] = {}  # nested run → the run whose span is its parent
        self._route_by: dict[UUID, str] = {}  # conditional-edge runs → their function's name
        self._roots: dict[UUID, _Root] = {}
        self._quiet: set[UUID] = set()  # update_state() runs and everything inside them
        self._holders: dict[UUID, dict[str, Any]] = {}  # head node runs → their metadata
        self._bubble_up = _graph_bubble_up()

    # ---------------------------------------------------------------- plumbing
    def _parent(self, parent_run_id: UUID | None) -> _Open | None:
        if parent_run_id is None:
            return None
        return self._open.get(self._alias.get(parent_run_id, parent_run_id))

    def _start(
        self,
        run_id: UUID,
        parent: _Open | None,
        name: str,
        kind: str,
        attributes: dict[str, Any],
        span_kind: SpanKind = SpanKind.INTERNAL,
    ) -> _Open:
        if parent is not None and sc.VARIANT not in attributes:
            root = self._roots.get(parent.root)  # the run's variants, on every span of it
            if root is not None and sc.VARIANT in root.attrs:
                attributes = {**attributes, sc.VARIANT: root.attrs[sc.VARIANT]}
        span = self.spans.start(
            name, parent.span if parent is not None else None, span_kind, attributes
        )
        # LLM, retriever and tool runs start and end inside the node's own code, so
        # their span can be current there (the embeddings wrapper nests under it).
        # Graph and node runs are never attached: LangGraph starts them in the
        # caller's context and ends them in a copy, so an attach would leak into the
        # caller. Code in a node reaches its span with node_span(config).
        token = otel_context.attach(trace.set_span_in_context(span)) if kind in _ATTACHED else None
        opened = _Open(
            span, token, kind, time.perf_counter(), parent.root if parent else run_id, name
        )
        self._open[run_id] = opened
        return opened

    def _end(self, run_id: UUID, error: BaseException | None) -> _Open | None:
        opened = self._open.pop(run_id, None)
        if opened is None:
            return None
        self._end_span(opened, error)
        return opened

    def _end_span(self, opened: _Open, error: BaseException | None) -> None:
        token = opened.token
        if isinstance(token, contextvars.Token):
            # LangGraph may end a run in another context than it started it in; that
            # context was a per-task copy and dies with the task, so nothing leaks
            with contextlib.suppress(ValueError):
                token.var.reset(token)
        if error is not None and not isinstance(error, self._bubble_up):
            opened.span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
            opened.span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
            opened.span.record_exception(error)
        opened.span.end()

    def _log(self, event: str, opened: _Open, **fields: Any) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        context = opened.span.get_span_context()
        root = self._roots.get(opened.root)
        attrs = root.attrs if root else {}
        logger.info(
            event,
            extra={
                "graphops": {
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "thread_id": attrs.get(sc.THREAD_ID),
                    "user": attrs.get(sc.USER),
                    "graph": root.graph if root else None,
                    **fields,
                }
            },
        )

    @staticmethod
    def _status(error: BaseException | None, bubble_up: type[BaseException]) -> str:
        if error is None:
            return "ok"
        return "interrupted" if isinstance(error, bubble_up) else "error"

    # ---------------------------------------------------------------- chains
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name") or "graph"
        metadata = metadata or {}
        if (self._quiet or parent_run_id is None) and self._is_quiet(run_id, parent_run_id, name):
            return
        parent = self._parent(parent_run_id)
        if parent is None:
            self._start_root(run_id, name, metadata)
            return
        node = metadata.get("langgraph_node")
        assert parent_run_id is not None  # a parent was found
        if node is not None and name == node:
            if node in _HOLDERS and parent.kind == "root":
                # no span of its own: each step it runs is one (step_span), under the run
                self._holders[run_id] = metadata
                root = self._roots.get(parent.root)
                if root is not None:
                    root.last_step = max(root.last_step, metadata.get("langgraph_step", -1))
                self._alias[run_id] = self._alias.get(parent_run_id, parent_run_id)
                return
            self._start_node(run_id, parent, node, metadata)
            return
        self._alias[run_id] = self._alias.get(parent_run_id, parent_run_id)
        prompt = metadata.get(sc.PROMPT_METADATA)
        if isinstance(prompt, str) and parent.kind == "node":
            self._used_prompt(parent, prompt)
        if parent.kind == "node" and is_conditional_edge_run(tags):
            # a direct child of the node after its body (seq:step:2+) is a conditional edge
            self._route_by[run_id] = name

    def _used_prompt(self, node: _Open, ref: str) -> None:
        """A prompt template ran in ``node``: record its version on the node and the run."""
        if node.prompts is None:
            node.prompts = []
        if ref not in node.prompts:
            node.prompts.append(ref)
            node.span.set_attribute(sc.NODE_PROMPTS, node.prompts)
        root = self._roots.get(node.root)
        if root is not None and ref not in root.prompts:
            root.prompts.append(ref)

    def _is_quiet(self, run_id: UUID, parent_run_id: UUID | None, name: str) -> bool:
        """Whether this run is (inside) ``graph.update_state()``: a state edit, not a run.

        It gets no span at all: a span tree of its own would be stored as a run of the
        thread that never finished. The checkpoint it writes records the edit.
        """
        quiet = self._quiet
        if (quiet and parent_run_id in quiet) or (
            parent_run_id is None and is_update_state_run(name)
        ):
            self._quiet.add(run_id)
            return True
        return False

    def _start_root(self, run_id: UUID, name: str, metadata: dict[str, Any]) -> None:
        attrs = genai.run_attributes(run_id, name, metadata)
        variants = _variants_of(run_id)
        if variants:
            attrs[sc.VARIANT] = variants
        node_attrs = {
            # the thread on every node span: a killed run's spans are still found by thread
            # (and its user, so `graphops runs` can say whose it was; its flags' variants,
            # so a canary's spans are told from the control's)
            **{k: attrs[k] for k in _NODE_INHERITS if k in attrs},
            # and the graph's name: a run that never finished is still known by its graph
            sc.AGENT_NAME: name,
        }
        self._roots[run_id] = _Root(name, self.telemetry.user_class(metadata), attrs, node_attrs)
        opened = self._start(run_id, None, f"{sc.OP_AGENT} {name}", "root", attrs)
        if logger.isEnabledFor(logging.INFO):
            self._log("run_start", opened)

    @staticmethod
    def _node_attributes(root: _Root | None, node: str, step: Any) -> dict[str, Any]:
        attrs = dict(root.node_attrs) if root is not None else {}
        attrs[sc.NODE] = node
        attrs[sc.NODE_KIND] = "step" if node in _STEPS else "node"
        attrs[sc.STEP] = step
        return attrs

    def _start_node(self, run_id: UUID, parent: _Open, node: str, metadata: dict[str, Any]) -> None:
        root = self._roots.get(parent.root)
        step = metadata.get("langgraph_step", -1)
        attrs = self._node_attributes(root, node, step)
        opened = self._start(run_id, parent, node, "node", attrs)
        if root is not None and parent.kind == "root" and step > root.last_step:
            root.last_step = step
        task = str(metadata.get("langgraph_checkpoint_ns", ""))
        if root is not None and task:
            attempt = root.attempts.get(task, 0) + 1
            root.attempts[task] = attempt
            if attempt > 1:
                opened.span.add_event(sc.RETRY_EVENT, {sc.ATTEMPT: attempt})
                opened.span.set_attribute(sc.ATTEMPT, attempt)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish_chain(run_id, None, outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish_chain(run_id, error, None)

    def _finish_chain(self, run_id: UUID, error: BaseException | None, outputs: Any) -> None:
        quiet = self._quiet
        if quiet and run_id in quiet:
            quiet.discard(run_id)
            return
        target = self._alias.pop(run_id, None)
        if target is not None:
            if self._holders:
                self._holders.pop(run_id, None)
            route_by = self._route_by.pop(run_id, None) if self._route_by else None
            if route_by is not None and error is None:
                self._route(target, route_by, outputs)
            return
        opened = self._open.pop(run_id, None)
        if opened is None:
            return
        if opened.kind == "node":
            self._end_span(opened, error)
            self._node_ended(opened, error)
            return
        root_record = self._roots.get(run_id)
        if root_record is not None:
            span = opened.span
            span.set_attribute(sc.RUN_TOKENS, root_record.tokens)
            span.set_attribute(sc.RUN_COST_USD, root_record.cost)
            if root_record.prompts:
                span.set_attribute(sc.RUN_PROMPTS, root_record.prompts)
        self._end_span(opened, error)
        if opened.kind == "root":
            status = self._status(error, self._bubble_up)
            seconds = time.perf_counter() - opened.started
            if logger.isEnabledFor(logging.INFO):
                self._log("run_end", opened, status=status, latency_ms=round(seconds * 1000, 2))
            root = self._roots.pop(run_id, None)
            graph = root.graph if root else opened.name
            self._runs.labels(graph, status).inc()
            self._run_duration.labels(graph, status).observe(seconds)
            for label in root.attrs.get(sc.VARIANT, ()) if root else ():
                flag, _, variant = str(label).partition("=")
                self.metrics.variant_runs.labels(graph, flag, variant, status).inc()
                self.metrics.variant_run_duration.labels(graph, flag, variant, status).observe(
                    seconds
                )

    def _node_ended(self, opened: _Open, error: BaseException | None) -> None:
        """A node's (or step's) span has ended: its duration metric and log line."""
        status = "ok" if error is None else self._status(error, self._bubble_up)
        seconds = time.perf_counter() - opened.started
        root = self._roots.get(opened.root)
        graph = root.graph if root else ""
        self._node_duration.labels(graph, opened.name, status).observe(seconds)
        if not logger.isEnabledFor(logging.INFO):
            return
        self._log(
            "node_end",
            opened,
            node=opened.name,
            status=status,
            latency_ms=round(seconds * 1000, 2),
        )

    def _route(self, node_run: UUID, by: str, outputs: Any) -> None:
        opened = self._open.get(node_run)
        if opened is None or opened.kind != "node":
            return
        targets = genai.route_targets(outputs)
        if targets is None:
            return
        opened.span.add_event(
            sc.ROUTE_EVENT, {sc.ROUTE_FROM: opened.name, sc.ROUTE_TO: targets, sc.ROUTE_BY: by}
        )
        self._log("route", opened, node=opened.name, route=list(targets), by=by)

    # ---------------------------------------------------------------- steps
    def step(self, holder_run: UUID, name: str) -> AbstractContextManager[Span]:
        """A span for step ``name`` run by the head node run ``holder_run``.

        It is a node-kind span under the run, as a node of its own would be, so the
        span tree reads the same whichever node holds the step.
        """
        metadata = self._holders.get(holder_run)
        parent = self._parent(holder_run)
        if metadata is None or parent is None:
            return _NO_STEP
        return _Step(self, parent, name, metadata.get("langgraph_step", -1))

    def closing_step(self, run_id: UUID, name: str) -> AbstractContextManager[Span]:
        """A span for step ``name`` run as the run ``run_id`` closes, after its last node.

        It is a step span under the run's span, which is still open (the scope
        handler comes before this one), marked with the step after the run's last.
        """
        parent = self._open.get(run_id)
        root = self._roots.get(run_id)
        if parent is None or root is None:
            return _NO_STEP
        return _Step(self, parent, name, root.last_step + 1)

    # ---------------------------------------------------------------- lookups
    def trace_of(self, run_id: UUID) -> str | None:
        """The trace id of the open run ``run_id`` (32 hex digits), if it has a span."""
        opened = self._open.get(run_id)
        if opened is None:
            return None
        context = opened.span.get_span_context()
        return f"{context.trace_id:032x}" if context.is_valid else None

    def open_runs(self) -> int:
        """How many runs are open (0 between runs: nothing leaks)."""
        return len(self._open) + len(self._alias) + len(self._quiet) + len(self._holders)


class _Step:
    """One step's span, open while the ``with`` block runs (a class: it is on the hot path).

    A step has no run of its own: nothing looks it up by run id (callbacks from the
    step's code name the holder node's run, an alias of the graph run).
    """

    __slots__ = ("_handler", "_name", "_opened", "_parent", "_step")

    def __init__(self, handler: TelemetryHandler, parent: _Open, name: str, step: Any) -> None:
        self._handler = handler
        self._parent = parent
        self._name = name
        self._step = step
        self._opened: _Open | None = None

    def __enter__(self) -> Span:
        handler, parent, name = self._handler, self._parent, self._name
        attrs = handler._node_attributes(handler._roots.get(parent.root), name, self._step)
        span = handler.spans.start(name, parent.span, SpanKind.INTERNAL, attrs)
        self._opened = _Open(span, None, "node", time.perf_counter(), parent.root, name)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        opened = self._opened
        if opened is not None:
            self._opened = None
            self._handler._end_span(opened, error)
            self._handler._node_ended(opened, error)


_NO_STEP: AbstractContextManager[Span] = contextlib.nullcontext(INVALID_SPAN)


def _handler(config: RunnableConfig) -> tuple[TelemetryHandler | None, UUID | None]:
    callbacks = config.get("callbacks")
    run_id = getattr(callbacks, "parent_run_id", None)
    for handler in getattr(callbacks, "handlers", None) or ():
        if isinstance(handler, TelemetryHandler):
            return handler, run_id
    return None, run_id


def step_span(config: RunnableConfig, name: str) -> AbstractContextManager[Span]:
    """The span of step ``name``, run by the head node (or a step node) with ``config``.

    A no-op span when telemetry is off or the step runs outside graphops' nodes.
    """
    handler, run_id = _handler(config)
    if handler is None or run_id is None:
        return _NO_STEP
    return handler.step(run_id, name)


def closing_step_span(
    handler: TelemetryHandler | None, run_id: str, name: str
) -> AbstractContextManager[Span]:
    """The span of step ``name``, run as the scope of run ``run_id`` closes.

    A no-op span when telemetry is off (``handler`` None) or the run has no span.
    """
    if handler is None:
        return _NO_STEP
    return handler.closing_step(UUID(run_id), name)


def node_span(config: RunnableConfig) -> Span:
    """The span of the node running with ``config``; a no-op span when telemetry is off.

    Inside a node, ``config["callbacks"]`` is the node run's child manager: its
    ``parent_run_id`` is the node's run, which the handler maps to its span.
    """
    callbacks = config.get("callbacks")
    run_id = getattr(callbacks, "parent_run_id", None)
    for handler in getattr(callbacks, "handlers", None) or ():
        if isinstance(handler, TelemetryHandler) and run_id is not None:
            opened = handler._open.get(run_id)
            if opened is not None:
                return opened.span
    return INVALID_SPAN


def llm_span(run_manager: Any) -> Span:
    """The span of the LLM call ``run_manager`` runs; a no-op span when telemetry is off.

    What a chat model wrapper annotates (who answered, its retries and fallbacks).
    """
    run_id = getattr(run_manager, "run_id", None)
    for handler in getattr(run_manager, "handlers", None) or ():
        if isinstance(handler, TelemetryHandler) and run_id is not None:
            opened = handler._open.get(run_id)
            if opened is not None:
                return opened.span
    return INVALID_SPAN


def answered_by(run_manager: Any, model: Any) -> None:
    """Say that ``model`` (a chat model) answered the LLM call ``run_manager`` runs.

    A chain of providers is called as its first one, so the span was named and its
    ``gen_ai.*`` request attributes set for that one; when another answered, its name,
    provider and model replace them, and the call's metrics and cost are counted for
    it. Nothing happens when telemetry is off.
    """
    run_id = getattr(run_manager, "run_id", None)
    for handler in getattr(run_manager, "handlers", None) or ():
        if isinstance(handler, TelemetryHandler) and run_id is not None:
            opened = handler._open.get(run_id)
            if opened is None or opened.kind != "llm":
                return
            provider, name, attrs = genai.chat_request(
                dict(model._get_ls_params()), model._get_invocation_params()
            )
            opened.span.update_name(f"{sc.OP_CHAT} {name}")
            opened.span.set_attributes(attrs)
            opened.model, opened.provider = name, provider
            return
