"""The in-memory limit store: one process, one lock, and the test fake.

Each decision holds one ``threading.Lock`` for a few microseconds and does no
I/O, so it is safe from threads and from the event loop alike (the async
methods call the sync ones). A moving window is a ``deque`` of at most
``amount`` admission times, newest first; a quota is one integer per window.
Keys whose windows have passed are swept now and then, so memory stays
bounded by the live keys.
"""

from __future__ import annotations

import itertools
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
        self._swept = _SWEEP_EVERY // 4  # live keys after the last sweep

    def admit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        with self._lock:
            known, live = self._rates, self._quotas
            refused = False
            waits: list[float] = []
            windows: list[deque[float]] = []  # each rate's deque, to count in if all fit
            for check in rates:
                entry = known.get(check.key)
                if entry is None or entry[0].maxlen != check.amount:
                    kept = itertools.islice(entry[0], check.amount) if entry else ()  # newest
                    entry = (deque(kept, maxlen=check.amount), check.window_s)
                    known[check.key] = entry
                times = entry[0]
                windows.append(times)
                if len(times) == check.amount and times[-1] > now - check.window_s:
                    waits.append(max(times[-1] + check.window_s - now, 1e-9))  # the oldest
                    refused = True
                else:
                    waits.append(0.0)
            used: list[int] = []
            slots: list[list[float]] = []
            for quota in quotas:
                slot = live.get(quota.key)
                if slot is None or slot[1] <= now:
                    slot = [0.0, quota.reset_at]
                slots.append(slot)
                used.append(int(slot[0]))
                if slot[0] + quota.reserve > quota.limit:
                    waits.append(max(quota.reset_at - now, 0.001))
                    refused = True
                else:
                    waits.append(0.0)
            if refused:
                return Verdict(False, tuple(waits), tuple(used))
            for times in windows:
                times.appendleft(now)
            for i, (quota, slot) in enumerate(zip(quotas, slots, strict=True)):
                slot[0] += quota.reserve
                slot[1] = max(slot[1], quota.reset_at)
                live[quota.key] = slot
                used[i] = int(slot[0])
            self._decisions += 1
            if self._decisions % _SWEEP_EVERY == 0 and self._size() > 2 * self._swept:
                self._sweep(now)  # when the keys have doubled: the pauses amortise to O(1)
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

    def _size(self) -> int:
        return len(self._rates) + len(self._quotas)

    def _sweep(self, now: float) -> None:
        self._quotas = {k: v for k, v in self._quotas.items() if v[1] > now}
        self._rates = {
            k: (times, window)
            for k, (times, window) in self._rates.items()
            if times and times[0] > now - window
        }
        self._swept = max(self._size(), _SWEEP_EVERY // 4)
