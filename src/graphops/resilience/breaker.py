"""Circuit breakers per LLM provider: stop calling one that is failing, probe, come back.

The semantics are Resilience4j's count-based breaker. CLOSED counts the outcomes
of the last ``window`` calls and, once at least ``min_calls`` are in, opens when
the failure rate or the slow-call rate reaches its threshold. OPEN refuses every
call for ``open_s``; the first permit asked after that moves it to HALF_OPEN
(lazily: nothing happens while nobody asks, and :meth:`CircuitBreaker.state`
still says OPEN). HALF_OPEN lets ``half_open_calls`` probes through; once that
many have reported, their rates decide: OPEN again, or CLOSED with an empty
window. A probe whose process died lapses after ``probe_ttl_s`` and frees its slot.

Every state starts with fresh counts, in a new *epoch*: an outcome is counted
only in the epoch its permit was given in, so calls that were in flight when the
breaker opened cannot reopen it the moment its probes closed it.

The store holds the state machine (:mod:`~graphops.resilience.breaker_store`);
this module adds what belongs to one process. When the store does not answer,
the breaker neither fails the call nor waits: it switches to a
:class:`~graphops.resilience.breaker_memory.MemoryBreakerStore` of its own,
seeded with the state it last saw, logs one warning (``graphops.resilience``),
and tries the shared store again at most once a second (one call pays the
store's timeout). Outcomes of permits given by a store it has left are dropped.

``on_transition`` is called, outside any lock, once for each transition this
breaker sees: with the real reason by the breaker whose call caused it, with
``"observed"`` by one that found the state changed (a new breaker assumes
CLOSED, so one that first meets an OPEN breaker reports ``closed → open``). A
callback that raises is logged and does not fail the call.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from graphops.errors import ConfigurationError
from graphops.limits.store import StoreUnavailable
from graphops.resilience.breaker_memory import MemoryBreakerStore
from graphops.resilience.breaker_store import BreakerStore, Caller, Reason, Reply, State

__all__ = ["BreakerPolicy", "CircuitBreaker", "Permit", "Reason", "State", "Transition"]

_log = logging.getLogger("graphops.resilience")

RETRY_S = 1.0
"""While falling back, how often (at most) the shared store is tried again."""


def _whole(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"BreakerPolicy.{name} is {value!r}: give a whole number, >= 1")


def _seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigurationError(f"BreakerPolicy.{name} is {value!r}: give seconds above 0")


def _rate(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigurationError(
            f"BreakerPolicy.{name} is {value!r}: give a fraction above 0 and at most 1, like 0.5"
        )


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how it comes back; see the module docstring."""

    window: int = 20
    min_calls: int = 10
    failure_rate: float = 0.5
    slow_call_s: float = 10.0
    slow_rate: float = 1.0
    open_s: float = 30.0
    half_open_calls: int = 3
    probe_ttl_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("window", "min_calls", "half_open_calls"):
            _whole(name, getattr(self, name))
        for name in ("slow_call_s", "open_s", "probe_ttl_s"):
            _seconds(name, getattr(self, name))
        for name in ("failure_rate", "slow_rate"):
            _rate(name, getattr(self, name))
        if self.min_calls > self.window:
            raise ConfigurationError(
                f"BreakerPolicy.min_calls is {self.min_calls}, more than window={self.window}: "
                "the window could never hold enough calls; lower min_calls or widen the window"
            )


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of breaker ``name``, and the rates that decided it (0.0 when unknown)."""

    name: str
    from_state: State
    to_state: State
    reason: Reason
    failure_rate: float
    slow_rate: float


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; hand it back to :meth:`CircuitBreaker.record` or ``release``.

    ``token`` names a half-open probe (None: a call in the closed state); ``epoch``
    and ``source`` (0: the breaker's store, n: its n-th fallback) say where it counts.
    """

    name: str
    epoch: int
    token: str | None = None
    source: int = field(default=0, repr=False)

    @property
    def probe(self) -> bool:
        """Whether this call is a half-open probe."""
        return self.token is not None


class _Seen(NamedTuple):
    """What a breaker last saw: the newest epoch of its store and of its fallback, the state."""

    store: int
    fallback: int
    state: State


def _observed(name: str, before: State, after: State) -> Transition:
    return Transition(name, before, after, "observed", 0.0, 0.0)


class CircuitBreaker:
    """One provider's breaker over a :class:`BreakerStore` (a fresh memory store by default).

    ``clock`` (``time.monotonic``) paces the retries of an unanswering store and
    is the fallback store's clock.
    """

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy = BreakerPolicy(),
        store: BreakerStore | None = None,
        *,
        on_transition: Callable[[Transition], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"breaker name is {name!r}: name the provider, like 'openai'")
        if not isinstance(policy, BreakerPolicy):
            raise ConfigurationError(f"breaker policy is {policy!r}: give a BreakerPolicy")
        self.name, self.policy = name, policy
        self.store: BreakerStore = store if store is not None else MemoryBreakerStore()
        self.on_transition = on_transition
        self._clock = clock
        self._who = uuid.uuid4().hex
        self._caller = self._local_caller = Caller(name, policy, self._who)
        self._lock = threading.Lock()
        self._seen = _Seen(-1, -1, "closed")
        self._local: MemoryBreakerStore | None = None
        self._source = 0  # 0: the store; n: the n-th fallback
        self._fallbacks = 0
        self._retry_at = 0.0

    # ------------------------------------------------------------ sync
    def permit(self) -> Permit | None:
        """Leave to call the provider now, or None: the breaker is open (or all probes are out)."""
        if self._local is None or self._due():
            try:
                reply = self.store.permit(self._caller)
            except StoreUnavailable as exc:
                self._fall_back(exc)
            else:
                return self._granted(reply, 0)
        local, source = self._fallback()
        if local is None:  # another thread found the store back meanwhile
            return self.permit()
        return self._granted(local.permit(self._local_caller), source)

    def record(self, permit: Permit, *, ok: bool, duration_s: float) -> State:
        """Count how a permitted call went (slow if it took ``slow_call_s`` or more); the state."""
        outcome = (not ok) | (duration_s >= self.policy.slow_call_s) << 1
        if permit.source == 0 and (self._local is None or self._due()):
            try:
                reply = self.store.record(self._caller, permit.epoch, permit.token, outcome)
            except StoreUnavailable as exc:
                self._fall_back(exc)
                return self._seen.state
            return self._noted(reply, 0)
        return self._record_locally(permit, outcome)

    def release(self, permit: Permit) -> State:
        """The call ended saying nothing about the provider: free its probe slot, count nothing.

        A call permitted in the closed state holds nothing, so releasing it asks no store.
        """
        token = permit.token
        if token is None:
            return self._seen.state
        if permit.source == 0 and (self._local is None or self._due()):
            try:
                reply = self.store.release(self._caller, permit.epoch, token)
            except StoreUnavailable as exc:
                self._fall_back(exc)
                return self._seen.state
            return self._noted(reply, 0)
        return self._release_locally(permit, token)

    def state(self) -> State:
        """The state now (OPEN until a permit is asked after ``open_s``)."""
        return self._ask("state")

    def reset(self) -> State:
        """Back to CLOSED with an empty window, for every process that shares the store."""
        return self._ask("reset")

    # ------------------------------------------------------------ async
    async def apermit(self) -> Permit | None:
        """:meth:`permit`, without blocking the event loop."""
        if not self.store.remote:
            return self.permit()
        if self._local is None or self._due():
            try:
                reply = await self.store.apermit(self._caller)
            except StoreUnavailable as exc:
                self._fall_back(exc)
            else:
                return self._granted(reply, 0)
        local, source = self._fallback()
        if local is None:
            return await self.apermit()
        return self._granted(local.permit(self._local_caller), source)

    async def arecord(self, permit: Permit, *, ok: bool, duration_s: float) -> State:
        """:meth:`record`, without blocking the event loop."""
        if not self.store.remote:
            return self.record(permit, ok=ok, duration_s=duration_s)
        outcome = (not ok) | (duration_s >= self.policy.slow_call_s) << 1
        if permit.source == 0 and (self._local is None or self._due()):
            try:
                reply = await self.store.arecord(self._caller, permit.epoch, permit.token, outcome)
            except StoreUnavailable as exc:
                self._fall_back(exc)
                return self._seen.state
            return self._noted(reply, 0)
        return self._record_locally(permit, outcome)

    async def arelease(self, permit: Permit) -> State:
        """:meth:`release`, without blocking the event loop."""
        token = permit.token
        if token is None or not self.store.remote:
            return self.release(permit)
        if permit.source == 0 and (self._local is None or self._due()):
            try:
                reply = await self.store.arelease(self._caller, permit.epoch, token)
            except StoreUnavailable as exc:
                self._fall_back(exc)
                return self._seen.state
            return self._noted(reply, 0)
        return self._release_locally(permit, token)

    async def astate(self) -> State:
        """:meth:`state`, without blocking the event loop."""
        return await self._aask("state")

    async def areset(self) -> State:
        """:meth:`reset`, without blocking the event loop."""
        return await self._aask("reset")

    # ------------------------------------------------------------ routing and the fallback
    def _ask(self, op: Literal["state", "reset"]) -> State:
        if self._local is None or self._due():
            try:
                reply: Reply = getattr(self.store, op)(self._caller)
            except StoreUnavailable as exc:
                self._fall_back(exc)
            else:
                return self._noted(reply, 0)
        local, source = self._fallback()
        if local is None:
            return self._ask(op)
        return self._noted(getattr(local, op)(self._local_caller), source)

    async def _aask(self, op: Literal["state", "reset"]) -> State:
        if not self.store.remote:
            return self._ask(op)
        if self._local is None or self._due():
            try:
                reply: Reply = await getattr(self.store, f"a{op}")(self._caller)
            except StoreUnavailable as exc:
                self._fall_back(exc)
            else:
                return self._noted(reply, 0)
        local, source = self._fallback()
        if local is None:
            return await self._aask(op)
        return self._noted(getattr(local, op)(self._local_caller), source)

    def _record_locally(self, permit: Permit, outcome: int) -> State:
        """Count on the fallback a permit it gave; drop any other (its store is not asked)."""
        local, source = self._fallback()
        if local is None or permit.source != source:
            return self._seen.state
        reply = local.record(self._local_caller, permit.epoch, permit.token, outcome)
        return self._noted(reply, source)

    def _release_locally(self, permit: Permit, token: str) -> State:
        local, source = self._fallback()
        if local is None or permit.source != source:
            return self._seen.state
        return self._noted(local.release(self._local_caller, permit.epoch, token), source)

    def _due(self) -> bool:
        """Whether this caller is the one (in a second) to try the unanswering store again."""
        now = self._clock()
        if now < self._retry_at:
            return False
        with self._lock:
            if now < self._retry_at:
                return False
            self._retry_at = now + RETRY_S
            return True

    def _fallback(self) -> tuple[MemoryBreakerStore | None, int]:
        with self._lock:
            return self._local, self._source

    def _fall_back(self, exc: StoreUnavailable) -> None:
        with self._lock:
            self._retry_at = self._clock() + RETRY_S
            if self._local is not None:
                return
            self._fallbacks += 1
            self._source = self._fallbacks
            self._local = MemoryBreakerStore(self._clock)
            self._local.seed(self.name, self.policy, self._seen.state)
            self._seen = _Seen(self._seen.store, -1, self._seen.state)
        _log.warning(
            "circuit breaker %r: its store did not answer (%s); this process keeps its own "
            "breaker state until it does",
            self.name,
            exc,
        )

    def _recover(self) -> None:
        with self._lock:
            if self._local is None:
                return
            self._local, self._source = None, 0
        _log.info("circuit breaker %r: its store answers again; shared state again", self.name)

    # ------------------------------------------------------------ replies and transitions
    def _granted(self, reply: Reply, source: int) -> Permit | None:
        self._noted(reply, source)
        if not reply.permitted:
            return None
        return Permit(self.name, reply.epoch, reply.token, source)

    def _noted(self, reply: Reply, source: int) -> State:
        """Follow the state a reply shows, and report the transitions it reveals, once each."""
        if source == 0 and self._local is not None:
            self._recover()
        seen = self._seen
        if reply.epoch == (seen.store if source == 0 else seen.fallback) and (
            reply.state == seen.state
        ):
            return reply.state
        with self._lock:
            seen = self._seen
            known = seen.store if source == 0 else seen.fallback
            if reply.epoch < known or source != self._source:
                return reply.state  # older than what we know, or from a store we left
            events = self._revealed(reply, known, seen.state)
            epoch = max(reply.epoch, known)
            if source == 0:
                self._seen = _Seen(epoch, seen.fallback, reply.state)
                self._caller = Caller(self.name, self.policy, self._who, epoch)
            else:
                self._seen = _Seen(seen.store, epoch, reply.state)
        for event in events:
            self._emit(event)
        return reply.state

    def _revealed(self, reply: Reply, known: int, before: State) -> list[Transition]:
        """The transitions between the state last seen and the one ``reply`` shows."""
        last, name = reply.last, self.name
        if reply.epoch > known and last is not None and last.by == self._who:
            mine = Transition(
                name, last.from_state, last.to_state, last.reason, last.failure_rate, last.slow_rate
            )
            events = [] if last.from_state == before else [_observed(name, before, last.from_state)]
            return events if last.from_state == last.to_state else [*events, mine]
        if reply.state == before:
            return []
        if last is not None and (last.from_state, last.to_state) == (before, reply.state):
            return [Transition(name, before, reply.state, "observed", *last.rates)]
        return [_observed(name, before, reply.state)]

    def _emit(self, event: Transition) -> None:
        what = (event.name, event.from_state, event.to_state, event.reason)
        _log.info("circuit breaker %r: %s -> %s (%s)", *what)
        callback = self.on_transition
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            _log.exception("circuit breaker %r: on_transition raised", self.name)
