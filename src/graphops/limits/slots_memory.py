"""The in-memory slot store: one process, one lock, and the test fake.

Each call holds one ``threading.Lock`` for microseconds and does no I/O, so it
is safe from threads and from the event loop alike (the async methods call the
sync ones). A key is two dicts: holders → lease expiry, and waiters → heartbeat
expiry, whose insertion order is the queue's order (updating a waiter's
heartbeat keeps its place). Lapsed entries are dropped whenever their key is
touched, and a key with neither is forgotten, so memory stays bounded by the
live keys. Times come from ``clock`` (``time.monotonic``; inject a fake one to
expire leases in tests without waiting).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from graphops.limits.slot_store import Grant

__all__ = ["MemorySlotStore"]


@dataclass(slots=True)
class _Pool:
    holders: dict[str, float] = field(default_factory=dict)  # holder → lease expiry
    waiters: dict[str, float] = field(default_factory=dict)  # waiter → heartbeat expiry, FIFO


class MemorySlotStore:
    """A :class:`~graphops.limits.slots.SlotStore` in this process's memory."""

    remote = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._pools: dict[str, _Pool] = {}

    def try_acquire(
        self, key: str, capacity: int, holder: str, ttl_s: float, queue_ttl_s: float = 0.0
    ) -> Grant:
        with self._lock:
            now = self.clock()
            pool = self._live(key, now)
            if holder in pool.holders:
                pool.holders[holder] = now + ttl_s
                return Grant(True, 0, len(pool.holders), None)
            ahead = len(pool.waiters)
            for rank, waiter in enumerate(pool.waiters):
                if waiter == holder:
                    ahead = rank
                    break
            if len(pool.holders) + ahead < capacity:
                pool.holders[holder] = now + ttl_s
                pool.waiters.pop(holder, None)
                self._pools[key] = pool
                return Grant(True, 0, len(pool.holders), None)
            if queue_ttl_s > 0:
                pool.waiters[holder] = now + queue_ttl_s
            retry = min(pool.holders.values()) - now if pool.holders else None
            self._keep(key, pool)
            return Grant(False, ahead, len(pool.holders), retry)

    async def atry_acquire(
        self, key: str, capacity: int, holder: str, ttl_s: float, queue_ttl_s: float = 0.0
    ) -> Grant:
        return self.try_acquire(key, capacity, holder, ttl_s, queue_ttl_s)

    def renew(self, key: str, holder: str, ttl_s: float) -> bool:
        with self._lock:
            now = self.clock()
            pool = self._live(key, now)
            found = holder in pool.holders
            if found:
                pool.holders[holder] = now + ttl_s
            self._keep(key, pool)
            return found

    async def arenew(self, key: str, holder: str, ttl_s: float) -> bool:
        return self.renew(key, holder, ttl_s)

    def release(self, key: str, holder: str) -> bool:
        with self._lock:
            pool = self._live(key, self.clock())
            held = pool.holders.pop(holder, None) is not None
            pool.waiters.pop(holder, None)
            self._keep(key, pool)
            return held

    async def arelease(self, key: str, holder: str) -> bool:
        return self.release(key, holder)

    def occupancy(self, key: str) -> tuple[int, int]:
        with self._lock:
            pool = self._live(key, self.clock())
            self._keep(key, pool)
            return len(pool.holders), len(pool.waiters)

    def close(self) -> None:
        """Nothing to release."""

    def _live(self, key: str, now: float) -> _Pool:
        """``key``'s pool without lapsed leases and waiters (a new one if it has none)."""
        pool = self._pools.get(key)
        if pool is None:
            return _Pool()
        if any(t <= now for t in pool.holders.values()):
            pool.holders = {h: t for h, t in pool.holders.items() if t > now}
        if any(t <= now for t in pool.waiters.values()):
            pool.waiters = {w: t for w, t in pool.waiters.items() if t > now}
        return pool

    def _keep(self, key: str, pool: _Pool) -> None:
        if pool.holders or pool.waiters:
            self._pools[key] = pool
        else:
            self._pools.pop(key, None)
