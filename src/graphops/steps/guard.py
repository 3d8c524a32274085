"""The guard step: the first thing a run meets.

Today it validates nothing and always allows (its limits arrive with the guard
issue), but it already owns the run's record in the ops channel (run id, trace
id, who) and the routing contract: ``refused`` ends the run cleanly.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END
from langgraph.types import Overwrite

from graphops.observe import semconv as sc
from graphops.observe.handler import node_span
from graphops.ops import GuardPolicy
from graphops.steps._node import step_node
from graphops.steps.state import OPS_KEY, refused

__all__ = ["guard_node", "guard_route", "run_record"]


def run_record(config: RunnableConfig) -> dict[str, Any]:
    """Who runs, on which thread, under which trace: from the config and the current span."""
    configurable = config.get("configurable") or {}
    metadata = config.get("metadata") or {}
    span_context = node_span(config).get_span_context()
    record: dict[str, Any] = {
        key: metadata.get(key, configurable.get(key))
        for key in ("thread_id", "user", "tenant", "session", "ip")
    }
    record["trace_id"] = f"{span_context.trace_id:032x}" if span_context.is_valid else None
    return record


def guard_node(policy: GuardPolicy) -> Runnable[Any, Any]:
    """A node that checks the run against ``policy`` and records the outcome."""

    def guard(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        node_span(config).set_attribute(sc.GUARD_OUTCOME, "allowed")
        return {OPS_KEY: Overwrite({"run": run_record(config), "guard": {"outcome": "allowed"}})}

    return step_node("guard", guard)


def guard_route(next_node: str) -> Any:
    """After the guard: END when refused, else ``next_node``."""

    def after_guard(state: dict[str, Any]) -> str:
        return END if refused(state) else next_node

    return after_guard
