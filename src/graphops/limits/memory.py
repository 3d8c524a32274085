"""The in-memory limit store: one process, one lock, and the test fake.

Each decision holds one ``threading.Lock`` for a few microseconds and does no
I/O, so it is safe from threads and from the event loop alike (the async
methods call the sync ones). A moving window is a ``deque`` of at most
``amount`` admission times, newest first; a quota is one integer per window.
Keys whose windows have passed are swept now and then, so memory stays
bounded by the live keys.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from graphops.limits.store import QuotaCheck, RateCheck, Verdict

__all__ = ["MemoryLimitStore"]

_SWEEP_EVERY = 4096  # decisions between sweeps of expired keys


class MemoryLimitStore:
    """A :class:`~graphops.limits.store.LimitStore` in this process's memory."""

    remote = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: dict[str, tuple[deque[float], int]] = {}  # key → (times, window_s)
        self._quotas: dict[str, list[float]] = {}  # key → [tokens, reset_at]
        self._decisions = 0

    def admit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        with self._lock:
            waits: list[float] = []
            for check in rates:
                entry = self._rates.get(check.key)
                times = entry[0] if entry is not None else ()
                if len(times) >= check.amount and times[check.amount - 1] > now - check.window_s:
                    waits.append(times[check.amount - 1] + check.window_s - now)
                else:
                    waits.append(0.0)
            used: list[int] = []
            for quota in quotas:
                total = int(self._live_quota(quota.key, now)[0])
                used.append(total)
                waits.append(quota.reset_at - now if total + quota.reserve > quota.limit else 0.0)
            if any(waits):
                return Verdict(False, tuple(waits), tuple(used))
            for check in rates:
                entry = self._rates.get(check.key)
                if entry is None or entry[0].maxlen != check.amount:
                    entry = (deque(entry[0] if entry else (), maxlen=check.amount), check.window_s)
                    self._rates[check.key] = entry
                entry[0].appendleft(now)
            for i, quota in enumerate(quotas):
                slot = self._live_quota(quota.key, now)
                slot[0] += quota.reserve
                slot[1] = max(slot[1], quota.reset_at)
                self._quotas[quota.key] = slot
                used[i] = int(slot[0])
            self._decisions += 1
            if self._decisions % _SWEEP_EVERY == 0:
                self._sweep(now)
            return Verdict(True, tuple(waits), tuple(used))

    async def aadmit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        return self.admit(rates, quotas, now)

    def settle(self, key: str, delta: int, reset_at: float) -> int:
        with self._lock:
            slot = self._quotas.setdefault(key, [0.0, reset_at])
            slot[0] = max(slot[0] + delta, 0.0)
            slot[1] = max(slot[1], reset_at)
            return int(slot[0])

    async def asettle(self, key: str, delta: int, reset_at: float) -> int:
        return self.settle(key, delta, reset_at)

    def usage(
        self, rates: Sequence[RateCheck], quota_keys: Sequence[str], now: float
    ) -> tuple[int, ...]:
        with self._lock:
            counts = []
            for check in rates:
                entry = self._rates.get(check.key)
                times = entry[0] if entry is not None else ()
                counts.append(sum(1 for t in times if t > now - check.window_s))
            for key in quota_keys:
                counts.append(int(self._live_quota(key, now)[0]))
            return tuple(counts)

    def reset(self, keys: Sequence[str]) -> int:
        with self._lock:
            found = 0
            for key in keys:
                found += (self._rates.pop(key, None) is not None) + (
                    self._quotas.pop(key, None) is not None
                )
            return found

    def close(self) -> None:
        """Nothing to release."""

    def _live_quota(self, key: str, now: float) -> list[float]:
        slot = self._quotas.get(key)
        if slot is None or slot[1] <= now:
            return [0.0, 0.0]
        return slot

    def _sweep(self, now: float) -> None:
        self._quotas = {k: v for k, v in self._quotas.items() if v[1] > now}
        self._rates = {
            k: (times, window)
            for k, (times, window) in self._rates.items()
            if times and times[0] > now - window
        }
