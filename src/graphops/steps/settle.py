"""The settle step: the last node of a run, where reserved quota meets real usage.

Pass-through until the guard issue adds quotas; it already marks the run finished
in the ops channel.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from graphops.ops import GuardPolicy
from graphops.steps._node import step_node
from graphops.steps.state import OPS_KEY

__all__ = ["settle_node"]


def settle_node(policy: GuardPolicy) -> Runnable[Any, Any]:
    """A node that settles the run's token reservation."""

    def settle(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return {OPS_KEY: {"settled": True}}

    return step_node("settle", settle)
