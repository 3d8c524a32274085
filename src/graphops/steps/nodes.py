"""The head and tail nodes: what graphops inserts into a graph, at most two nodes.

The head runs ``guard`` then ``cache_lookup`` and routes with ``Command(goto=…)``:
to END when refused or answered from the cache, else to where START led (its
edges, or its routers, called with the user's own state object, so a pydantic or
dataclass state reaches them as itself). Each step keeps its own span
(:func:`graphops.observe.handler.step_span`). ``cache_store`` and ``settle`` run
in no node: as the run's scope closes (:func:`graphops.steps.base.run_at_close`).

The tail holds no step. A run that did not start at the head (a resume, a fork,
``Command(resume=…)``) reaches it instead of END, and it writes that run's
record into the output; a run the head started never does, so it costs a fresh
run no superstep.

:func:`step_node` makes one step a node on its own, for a hand-built graph.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END
from langgraph.types import Command

from graphops._compat.langgraph import plain_node
from graphops.runtime import run_scope
from graphops.steps.base import Step, Stop, arun_steps, run_steps, scope_for, with_record
from graphops.steps.channel import OPS_KEY
from graphops.steps.names import HEAD_NODE, TAIL_NODE

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["head_node", "needs_tail", "step_node", "tail_node"]

Proceed = Callable[[Any, RunnableConfig], Any]
"""Where a run the head lets through goes: node names, ``Send`` objects, or END."""


def head_node(
    steps: Sequence[Step],
    *,
    proceed: Proceed,
    aproceed: Callable[[Any, RunnableConfig], Awaitable[Any]],
    metrics: Metrics | None = None,
) -> Runnable[Any, Any]:
    """The head: run ``steps``; refused or answered → END, else ``proceed``."""

    def head(state: Any, config: RunnableConfig) -> Command[Any]:
        def route(stop: Stop | None) -> Any:
            return proceed(state, config) if stop is None else END

        update, goto = run_steps(steps, state, config, metrics, route)
        return Command(update=update, goto=goto)

    async def ahead(state: Any, config: RunnableConfig) -> Command[Any]:
        async def route(stop: Stop | None) -> Any:
            return await aproceed(state, config) if stop is None else END

        update, goto = await arun_steps(steps, state, config, metrics, route)
        return Command(update=update, goto=goto)

    return plain_node(HEAD_NODE, head, ahead)


def tail_node() -> Runnable[Any, Any]:
    """The tail: this run's record (and its outcomes so far) into the ops channel."""

    def tail(state: Any, config: RunnableConfig) -> dict[str, Any]:
        return {OPS_KEY: dict(with_record(scope_for(config)).outcomes)}

    return plain_node(TAIL_NODE, tail)


def needs_tail(config: RunnableConfig) -> bool:
    """Whether this run should end at the tail: the head did not write its record."""
    scope = run_scope(config)
    return scope is None or "run" not in scope.outcomes


def step_node(step: Step, *, metrics: Metrics | None = None) -> Runnable[Any, Any]:
    """One step as a node of its own; route after it with :func:`graphops.steps.refused` etc."""

    def node(state: Any, config: RunnableConfig) -> dict[str, Any]:
        update, _ = run_steps([step], state, config, metrics)
        return update

    return plain_node(step.name, node)
