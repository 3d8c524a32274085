"""A retry budget: retries stay a bounded share of the calls a client makes.

Per-call attempt limits alone let a failing provider be hit ``attempts`` times as
hard as usual by every caller at once: the retry storm that turns a brown-out into
an outage. A budget caps retries across all calls instead, the way Finagle's
``RetryBudget`` (a ``TokenRetryBudget`` over a leaky ``TokenBucket``) does, and
Envoy's retry budgets and tower's ``TpsBudget`` after it:

* every call's first attempt :meth:`~RetryBudget.deposit`\\ s one token;
* a retry :meth:`~RetryBudget.try_withdraw`\\ s ``1 / percent`` tokens, so at most
  ``percent`` of the calls are retried;
* deposits, and withdrawals, expire after about ``ttl_s``, so the budget follows
  the recent rate, not the whole history;
* a reserve of ``min_per_s * ttl_s`` retries per ``ttl_s`` lets a client with little
  traffic (or one that just started) still retry.

Like Finagle's, the arithmetic is in integers scaled by 1000, so ``percent=0.2``
means exactly one retry per five deposits, with no float drift.

The budget is process-local by design: Finagle and Envoy keep one per client in
each process, because the point is to stop *this* process from amplifying an
outage, and a shared store would add a network round trip (and a new way to fail)
to every call. Share one instance between the calls that go to the same provider.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from graphops.errors import ConfigurationError

__all__ = ["RetryBudget"]

_SCALE = 1000  # tokens per deposit: lets percent > 1 and fractional percents stay integers
_SLICES = 10  # the ttl window is kept as this many buckets, as Finagle's WindowedAdder does


class RetryBudget:
    """Allows about ``percent`` of the deposited calls to be retried, plus a reserve.

    ``RetryBudget(percent=0.2, min_per_s=10, ttl_s=10)`` (Finagle's default) allows
    a retry for every five calls made in the last ten seconds, plus 100 retries per
    ten seconds whatever the traffic. ``min_per_s=0`` gives no reserve: only
    deposits pay for retries. Thread-safe; each method is O(1) amortised.
    """

    __slots__ = (
        "_buckets",
        "_clock",
        "_current",
        "_deposit",
        "_lock",
        "_reserve",
        "_slice_s",
        "_total",
        "_withdrawal",
        "min_per_s",
        "percent",
        "ttl_s",
    )

    def __init__(
        self,
        percent: float = 0.2,
        min_per_s: float = 10.0,
        ttl_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check("percent", percent, "a share of calls such as 0.2 (at most 1000)", high=1000.0)
        _check("min_per_s", min_per_s, "retries per second the reserve allows, 0 for none")
        _check("ttl_s", ttl_s, "seconds a deposit lasts, such as 10", low_exclusive=True)
        self.percent, self.min_per_s, self.ttl_s = float(percent), float(min_per_s), float(ttl_s)
        if percent == 0:
            # no credit for calls; every retry costs one token of the reserve
            self._deposit, self._withdrawal = 0, 1
        else:
            self._deposit, self._withdrawal = _SCALE, max(1, int(_SCALE / percent))
        self._reserve = int(min_per_s * ttl_s) * self._withdrawal
        self._clock = clock
        self._slice_s = self.ttl_s / _SLICES
        self._buckets = [0] * _SLICES
        self._total = 0  # sum of the live buckets
        self._current = math.floor(clock() / self._slice_s)  # index of the newest bucket
        self._lock = threading.Lock()

    def deposit(self) -> None:
        """Credit one call (its first attempt), which pays for ``percent`` of a retry."""
        if self._deposit:
            with self._lock:
                self._add(self._deposit)

    def try_withdraw(self) -> bool:
        """Take one retry if the balance allows it; False leaves the balance untouched."""
        with self._lock:
            self._advance()
            if self._total + self._reserve < self._withdrawal:
                return False
            self._add(-self._withdrawal)
            return True

    def balance(self) -> int:
        """Retries that could be made now."""
        with self._lock:
            self._advance()
            return max(0, (self._total + self._reserve) // self._withdrawal)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(percent={self.percent:g}, min_per_s={self.min_per_s:g}, "
            f"ttl_s={self.ttl_s:g}, balance={self.balance()})"
        )

    def _add(self, tokens: int) -> None:
        self._advance()
        self._buckets[self._current % _SLICES] += tokens
        self._total += tokens

    def _advance(self) -> None:
        """Empty the buckets that fell out of the window since the last call."""
        now = math.floor(self._clock() / self._slice_s)
        if now <= self._current:
            return  # same bucket (or a clock that stepped back: keep the newest one)
        if now - self._current >= _SLICES:
            self._buckets = [0] * _SLICES
            self._total = 0
        else:
            for index in range(self._current + 1, now + 1):
                slot = index % _SLICES
                self._total -= self._buckets[slot]
                self._buckets[slot] = 0
        self._current = now


def _check(
    name: str,
    value: float,
    hint: str,
    *,
    high: float = math.inf,
    low_exclusive: bool = False,
) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 if low_exclusive else value >= 0)
        and value <= high
    )
    if not ok:
        bound = "above 0" if low_exclusive else "0 or more"
        raise ConfigurationError(f"RetryBudget {name} is {value!r}: give {hint} ({bound})")
