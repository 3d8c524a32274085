"""What a limit store does, as a small Protocol, and the values it trades in.

A store decides a run's admission against all of its limits at once,
atomically: every request limit and every token-quota reservation is checked,
and only if all fit is any of them counted, in one step (one lock for the
memory store, one Lua script, so one round trip, for Redis). Two runs can
therefore never both take the last slot, nor a refused run use up a slot of
another limit. Times are epoch seconds passed in by the caller (an injectable
clock), never read by the store.

Implementations: :class:`~graphops.limits.memory.MemoryLimitStore` (one
process; also the test fake) and :class:`~graphops.limits.redis.RedisLimitStore`
(shared by every process that uses the same Redis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["LimitStore", "QuotaCheck", "RateCheck", "StoreUnavailable", "Verdict"]


class StoreUnavailable(Exception):
    """The store could not answer (unreachable, timed out): the limiter applies the fail modes."""


@dataclass(frozen=True, slots=True)
class RateCheck:
    """One moving window: at most ``amount`` admissions in ``window_s`` seconds under ``key``."""

    key: str
    amount: int
    window_s: int


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    """Reserve ``reserve`` tokens under ``key`` if the total stays within ``limit``.

    ``reset_at`` is when the window ends (the key may be forgotten after it).
    """

    key: str
    limit: int
    reserve: int
    reset_at: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """A store's answer: admitted (everything was counted) or not (nothing was).

    ``waits`` has one entry per check, rates first then quotas: 0 for a check
    that had room, else the seconds until it has (a quota: until its window ends).
    ``used`` is each quota's total after the decision, reservations included.
    """

    admitted: bool
    waits: tuple[float, ...]
    used: tuple[int, ...] = ()


@runtime_checkable
class LimitStore(Protocol):
    """Where limits are counted. Every method raises :class:`StoreUnavailable` when it cannot.

    ``remote`` says whether its calls do network I/O: an async caller then uses
    the ``a*`` methods, and a settlement made from sync code inside an event
    loop is sent as a task (the memory store is always called directly).
    """

    remote: bool

    def admit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        """Count the run in every check if all fit, else in none."""
        ...

    async def aadmit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        """:meth:`admit`, without blocking the event loop."""
        ...

    def settle(self, key: str, delta: int, reset_at: float) -> int:
        """Add ``delta`` tokens (negative: a refund, never below 0) to a quota; the new total."""
        ...

    async def asettle(self, key: str, delta: int, reset_at: float) -> int:
        """:meth:`settle`, without blocking the event loop."""
        ...

    def usage(
        self, rates: Sequence[RateCheck], quota_keys: Sequence[str], now: float
    ) -> tuple[int, ...]:
        """What is counted now, changing nothing: each rate's admissions in its window, then
        each quota's tokens (reservations included)."""
        ...

    def reset(self, keys: Sequence[str]) -> int:
        """Forget ``keys``; how many existed."""
        ...

    def close(self) -> None:
        """Release connections (a memory store has none)."""
        ...
