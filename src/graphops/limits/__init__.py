"""Rate limits, token quotas and concurrency slots: policies, the limiter, its stores.

The policies (:class:`RequestLimit`, :class:`TokenQuota`) are value objects;
the :class:`Limiter` applies them over a :class:`LimitStore`:
:class:`MemoryLimitStore` in one process (the default, and the test fake) or
:class:`~graphops.limits.redis.RedisLimitStore` across processes. The guard
step (:mod:`graphops.steps.guard`) is where a graph meets them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphops.limits.limiter import Admission, Limiter, Reservation
    from graphops.limits.memory import MemoryLimitStore
    from graphops.limits.policy import RequestLimit, TokenQuota
    from graphops.limits.redis import RedisLimitStore
    from graphops.limits.store import LimitStore, StoreUnavailable

_LAZY = {
    "Admission": "limiter",
    "Limiter": "limiter",
    "Reservation": "limiter",
    "MemoryLimitStore": "memory",
    "RequestLimit": "policy",
    "TokenQuota": "policy",
    "RedisLimitStore": "redis",
    "LimitStore": "store",
    "StoreUnavailable": "store",
}

__all__ = [
    "Admission",
    "LimitStore",
    "Limiter",
    "MemoryLimitStore",
    "RedisLimitStore",
    "RequestLimit",
    "Reservation",
    "StoreUnavailable",
    "TokenQuota",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graphops.limits' has no attribute {name!r}")
    return getattr(importlib.import_module(f"graphops.limits.{module}"), name)
