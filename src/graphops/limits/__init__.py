"""Rate limits, token quotas and concurrency slots: policies, the limiter, its stores.

The policies (:class:`RequestLimit`, :class:`TokenQuota`, :class:`Bulkhead`) are
value objects; the :class:`Limiter` applies the first two over a
:class:`LimitStore`: :class:`MemoryLimitStore` in one process (the default, and
the test fake) or :class:`RedisLimitStore` across processes. Concurrency is
leased :class:`Slots` over a :class:`SlotStore` (:class:`MemorySlotStore`,
:class:`RedisSlotStore`): per-tenant bulkheads (:class:`BulkheadGate`) and
in-flight LLM calls per provider. The guard
step (:mod:`graphops.steps.guard`) is where a graph meets them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphops.limits.bulkhead import BulkheadGate
    from graphops.limits.limiter import Admission, Limiter, Reservation
    from graphops.limits.memory import MemoryLimitStore
    from graphops.limits.policy import Bulkhead, RequestLimit, TokenQuota
    from graphops.limits.redis import RedisLimitStore
    from graphops.limits.slot_store import Lease, Refused, SlotRefused, SlotStore
    from graphops.limits.slots import Slots
    from graphops.limits.slots_memory import MemorySlotStore
    from graphops.limits.slots_redis import RedisSlotStore
    from graphops.limits.store import LimitStore, StoreUnavailable

_LAZY = {
    "Bulkhead": "policy",
    "BulkheadGate": "bulkhead",
    "Lease": "slot_store",
    "Refused": "slot_store",
    "SlotRefused": "slot_store",
    "SlotStore": "slot_store",
    "Slots": "slots",
    "MemorySlotStore": "slots_memory",
    "RedisSlotStore": "slots_redis",
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
    "Bulkhead",
    "BulkheadGate",
    "Lease",
    "LimitStore",
    "Limiter",
    "MemoryLimitStore",
    "MemorySlotStore",
    "RedisLimitStore",
    "RedisSlotStore",
    "Refused",
    "RequestLimit",
    "Reservation",
    "SlotRefused",
    "SlotStore",
    "Slots",
    "StoreUnavailable",
    "TokenQuota",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graphops.limits' has no attribute {name!r}")
    return getattr(importlib.import_module(f"graphops.limits.{module}"), name)
