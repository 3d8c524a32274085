"""Deadlines, retries, circuit breakers, fallbacks and the degradation ladder.

The run's time budget (:class:`BudgetPolicy`, :mod:`~graphops.resilience.budget`)
and the ladder (:class:`DegradePolicy`, :mod:`~graphops.resilience.degrade`, with
:func:`extractive_answer`) act in the graph; the retry policy and budget
(:class:`RetryPolicy`, :class:`RetryBudget`) and the breakers
(:class:`BreakerPolicy`, :class:`CircuitBreaker` over a :class:`MemoryBreakerStore`
or a :class:`RedisBreakerStore`) act in the chat model
(:class:`graphops.models.resilient.ResilientChatModel`). docs/resilience.md tells
how they fit. Names load on first use: the policies import this package, and the
ladder imports the steps, which import the policies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphops.resilience.breaker import BreakerPolicy, CircuitBreaker, Transition
    from graphops.resilience.breaker_memory import MemoryBreakerStore
    from graphops.resilience.breaker_redis import RedisBreakerStore
    from graphops.resilience.breaker_store import BreakerStore
    from graphops.resilience.budget import BudgetPolicy
    from graphops.resilience.degrade import DegradePolicy
    from graphops.resilience.extractive import Extract, Passage, extractive_answer
    from graphops.resilience.retry import RetryPolicy, failure_kind, is_transient
    from graphops.resilience.retry_budget import RetryBudget

_LAZY = {
    "BreakerPolicy": "breaker",
    "CircuitBreaker": "breaker",
    "Transition": "breaker",
    "MemoryBreakerStore": "breaker_memory",
    "RedisBreakerStore": "breaker_redis",
    "BreakerStore": "breaker_store",
    "BudgetPolicy": "budget",
    "DegradePolicy": "degrade",
    "Extract": "extractive",
    "Passage": "extractive",
    "extractive_answer": "extractive",
    "RetryPolicy": "retry",
    "failure_kind": "retry",
    "is_transient": "retry",
    "RetryBudget": "retry_budget",
}

__all__ = [
    "BreakerPolicy",
    "BreakerStore",
    "BudgetPolicy",
    "CircuitBreaker",
    "DegradePolicy",
    "Extract",
    "MemoryBreakerStore",
    "Passage",
    "RedisBreakerStore",
    "RetryBudget",
    "RetryPolicy",
    "Transition",
    "extractive_answer",
    "failure_kind",
    "is_transient",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graphops.resilience' has no attribute {name!r}")
    return getattr(importlib.import_module(f"graphops.resilience.{module}"), name)
