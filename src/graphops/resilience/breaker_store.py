"""What a breaker store does, as a small Protocol, and the answers it gives.

A store owns a breaker's whole state machine, not just its counters: a decision
(count an outcome and maybe open; let a probe in or not) has to be atomic across
every caller that shares the breaker, so it is made where the state lives (under
one lock in memory, in one Lua script in Redis). The
:class:`~graphops.resilience.breaker.CircuitBreaker` only adds what is local to a
process: the permits it hands out, the fallback when the store does not answer,
and reporting transitions.

Every answer carries the breaker's ``epoch``, which grows with each transition,
and the transition that began it (``last``), so a process can tell a change it
caused (its id is ``last.by``) from one it merely observed, whichever of its
concurrent replies it reads first.

Implementations: :class:`~graphops.resilience.breaker_memory.MemoryBreakerStore`
(one process; also the test fake and the fallback) and
:class:`~graphops.resilience.breaker_redis.RedisBreakerStore` (every process on
one Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from graphops.resilience.breaker import BreakerPolicy

__all__ = ["BreakerStore", "Caller", "Change", "Reason", "Reply", "State"]

State = Literal["closed", "half_open", "open"]
"""A breaker's state: calls flow, a few probes may go, or nothing goes."""

Reason = Literal[
    "failure_rate", "slow_rate", "wait_elapsed", "probes_ok", "probes_failed", "reset", "observed"
]
"""Why a breaker changed state (``observed``: another process changed it)."""


@dataclass(frozen=True, slots=True)
class Change:
    """The transition that began an epoch: who made it (``by``), why, and the rates that decided.

    The rates are those of the calls that decided (the window, or the probes); for
    ``wait_elapsed`` they are the ones that opened the breaker, for ``reset`` the
    window's at that moment (0.0 when it was empty).
    """

    from_state: State
    to_state: State
    reason: Reason
    failure_rate: float
    slow_rate: float
    by: str

    @property
    def rates(self) -> tuple[float, float]:
        """``(failure_rate, slow_rate)``."""
        return self.failure_rate, self.slow_rate


@dataclass(frozen=True, slots=True)
class Reply:
    """A store's answer: the state and epoch after the operation.

    For a permit, ``permitted`` says whether the call may go and ``token`` names
    a half-open probe (None for a call in the closed state). ``last`` is the
    transition that began ``epoch``; a store may leave it out (None) when the
    caller said it had already seen that epoch, and it is None for a breaker that
    never changed.
    """

    state: State
    epoch: int
    permitted: bool = False
    token: str | None = None
    last: Change | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks a store about which breaker, under which policy, knowing which epoch.

    ``who`` identifies the calling breaker (it becomes ``Change.by``); ``seen`` is
    the newest epoch it knows, so a remote store may leave ``last`` out. A breaker
    keeps one and makes a new one only when it learns of a new epoch.
    """

    name: str
    policy: BreakerPolicy
    who: str
    seen: int = -1


@runtime_checkable
class BreakerStore(Protocol):
    """Where breakers live, by name. Every method raises
    :class:`~graphops.limits.store.StoreUnavailable` when the store cannot answer.

    ``remote`` says whether calls do network I/O (an async caller then uses the
    ``a*`` twins). ``outcome`` is 0 for a call that went well, plus 1 if it failed
    and 2 if it was slow.
    """

    remote: bool

    def permit(self, caller: Caller) -> Reply:
        """May a call go now? Moves OPEN to HALF_OPEN when ``open_s`` has passed."""
        ...

    async def apermit(self, caller: Caller) -> Reply:
        """:meth:`permit`, without blocking the event loop."""
        ...

    def record(self, caller: Caller, epoch: int, token: str | None, outcome: int) -> Reply:
        """Count the outcome of a call permitted in ``epoch`` (a probe's, by its ``token``).

        An outcome from another epoch, or of a lapsed or released probe, counts nothing.
        """
        ...

    async def arecord(self, caller: Caller, epoch: int, token: str | None, outcome: int) -> Reply:
        """:meth:`record`, without blocking the event loop."""
        ...

    def release(self, caller: Caller, epoch: int, token: str) -> Reply:
        """Give a probe's slot back without counting anything."""
        ...

    async def arelease(self, caller: Caller, epoch: int, token: str) -> Reply:
        """:meth:`release`, without blocking the event loop."""
        ...

    def state(self, caller: Caller) -> Reply:
        """The state now, changing nothing (an elapsed OPEN stays OPEN until a permit asks)."""
        ...

    async def astate(self, caller: Caller) -> Reply:
        """:meth:`state`, without blocking the event loop."""
        ...

    def reset(self, caller: Caller) -> Reply:
        """Back to CLOSED with an empty window, in a new epoch; probes in flight count nothing."""
        ...

    async def areset(self, caller: Caller) -> Reply:
        """:meth:`reset`, without blocking the event loop."""
        ...

    def close(self) -> None:
        """Release connections (a memory store has none)."""
        ...
