"""Steps as LangGraph nodes that run under ``invoke`` and ``ainvoke`` alike.

LangGraph wraps a plain function in its ``RunnableCallable`` untraced; giving it
both a sync and an async body keeps that single run (no nested run in traces)
while serving sync and async graphs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph._internal._runnable import RunnableCallable

__all__ = ["step_node"]

Body = Callable[[Any, RunnableConfig], dict[str, Any]]


def step_node(
    name: str,
    body: Body,
    abody: Callable[[Any, RunnableConfig], Awaitable[dict[str, Any]]] | None = None,
) -> Runnable[Any, Any]:
    """A node running ``body`` (sync) or ``abody`` (async; defaults to ``body``, inline)."""

    async def run_async(state: Any, config: RunnableConfig) -> dict[str, Any]:
        if abody is not None:
            return await abody(state, config)
        return body(state, config)

    return RunnableCallable(body, run_async, name=name, trace=False)
