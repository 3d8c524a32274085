"""The ops steps, each usable alone, and the nodes graphops inserts.

A step is a function of ``(state, scope)`` (:class:`Step`): ``guard_step``,
``cache_lookup_step``, ``cache_store_step``, ``settle_step``. The builder puts
the first two in the head node (:func:`head_node`) and runs the other two as
the run's scope closes (:func:`run_at_close`); the tail (:func:`tail_node`)
holds no step. A hand-built graph can make any step a node with
:func:`step_node`, add :class:`OpsChannel` to its state and route on
:func:`refused` and :func:`cache_hit`. Names load lazily: the telemetry handler
imports :mod:`graphops.steps.names` without the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphops.steps.base import Step, StepResult, run_at_close, run_steps
    from graphops.steps.cache import cache_lookup_step, cache_store_step
    from graphops.steps.channel import OPS_KEY, OpsChannel, cache_hit, ops_channel, ops_of, refused
    from graphops.steps.guard import guard_step
    from graphops.steps.nodes import head_node, step_node, tail_node
    from graphops.steps.settle import settle_scope, settle_step

_LAZY = {
    "Step": "base",
    "StepResult": "base",
    "run_at_close": "base",
    "run_steps": "base",
    "cache_lookup_step": "cache",
    "cache_store_step": "cache",
    "OPS_KEY": "channel",
    "OpsChannel": "channel",
    "cache_hit": "channel",
    "ops_channel": "channel",
    "ops_of": "channel",
    "refused": "channel",
    "guard_step": "guard",
    "head_node": "nodes",
    "step_node": "nodes",
    "tail_node": "nodes",
    "settle_scope": "settle",
    "settle_step": "settle",
}

__all__ = [
    "OPS_KEY",
    "OpsChannel",
    "Step",
    "StepResult",
    "cache_hit",
    "cache_lookup_step",
    "cache_store_step",
    "guard_step",
    "head_node",
    "ops_channel",
    "ops_of",
    "refused",
    "run_at_close",
    "run_steps",
    "settle_scope",
    "settle_step",
    "step_node",
    "tail_node",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graphops.steps' has no attribute {name!r}")
    return getattr(importlib.import_module(f"graphops.steps.{module}"), name)
