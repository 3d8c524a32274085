"""The cache steps: ``cache_lookup`` after the guard, ``cache_store`` before the end.

Today the lookup always misses and the store keeps nothing (the cache issue fills
them in), but the contract is final: a hit writes the cached answer and routes
past the user's nodes; the store runs once, after every other node (LangGraph's
``defer``), however the run ended.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.types import Overwrite

from graphops.observe import semconv as sc
from graphops.observe.handler import node_span
from graphops.ops import CachePolicy
from graphops.steps._node import step_node
from graphops.steps.guard import run_record
from graphops.steps.state import OPS_KEY, cache_hit

__all__ = ["cache_lookup_node", "cache_route", "cache_store_node"]


def cache_lookup_node(policy: CachePolicy, *, first: bool = False) -> Runnable[Any, Any]:
    """A node that looks the run's answer up; ``first`` when no guard runs before it."""

    def cache_lookup(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        node_span(config).set_attribute(sc.CACHE_HIT, False)
        outcome = {"hit": False}
        if first:
            return {OPS_KEY: Overwrite({"run": run_record(config), "cache": outcome})}
        return {OPS_KEY: {"cache": outcome}}

    return step_node("cache_lookup", cache_lookup)


def cache_route(on_hit: str, on_miss: list[str]) -> Any:
    """After the lookup: ``on_hit`` for a hit, else the user's first nodes."""

    def after_cache_lookup(state: dict[str, Any]) -> str | list[str]:
        return on_hit if cache_hit(state) else on_miss

    return after_cache_lookup


def cache_store_node(policy: CachePolicy) -> Runnable[Any, Any]:
    """A node that stores the run's answer (unless it was degraded or served from cache)."""

    def cache_store(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return {OPS_KEY: {"cache_store": {"stored": False}}}

    return step_node("cache_store", cache_store)
