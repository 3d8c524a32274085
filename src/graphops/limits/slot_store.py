"""What a slot store does, as a small Protocol, and the values slots trade in.

A slot store keeps, per key, the leases that hold its slots and the queue of
callers waiting for one (:class:`SlotStore`); :class:`~graphops.limits.slots.Slots`
waits on it. Implementations: :class:`~graphops.limits.slots_memory.MemorySlotStore`
(one process; the test fake) and :class:`~graphops.limits.slots_redis.RedisSlotStore`
(shared by every process on one Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypedDict, runtime_checkable
from urllib.parse import quote

from graphops.errors import RefusedError

__all__ = ["Grant", "Lease", "Refused", "SlotRefused", "SlotStore", "Wait", "slot_key"]


@dataclass(frozen=True, slots=True)
class Grant:
    """A store's answer to one try: ``granted`` or not, and the key's state after it.

    ``ahead`` is how many live waiters are before the caller (0 when granted),
    ``held`` the live leases, ``retry_after_s`` the seconds until the earliest of
    them runs out (None when nobody holds one).
    """

    granted: bool
    ahead: int
    held: int
    retry_after_s: float | None


@runtime_checkable
class SlotStore(Protocol):
    """Where leases and queues live. Every method raises StoreUnavailable when it cannot.

    ``remote``: whether calls do network I/O (then async code uses the ``a*`` twins).
    """

    remote: bool

    def try_acquire(
        self, key: str, capacity: int, holder: str, ttl_s: float, queue_ttl_s: float = 0.0
    ) -> Grant:
        """Atomically: drop lapsed leases and waiters, then lease ``holder`` a slot for ``ttl_s``
        if there is room for it in queue order (renew it if it holds one). If refused and
        ``queue_ttl_s > 0``: join the queue, or keep one's place, for ``queue_ttl_s`` more."""

    async def atry_acquire(
        self, key: str, capacity: int, holder: str, ttl_s: float, queue_ttl_s: float = 0.0
    ) -> Grant:
        """:meth:`try_acquire`, without blocking the event loop."""

    def renew(self, key: str, holder: str, ttl_s: float) -> bool:
        """Extend a live lease to ``ttl_s`` from now; False if it was lost (lapsed or released)."""

    async def arenew(self, key: str, holder: str, ttl_s: float) -> bool:
        """:meth:`renew`, without blocking the event loop."""

    def release(self, key: str, holder: str) -> bool:
        """Drop ``holder``'s lease and its place in the queue; whether it held a live lease."""

    async def arelease(self, key: str, holder: str) -> bool:
        """:meth:`release`, without blocking the event loop."""

    def occupancy(self, key: str) -> tuple[int, int]:
        """Live leases and live waiters of ``key``, now."""

    def close(self) -> None:
        """Release connections (a memory store has none)."""


@dataclass(slots=True, eq=False)
class Lease:
    """A held slot. ``expires_at`` is this process's conservative view (``time.monotonic``)
    of when it runs out; ``lost`` is set when a renewal found it gone."""

    key: str
    holder: str
    capacity: int
    ttl_s: float
    expires_at: float
    waited_s: float
    lost: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """No slot before the deadline. ``ahead``: waiters that were still before this caller."""

    key: str
    holder: str
    retry_after_s: float
    waited_s: float
    ahead: int


class SlotRefused(RefusedError):
    """:meth:`Slots.hold` found no free slot before its deadline; ``refusal`` says more.

    A :class:`~graphops.errors.RefusedError` with reason ``slot_unavailable``, so
    one ``except RefusedError`` catches a refused run and a refused LLM call alike.
    """

    def __init__(self, refusal: Refused) -> None:
        message = (
            f"no free slot of {refusal.key!r} after waiting {refusal.waited_s:.3f} s "
            f"({refusal.ahead} waiting ahead); retry in {refusal.retry_after_s:g} s"
        )
        super().__init__(
            {
                "reason": "slot_unavailable",
                "message": message,
                "retry_after_s": refusal.retry_after_s,
                "limit": {"kind": "concurrency", "key": refusal.key},
            }
        )
        self.refusal = refusal


class Wait(TypedDict, total=False):
    """How :meth:`Slots.hold` waits: the keyword arguments of :meth:`Slots.acquire`."""

    timeout: float | None
    deadline: float | None
    ttl_s: float | None


def slot_key(pool: str, who: str | None = None) -> str:
    """The key of ``pool`` (``"llm:openai"``), or of ``who``'s bulkhead in it (``"runs"``,
    ``"tenant:acme"`` → ``"runs:tenant%3Aacme"``)."""
    return pool if who is None else f"{pool}:{quote(who, safe='')}"
