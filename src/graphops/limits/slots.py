"""Concurrency slots: at most ``capacity`` holders of a key at once, leased, queued fairly.

Two uses: in-flight LLM calls per provider (``llm:openai`` with 8 slots) and
per-tenant bulkheads (``runs:tenant:acme`` with 4 slots each, so one tenant's
flood waits in its own queue and never takes another tenant's slots).

* **Leases, not locks.** A slot is held for ``ttl_s`` seconds. A holder that
  dies without releasing loses it when the lease runs out, so a killed process
  cannot leak slots. A live holder renews: :meth:`Slots.hold` renews in the
  background every ``ttl_s / 3`` (a thread, or an anyio task) while the work runs;
  :meth:`Slots.keep_alive` does so for a lease that outlives one call (taken in a
  run's head node, released as the run closes).
* **A fair queue.** When a key is full, callers wait in the order they first
  asked: a slot goes to a caller only if fewer live waiters are ahead of it than
  there are free slots (a newcomer counts everyone waiting as ahead). Waiting is
  polling with backoff (5 → 50 ms); each poll is one store call that also beats
  the waiter's heartbeat, and a waiter whose heartbeat lapses (it gave up or
  died) drops out, so nobody blocks the queue for longer than ``queue_ttl_s``.
* **Deadlines.** A caller waits until its deadline (a ``time.monotonic`` value,
  the run's) or timeout, then gets a :class:`Refused` with ``retry_after_s``:
  the time until the earliest lease on the key runs out, a hint for
  ``Retry-After``. :meth:`Slots.hold` raises :class:`SlotRefused` instead.

Lease times are the store's own clock (an injectable one in memory, the Redis
server's for Redis); the caller's clock only measures its wait. Store failures
raise :class:`~graphops.limits.store.StoreUnavailable`; the caller decides
whether a run goes ahead unbounded or is refused.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Unpack

import anyio

from graphops.errors import ConfigurationError
from graphops.limits.slot_store import Grant, Lease, Refused, SlotRefused, SlotStore, Wait
from graphops.limits.store import StoreUnavailable

__all__ = ["Renewal", "Slots"]

log = logging.getLogger(__name__)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigurationError(f"slot {name} is {value!r}: give a number of seconds above 0")
    return float(value)


def _check(key: object, capacity: object, holder: object) -> None:
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(
            f"slot key is {key!r}: name the pool, like 'llm:openai' or 'runs:tenant:acme'"
        )
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigurationError(
            f"slot capacity is {capacity!r}: give a whole number of slots, at least 1"
        )
    if holder is not None and (not isinstance(holder, str) or not holder):
        raise ConfigurationError(f"slot holder is {holder!r}: give a non-empty id, or None")


def _new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


class Slots:
    """Leased, fairly queued concurrency slots over one :class:`SlotStore`.

    ``ttl_s`` is a lease's length, ``renew_every_s`` (default ``ttl_s / 3``) how often
    renewal runs, ``queue_ttl_s`` how long a silent waiter keeps its place, ``timeout_s``
    the wait of a call that names no deadline. ``clock`` (monotonic seconds), ``sleep``
    and ``asleep`` are injectable so tests need not wait.
    """

    def __init__(
        self,
        store: SlotStore | None = None,
        *,
        ttl_s: float = 30.0,
        renew_every_s: float | None = None,
        queue_ttl_s: float = 2.0,
        timeout_s: float = 30.0,
        poll_s: tuple[float, float] = (0.005, 0.05),
        unknown_retry_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if store is None:
            from graphops.limits.slots_memory import MemorySlotStore

            store = MemorySlotStore()
        self.store: SlotStore = store
        self.ttl_s = _positive("ttl_s", ttl_s)
        self.renew_every_s = _positive("renew_every_s", renew_every_s or self.ttl_s / 3)
        if self.renew_every_s >= self.ttl_s:
            raise ConfigurationError(
                f"slot renew_every_s is {renew_every_s!r}: renew more often than ttl_s ({ttl_s})"
            )
        self.queue_ttl_s = _positive("queue_ttl_s", queue_ttl_s)
        self.timeout_s = max(float(timeout_s), 0.0)
        self.poll_s = (_positive("poll_s", poll_s[0]), _positive("poll_s", poll_s[1]))
        self.unknown_retry_s = _positive("unknown_retry_s", unknown_retry_s)
        self.clock, self.sleep, self.asleep = clock, sleep, asleep

    # ------------------------------------------------------------ acquire
    def acquire(
        self,
        key: str,
        capacity: int,
        holder: str | None = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        ttl_s: float | None = None,
    ) -> Lease | Refused:
        """A slot of ``key``, waiting in line until ``deadline`` (monotonic) or ``timeout``
        (the earlier of the two; neither: ``timeout_s``), else a :class:`Refused`."""
        ttl, me, start, until = self._begin(key, capacity, holder, timeout, deadline, ttl_s)
        delay, ahead, result = self.poll_s[0], -1, None
        try:
            while True:
                sent = self.clock()
                queue_ttl = self.queue_ttl_s if sent < until else 0.0
                grant = self.store.try_acquire(key, capacity, me, ttl, queue_ttl)
                if grant.granted or not queue_ttl:
                    result = self._outcome(key, capacity, me, ttl, start, sent, grant)
                    return result
                delay, ahead = self._backoff(delay, ahead, grant.ahead)
                self.sleep(min(delay, until - sent))
        finally:
            if not isinstance(result, Lease) and until > start:  # leave the line, or undo a
                with suppress(StoreUnavailable):  # grant never seen; else the heartbeat lapses
                    self.store.release(key, me)

    async def aacquire(
        self,
        key: str,
        capacity: int,
        holder: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a bound on waiting in line, not a cancel
        deadline: float | None = None,
        ttl_s: float | None = None,
    ) -> Lease | Refused:
        """:meth:`acquire`, waiting with ``asleep``; cancelling it leaves the queue."""
        ttl, me, start, until = self._begin(key, capacity, holder, timeout, deadline, ttl_s)
        delay, ahead, result = self.poll_s[0], -1, None
        try:
            while True:
                sent = self.clock()
                queue_ttl = self.queue_ttl_s if sent < until else 0.0
                grant = await self.store.atry_acquire(key, capacity, me, ttl, queue_ttl)
                if grant.granted or not queue_ttl:
                    result = self._outcome(key, capacity, me, ttl, start, sent, grant)
                    return result
                delay, ahead = self._backoff(delay, ahead, grant.ahead)
                await self.asleep(min(delay, until - sent))
        finally:
            if not isinstance(result, Lease) and until > start:
                with anyio.CancelScope(shield=True), suppress(StoreUnavailable):
                    await self.store.arelease(key, me)

    def _begin(
        self,
        key: str,
        capacity: int,
        holder: str | None,
        timeout: float | None,
        deadline: float | None,
        ttl_s: float | None,
    ) -> tuple[float, str, float, float]:
        _check(key, capacity, holder)
        ttl = self.ttl_s if ttl_s is None else _positive("ttl_s", ttl_s)
        start = self.clock()
        if timeout is None and deadline is None:
            timeout = self.timeout_s
        until = min(
            start + max(timeout, 0.0) if timeout is not None else math.inf,
            deadline if deadline is not None else math.inf,
        )
        return ttl, holder or _new_holder(), start, until

    def _outcome(
        self, key: str, capacity: int, me: str, ttl: float, start: float, sent: float, grant: Grant
    ) -> Lease | Refused:
        waited = max(self.clock() - start, 0.0)
        if grant.granted:
            return Lease(key, me, capacity, ttl, sent + ttl, waited)
        retry = grant.retry_after_s or self.unknown_retry_s
        return Refused(key, me, max(retry, 0.001), waited, grant.ahead)

    def _backoff(self, delay: float, before: int, ahead: int) -> tuple[float, int]:
        """Double the poll interval up to the cap; start over when the line moved."""
        if 0 <= ahead < before:
            return self.poll_s[0], ahead
        return min(delay * 2, self.poll_s[1]), ahead

    # ------------------------------------------------------------ renew and release
    def renew(self, lease: Lease) -> bool:
        """Extend ``lease`` by its TTL from now; False (and ``lease.lost``) if it was lost."""
        sent = self.clock()
        return self._renewed(lease, sent, self.store.renew(lease.key, lease.holder, lease.ttl_s))

    async def arenew(self, lease: Lease) -> bool:
        """:meth:`renew`, without blocking the event loop."""
        sent = self.clock()
        ok = await self.store.arenew(lease.key, lease.holder, lease.ttl_s)
        return self._renewed(lease, sent, ok)

    def _renewed(self, lease: Lease, sent: float, ok: bool) -> bool:
        if ok:
            lease.expires_at = sent + lease.ttl_s
        else:
            lease.lost = True
            log.warning("slot lease of %r on %r was lost before renewal", lease.holder, lease.key)
        return ok

    def release(self, lease: Lease) -> bool:
        """Give the slot back; whether it was still held."""
        return self.store.release(lease.key, lease.holder)

    async def arelease(self, lease: Lease) -> bool:
        """:meth:`release`, without blocking the event loop."""
        return await self.store.arelease(lease.key, lease.holder)

    def _every(self, lease: Lease) -> float:
        """The renewal interval: ``renew_every_s``, or a third of a lease given its own TTL."""
        return self.renew_every_s if lease.ttl_s == self.ttl_s else lease.ttl_s / 3

    # ------------------------------------------------------------ renewal in the background
    def keep_alive(self, lease: Lease) -> Renewal:
        """Renew ``lease`` from a daemon thread until :meth:`Renewal.stop` (or the end of a
        ``with`` block). Starting and stopping never block, so async code may use it too,
        and a lease can outlive one call: taken in a run's head node, released at its close."""
        return Renewal(self, lease)

    @asynccontextmanager
    async def akeep_alive(self, lease: Lease) -> AsyncIterator[Lease]:
        """Renew ``lease`` from an anyio task every ``renew_every_s`` while the block runs."""

        async def renewing() -> None:
            while True:
                await self.asleep(self._every(lease))
                try:
                    if not await self.arenew(lease):
                        return
                except StoreUnavailable as exc:  # the lease still runs; try again next time
                    log.warning("could not renew the slot lease on %r: %s", lease.key, exc)

        error: BaseException | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(renewing)
                try:
                    yield lease
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as grouped:  # anyio wraps the block's own error: unwrap it
            if len(grouped.exceptions) != 1:
                raise
            error = grouped.exceptions[0]
        if error is not None:
            raise error  # outside the handler, so its context stays its own

    # ------------------------------------------------------------ hold
    @contextmanager
    def hold(
        self, key: str, capacity: int, holder: str | None = None, **wait: Unpack[Wait]
    ) -> Iterator[Lease]:
        """``with slots.hold("llm:openai", 8, timeout=5) as lease:`` a slot, renewed while the
        block runs and released after it; :class:`SlotRefused` when none came in time."""
        got = self.acquire(key, capacity, holder, **wait)
        if isinstance(got, Refused):
            raise SlotRefused(got)
        try:
            with self.keep_alive(got):
                yield got
        finally:
            try:
                self.release(got)
            except StoreUnavailable as exc:
                log.warning("could not release the slot on %r (it lapses): %s", key, exc)

    @asynccontextmanager
    async def ahold(
        self, key: str, capacity: int, holder: str | None = None, **wait: Unpack[Wait]
    ) -> AsyncIterator[Lease]:
        """:meth:`hold` for ``async with``, renewing from an anyio task."""
        got = await self.aacquire(key, capacity, holder, **wait)
        if isinstance(got, Refused):
            raise SlotRefused(got)
        try:
            async with self.akeep_alive(got):
                yield got
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.arelease(got)
                except StoreUnavailable as exc:
                    log.warning("could not release the slot on %r (it lapses): %s", key, exc)


class Renewal:
    """A lease renewed from a daemon thread every interval, until stopped or found lost.

    A store only extends a lease that is still held, so a renewal racing a release
    never brings the lease back; at worst it marks it ``lost``. The ``with`` block's end
    waits for the thread (at most one store call), :meth:`stop` does not (for async code).
    """

    def __init__(self, slots: Slots, lease: Lease) -> None:
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(slots,), name="graphops-slot-renewal", daemon=True
        )
        self._thread.start()

    def _run(self, slots: Slots) -> None:
        while not self._stop.wait(slots._every(self.lease)):
            try:
                if not slots.renew(self.lease):
                    return
            except StoreUnavailable as exc:  # the lease still runs; try again next time
                log.warning("could not renew the slot lease on %r: %s", self.lease.key, exc)

    def stop(self) -> None:
        """Renew no more."""
        self._stop.set()

    def __enter__(self) -> Lease:
        return self.lease

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._thread.join()
