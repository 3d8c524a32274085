"""The ops steps, each usable alone in a hand-built graph.

``guard_node``/``guard_route``, ``cache_lookup_node``/``cache_route``,
``cache_store_node`` and ``settle_node`` build LangGraph nodes and routing
functions; they talk through the ``graphops`` channel (:data:`OpsChannel`), which
a hand-built graph adds to its state schema.
"""

from __future__ import annotations

from graphops.steps.cache import cache_lookup_node, cache_route, cache_store_node
from graphops.steps.guard import guard_node, guard_route, run_record
from graphops.steps.settle import settle_node
from graphops.steps.state import OPS_KEY, OpsChannel, cache_hit, merge_ops, ops_of, refused

__all__ = [
    "OPS_KEY",
    "OpsChannel",
    "cache_hit",
    "cache_lookup_node",
    "cache_route",
    "cache_store_node",
    "guard_node",
    "guard_route",
    "merge_ops",
    "ops_of",
    "refused",
    "run_record",
    "settle_node",
]
