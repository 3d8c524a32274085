"""The ops configuration: which steps are on and how each node is treated.

Policies are small immutable value objects, in the manner of tenacity's strategies
and httpx's ``Timeout``; the code that applies them lives in :mod:`graphops.steps`
and :mod:`graphops.builder`. A step whose policy is ``None`` is off and inserts
nothing: no node, no wrapper, no cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from langgraph.types import RetryPolicy

if TYPE_CHECKING:
    from graphops.observe.telemetry import Telemetry

__all__ = ["Budget", "CachePolicy", "FailoverPolicy", "GuardPolicy", "NodeOps", "Ops"]


@dataclass(frozen=True)
class GuardPolicy:
    """Input validation and limits before the run starts (limits arrive with the guard issue)."""

    max_question_chars: int = 4000
    question_key: str = "question"


@dataclass(frozen=True)
class CachePolicy:
    """Answer caching around the run (lookups and stores arrive with the cache issue)."""

    ttl_seconds: float | None = 3600.0


@dataclass(frozen=True)
class Budget:
    """One deadline for the whole run and limits per stage, in seconds."""

    total_seconds: float = 60.0
    stages: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FailoverPolicy:
    """Retries, breakers and fallbacks (filled in by the failover issue)."""

    retry: RetryPolicy | None = None


@dataclass(frozen=True)
class NodeOps:
    """Per-node settings, applied through LangGraph's own node options."""

    timeout: float | None = None
    retry: RetryPolicy | None = None


@dataclass(frozen=True)
class Ops:
    """Everything :func:`graphops.build_observed_graph` inserts, in one object.

    ``telemetry="default"`` uses the process-wide pipeline (exporters from
    ``GRAPHOPS_TRACES_EXPORTER``); pass a :class:`~graphops.observe.Telemetry` to
    choose exporters, or ``None`` to switch telemetry off.
    """

    guard: GuardPolicy | None = None
    cache: CachePolicy | None = None
    budget: Budget | None = None
    failover: FailoverPolicy | None = None
    telemetry: Telemetry | Literal["default"] | None = "default"
    nodes: Mapping[str, NodeOps] = field(default_factory=dict)

    @classmethod
    def all_steps(cls, telemetry: Telemetry | Literal["default"] | None = "default") -> Ops:
        """Every step on with its default policy."""
        return cls(
            guard=GuardPolicy(),
            cache=CachePolicy(),
            budget=Budget(),
            failover=FailoverPolicy(),
            telemetry=telemetry,
        )
