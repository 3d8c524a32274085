"""The head and tail nodes: graphops' steps as at most two LangGraph nodes.

The head runs ``guard`` then ``cache_lookup`` and routes with ``Command(goto=…)``:
to END when refused, past the user's nodes when answered from the cache, else to
where START led (its edges, or its routers, called with the user's own state
object, so a pydantic or dataclass state reaches them as itself). The tail runs
``cache_store`` then ``settle`` once the user's nodes are done. Each step keeps
its own span (:func:`graphops.observe.handler.step_span`).

:func:`step_node` makes one step a node on its own, for a hand-built graph.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END
from langgraph.types import Command

from graphops._compat.langgraph import plain_node
from graphops.steps.base import Step, Stop, arun_steps, run_steps
from graphops.steps.names import HEAD_NODE, TAIL_NODE

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["head_node", "step_node", "tail_node"]

Proceed = Callable[[Any, RunnableConfig], Any]
"""Where a run the head lets through goes: node names, ``Send`` objects, or END."""


def head_node(
    steps: Sequence[Step],
    *,
    proceed: Proceed,
    aproceed: Callable[[Any, RunnableConfig], Awaitable[Any]],
    answered: str,
    metrics: Metrics | None = None,
) -> Runnable[Any, Any]:
    """The head: run ``steps``; refused → END, answered → ``answered``, else ``proceed``."""

    def stopped(stop: Stop) -> str:
        return END if stop == "refused" else answered

    def head(state: Any, config: RunnableConfig) -> Command[Any]:
        def route(stop: Stop | None) -> Any:
            return proceed(state, config) if stop is None else stopped(stop)

        update, goto = run_steps(steps, state, config, metrics, route)
        return Command(update=update, goto=goto)

    async def ahead(state: Any, config: RunnableConfig) -> Command[Any]:
        async def route(stop: Stop | None) -> Any:
            return await aproceed(state, config) if stop is None else stopped(stop)

        update, goto = await arun_steps(steps, state, config, metrics, route)
        return Command(update=update, goto=goto)

    return plain_node(HEAD_NODE, head, ahead)


def tail_node(steps: Sequence[Step], *, metrics: Metrics | None = None) -> Runnable[Any, Any]:
    """The tail: run ``steps`` after the user's nodes (the builder defers it)."""

    def tail(state: Any, config: RunnableConfig) -> dict[str, Any]:
        update, _ = run_steps(steps, state, config, metrics)
        return update

    return plain_node(TAIL_NODE, tail)


def step_node(step: Step, *, metrics: Metrics | None = None) -> Runnable[Any, Any]:
    """One step as a node of its own; route after it with :func:`graphops.steps.refused` etc."""

    def node(state: Any, config: RunnableConfig) -> dict[str, Any]:
        update, _ = run_steps([step], state, config, metrics)
        return update

    return plain_node(step.name, node)
