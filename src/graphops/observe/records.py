"""The handler's small per-run records, shared by :mod:`~graphops.observe.handler` and
:mod:`~graphops.observe.calls` (a module of their own so neither imports the other's
internals)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from opentelemetry.trace import Span

__all__: list[str] = []


@dataclass(slots=True)
class _Root:
    graph: str
    user_class: str
    attrs: dict[str, Any]
    node_attrs: dict[str, Any]  # what every node span of the run repeats
    attempts: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    cost: float = 0.0
    prompts: list[str] = field(default_factory=list)
    last_step: int = -1  # the last LangGraph step a node of the run ran in


@dataclass(slots=True)
class _Open:
    span: Span
    token: contextvars.Token[Any] | object | None
    kind: str
    started: float
    root: UUID
    name: str
    model: str = ""
    provider: str = ""
    prompts: list[str] | None = None  # a node's prompt refs, in use order


class _Children:
    """A metric's label children, bound once per label values and reused."""

    __slots__ = ("_bound", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._bound: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self._bound.get(values)
        if child is None:
            child = self._bound[values] = self._metric.labels(*values)
        return child
