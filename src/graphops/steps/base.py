"""What a step is, and how a head or tail node runs its steps in order.

A step is a plain function of the run's state and its :class:`RunScope`,
returning a :class:`StepResult`: its outcome (kept in the scope and in the ops
channel under the step's name), the attributes of its span, an optional state
update (a cached answer), and whether it ends the run. Steps are usable alone:
call one with a state and a scope in a test, or put :func:`step_node` in a
hand-built graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.runnables import RunnableConfig

from graphops.observe.handler import step_span
from graphops.runtime import Identity, RunScope, run_scope
from graphops.steps.channel import OPS_KEY, RunRecord

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["Step", "StepResult", "record_of", "run_steps", "scope_for"]

Stop = Literal["refused", "answered"]
"""Why a step ends the run: refused (to END), or answered (past the user's nodes)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step decided."""

    outcome: Mapping[str, Any]
    attributes: Mapping[str, Any] = field(default_factory=dict)
    update: Mapping[str, Any] | None = None
    stop: Stop | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """A named step: ``run(state, scope)``, and what its outcome counts in the metrics."""

    name: str
    key: str  # where its outcome goes in the ops channel
    run: Callable[[Any, RunScope], StepResult]
    count: Callable[[StepResult, Metrics], None] | None = None


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
) -> tuple[dict[str, Any], Stop | None]:
    """Run ``steps`` in order until one ends the run; the state update and the stop reason.

    Each step has its own span; its outcome joins the scope's and the update
    writes the whole ops channel (the scope's outcomes), so a later node's write
    never loses an earlier one.
    """
    scope = scope_for(config)
    update: dict[str, Any] = {}
    stop: Stop | None = None
    scope.outcomes.setdefault("run", record_of(scope))
    for step in steps:
        with step_span(config, step.name) as span:
            result = step.run(state, scope)
            for key, value in result.attributes.items():
                span.set_attribute(key, value)
        scope.outcomes[step.key] = dict(result.outcome)
        if metrics is not None and step.count is not None:
            step.count(result, metrics)
        if result.update:
            update.update(result.update)
        if result.stop is not None:
            stop = result.stop
            break
    update[OPS_KEY] = dict(scope.outcomes)
    return update, stop
