"""What a step is, and how the head node, or the run's close, runs steps in order.

A step is a plain function of the run's state and its :class:`RunScope`,
returning a :class:`StepResult`: its outcome (kept in the scope and in the ops
channel under the step's name), the attributes of its span, an optional state
update (a cached answer), and whether it ends the run. Steps are usable alone:
call one with a state and a scope in a test, or put :func:`step_node` in a
hand-built graph.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.runnables import RunnableConfig
from opentelemetry.trace import Span

from graphops.observe import semconv as sc
from graphops.observe.genai import route_targets
from graphops.observe.handler import closing_step_span, step_span
from graphops.runtime import Identity, RunScope, run_scope
from graphops.steps.channel import OPS_KEY, RunRecord
from graphops.steps.names import HEAD_NODE

if TYPE_CHECKING:
    from graphops.observe.handler import TelemetryHandler
    from graphops.observe.metrics import Metrics

__all__ = [
    "Step",
    "StepResult",
    "arun_steps",
    "record_of",
    "run_at_close",
    "run_steps",
    "scope_for",
    "with_record",
]

Stop = Literal["refused", "answered"]
"""Why a step ends the run: refused, or answered from the cache (both to END)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step decided."""

    outcome: Mapping[str, Any]
    attributes: Mapping[str, Any] = field(default_factory=dict)
    update: Mapping[str, Any] | None = None
    stop: Stop | None = None
    events: tuple[tuple[str, Mapping[str, Any]], ...] = ()  # span events: (name, attributes)
    error: BaseException | None = None  # raised once the outcome is recorded and counted


@dataclass(frozen=True, slots=True)
class Step:
    """A named step: ``run(state, scope)``, and what its outcome counts in the metrics.

    ``arun`` is its async twin, used in async runs when the step does I/O (the
    guard asking Redis); without one, async runs call ``run``.
    """

    name: str
    key: str  # where its outcome goes in the ops channel
    run: Callable[[Any, RunScope], StepResult]
    count: Callable[[StepResult, Metrics], None] | None = None
    arun: Callable[[Any, RunScope], Awaitable[StepResult]] | None = None


def record_of(scope: RunScope) -> RunRecord:
    """The run's record as the ops channel shows it."""
    who = scope.identity
    return {
        "run_id": scope.run_id,
        "trace_id": scope.trace_id,
        "graph": scope.graph,
        "thread_id": who.thread_id,
        "user": who.user,
        "tenant": who.tenant,
        "session": who.session,
    }


def scope_for(config: RunnableConfig, graph: str = "graph") -> RunScope:
    """The run's scope; in a hand-built graph without graphops' handler, one for this call."""
    scope = run_scope(config)
    if scope is not None:
        return scope
    metadata = {**(config.get("configurable") or {}), **(config.get("metadata") or {})}
    return RunScope("unscoped", graph, Identity.from_metadata(metadata))


def run_steps(
    steps: Sequence[Step],
    state: Any,
    config: RunnableConfig,
    metrics: Metrics | None,
    route: Callable[[Stop | None], Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Run ``steps`` in order until one ends the run: the state update, and where to go.

    Each step has its own span; its outcome joins the scope's and the update
    writes the whole ops channel (the scope's outcomes), so a later node's write
    never loses an earlier one. ``route(stop)`` decides where the run goes after
    the last step that ran, recorded on that step's span as a routing event.
    """
    scope = with_record(scope_for(config))
    update: dict[str, Any] = {}
    goto: Any = None
    for index, step in enumerate(steps):
        with step_span(config, step.name) as span:
            result = _run(step, state, scope, span, metrics, update)
            if route is not None and (result.stop is not None or index == len(steps) - 1):
                goto = route(result.stop)
                _routed(span, step.name, goto)
        if result.stop is not None:
            break
    if not steps and route is not None:  # a head with no step (the budget alone): go on
        goto = route(None)
    update[OPS_KEY] = dict(scope.outcomes)
    return update, goto


def run_at_close(
    steps: Sequence[Step],
    scope: RunScope,
    metrics: Metrics | None,
    telemetry: TelemetryHandler | None,
) -> None:
    """Run ``steps`` on the run's output as its scope closes, each in its own span.

    The spans go under the run's span (``telemetry`` is the telemetry handler;
    None: the steps run unreported). The outcomes stay in the scope: the run's
    output has been returned by then.
    """
    for step in steps:
        with closing_step_span(telemetry, scope.run_id, step.name) as span:
            _run(step, scope.output, scope, span, metrics, {})


def with_record(scope: RunScope) -> RunScope:
    """``scope``, with the run's record among its outcomes (written once per run)."""
    if "run" not in scope.outcomes:
        scope.outcomes["run"] = record_of(scope)
    return scope


async def arun_steps(
    steps: Sequence[Step],
    state: Any,
    config: RunnableConfig,
    metrics: Metrics | None,
    route: Callable[[Stop | None], Awaitable[Any]],
) -> tuple[dict[str, Any], Any]:
    """:func:`run_steps` whose ``route`` is async (it may call your async START router)."""
    scope = with_record(scope_for(config))
    update: dict[str, Any] = {}
    goto: Any = None
    for index, step in enumerate(steps):
        with step_span(config, step.name) as span:
            if step.arun is None:
                result = _run(step, state, scope, span, metrics, update)
            else:
                result = _record(step, await step.arun(state, scope), scope, span, metrics, update)
            if result.stop is not None or index == len(steps) - 1:
                goto = await route(result.stop)
                _routed(span, step.name, goto)
        if result.stop is not None:
            break
    if not steps:
        goto = await route(None)
    update[OPS_KEY] = dict(scope.outcomes)
    return update, goto


def _run(
    step: Step,
    state: Any,
    scope: RunScope,
    span: Span,
    metrics: Metrics | None,
    update: dict[str, Any],
) -> StepResult:
    return _record(step, step.run(state, scope), scope, span, metrics, update)


def _record(
    step: Step,
    result: StepResult,
    scope: RunScope,
    span: Span,
    metrics: Metrics | None,
    update: dict[str, Any],
) -> StepResult:
    for key, value in result.attributes.items():
        span.set_attribute(key, value)
    for name, attributes in result.events:
        span.add_event(name, attributes)
    scope.outcomes[step.key] = dict(result.outcome)
    if metrics is not None and step.count is not None:
        step.count(result, metrics)
    if result.update:
        update.update(result.update)
    if result.error is not None:
        raise result.error
    return result


def _routed(span: Span, step: str, goto: Any) -> None:
    """Where the head sent the run, as the same event a conditional edge records."""
    targets = route_targets(goto)
    if targets is not None:
        event = {sc.ROUTE_FROM: step, sc.ROUTE_TO: targets, sc.ROUTE_BY: HEAD_NODE}
        span.add_event(sc.ROUTE_EVENT, event)
