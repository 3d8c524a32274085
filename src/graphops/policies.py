"""The ops configuration: which steps are on and how each node is treated.

Policies are small immutable value objects, in the manner of tenacity's strategies
and httpx's ``Timeout``; the code that applies them lives in :mod:`graphops.steps`
and :mod:`graphops.builder`. A step whose policy is ``None`` is off and inserts
nothing: no node, no wrapper, no cost. Only what works is here: the time budget,
failover, rate limits and the cache tiers arrive with their own issues.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from langgraph.types import RetryPolicy

if TYPE_CHECKING:
    from graphops.observe.telemetry import Telemetry
    from graphops.runtime import RunScope

__all__ = ["CacheAnswer", "CachePolicy", "GuardPolicy", "NodeOps", "Ops"]


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard checks before the run's first node: today, the input question.

    A state whose ``question_key`` holds a question that is not text, is empty,
    holds a NUL character or is longer than ``max_question_chars`` is refused
    (reason ``invalid_input``) and the run ends without running a node. A state
    without that key is not checked. Rate limits, quotas and bulkheads are not
    built yet.
    """

    max_question_chars: int = 4000
    question_key: str = "question"

    def __post_init__(self) -> None:
        if self.max_question_chars < 1:
            raise ValueError("GuardPolicy.max_question_chars must be at least 1")
        if not self.question_key:
            raise ValueError("GuardPolicy.question_key must name a state key")


@dataclass(frozen=True)
class CacheAnswer:
    """A cached answer: the state update it restores, and the tier that found it."""

    update: Mapping[str, Any]
    tier: Literal["exact", "semantic"] = "exact"


@dataclass(frozen=True)
class CachePolicy:
    """Answer caching around the run.

    The cache tiers are not built yet: :meth:`lookup` finds nothing and
    :meth:`store` keeps nothing, so every run records a miss. The steps, their
    spans and metrics, and the routing are final: a lookup that returns a
    :class:`CacheAnswer` writes it into the state and skips the user's nodes, and
    a subclass can script one (the tests do).
    """

    def lookup(self, state: Any, scope: RunScope) -> CacheAnswer | None:
        """The cached answer for this run, if any (none: the tiers are not built)."""
        return None

    def store(self, state: Any, scope: RunScope) -> bool:
        """Store the run's answer; whether it was stored (never, yet).

        Called as the run's scope closes, once, with the run's output as ``state``,
        and only for a run that ended normally and was not refused, answered from
        the cache or degraded. It runs inline: keep it short.
        """
        return False


@dataclass(frozen=True)
class NodeOps:
    """Per-node settings, applied through LangGraph's own node options."""

    timeout: float | None = None
    retry: RetryPolicy | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("NodeOps.timeout must be a positive number of seconds")


@dataclass(frozen=True)
class Ops:
    """Everything :func:`graphops.build_observed_graph` inserts, in one object.

    ``telemetry="default"`` uses the process-wide pipeline (exporters from
    ``GRAPHOPS_TRACES_EXPORTER``); pass a :class:`~graphops.observe.Telemetry` to
    choose exporters, or ``None`` to switch telemetry off.
    """

    guard: GuardPolicy | None = None
    cache: CachePolicy | None = None
    telemetry: Telemetry | Literal["default"] | None = "default"
    nodes: Mapping[str, NodeOps] = field(default_factory=dict)

    @classmethod
    def all_steps(cls, telemetry: Telemetry | Literal["default"] | None = "default") -> Ops:
        """Every step that works today on with its default policy: the guard and the cache."""
        return cls(guard=GuardPolicy(), cache=CachePolicy(), telemetry=telemetry)
