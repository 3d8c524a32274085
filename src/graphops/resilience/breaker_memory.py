"""The in-memory breaker store: one process, one lock, O(1) per call; also the test fake.

A breaker is a fixed ring of its last ``window`` outcomes (one byte each: bit 0
failed, bit 1 slow) with running counts, so recording an outcome subtracts the
one falling out of the window and adds the new one, whatever the window's size.
In the closed state a call allocates nothing here: every answer that changes
nothing is one :class:`~graphops.resilience.breaker_store.Reply` made when the
breaker entered its current state and handed out again. The lock is held for
microseconds and no I/O happens under it, so it is safe from threads and from an
event loop alike (the async methods call the sync ones).

Times come from ``clock`` (``time.monotonic``; inject a fake one to open, wait
and lapse probes in tests without sleeping); the closed state never reads it.
This is also the store a :class:`~graphops.resilience.breaker.CircuitBreaker`
falls back to while its shared store does not answer, seeded with the state it
last saw there (:meth:`MemoryBreakerStore.seed`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from graphops.resilience.breaker_store import Caller, Change, Reason, Reply, State

if TYPE_CHECKING:
    from graphops.resilience.breaker import BreakerPolicy

__all__ = ["MemoryBreakerStore"]


class _Circuit:
    """One breaker's state; only touched under the store's lock."""

    __slots__ = (
        "done",
        "done_failed",
        "done_slow",
        "epoch",
        "failed",
        "granted",
        "last",
        "n",
        "next",
        "opened_at",
        "probes",
        "ring",
        "slow",
        "state",
        "steady",
    )

    def __init__(self, window: int, state: State = "closed", opened_at: float = 0.0) -> None:
        self.state: State = state
        self.epoch = 0
        self.last: Change | None = None
        self.ring = bytearray(window)
        self.next = self.n = self.failed = self.slow = 0
        self.opened_at = opened_at
        self.probes: dict[str, float] = {}  # token → when it lapses
        self.granted = self.done = self.done_failed = self.done_slow = 0
        self.steady = Reply(state, 0, state == "closed")

    def empty_window(self, window: int) -> None:
        if len(self.ring) != window:
            self.ring = bytearray(window)
        self.next = self.n = self.failed = self.slow = 0


class MemoryBreakerStore:
    """A :class:`~graphops.resilience.breaker_store.BreakerStore` in this process's memory."""

    remote = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}

    def seed(self, name: str, policy: BreakerPolicy, state: State) -> None:
        """Start ``name`` afresh in ``state`` (OPEN: waiting ``open_s`` from now), at epoch 0.

        Why: a breaker falling back here keeps the protection it had in the
        shared store instead of letting calls through to a provider it saw failing.
        """
        with self._lock:
            self._circuits[name] = _Circuit(policy.window, state, self.clock())

    # ------------------------------------------------------------ the BreakerStore protocol
    def permit(self, caller: Caller) -> Reply:
        policy = caller.policy
        with self._lock:
            c = self._circuit(caller.name, policy)
            if c.state == "closed":
                return c.steady
            now = self.clock()
            if c.state == "open":
                if now < c.opened_at + policy.open_s:
                    return c.steady
                last = c.last
                rates = last.rates if last is not None else (0.0, 0.0)
                self._move(c, "half_open", "wait_elapsed", *rates, caller.who)
            elif c.probes:
                for token in [t for t, lapses in c.probes.items() if lapses <= now]:
                    del c.probes[token]
            if len(c.probes) + c.done >= policy.half_open_calls:
                return c.steady
            c.granted += 1
            token = f"{c.epoch}.{c.granted}"
            c.probes[token] = now + policy.probe_ttl_s
            return Reply("half_open", c.epoch, True, token, c.last)

    def record(self, caller: Caller, epoch: int, token: str | None, outcome: int) -> Reply:
        policy, failed, slow = caller.policy, outcome & 1, outcome >> 1
        with self._lock:
            c = self._circuit(caller.name, policy)
            if epoch != c.epoch:
                return c.steady
            if token is None:
                if c.state != "closed":
                    return c.steady
                ring, at = c.ring, c.next
                if c.n == len(ring):
                    old = ring[at]
                    c.failed -= old & 1
                    c.slow -= old >> 1
                else:
                    c.n += 1
                ring[at] = outcome
                c.next = at + 1 if at + 1 < len(ring) else 0
                c.failed += failed
                c.slow += slow
                if c.n >= policy.min_calls:
                    failure_rate, slow_rate = c.failed / c.n, c.slow / c.n
                    if failure_rate >= policy.failure_rate:
                        return self._move(
                            c, "open", "failure_rate", failure_rate, slow_rate, caller.who
                        )
                    if slow_rate >= policy.slow_rate:
                        return self._move(
                            c, "open", "slow_rate", failure_rate, slow_rate, caller.who
                        )
                return c.steady
            lapses = c.probes.pop(token, None)
            if lapses is None or lapses <= self.clock():
                return c.steady
            c.done += 1
            c.done_failed += failed
            c.done_slow += slow
            if c.done < policy.half_open_calls:
                return c.steady
            failure_rate, slow_rate = c.done_failed / c.done, c.done_slow / c.done
            if failure_rate >= policy.failure_rate or slow_rate >= policy.slow_rate:
                return self._move(c, "open", "probes_failed", failure_rate, slow_rate, caller.who)
            return self._move(c, "closed", "probes_ok", failure_rate, slow_rate, caller.who)

    def release(self, caller: Caller, epoch: int, token: str) -> Reply:
        with self._lock:
            c = self._circuit(caller.name, caller.policy)
            if epoch == c.epoch:
                c.probes.pop(token, None)
            return c.steady

    def state(self, caller: Caller) -> Reply:
        with self._lock:
            return self._circuit(caller.name, caller.policy).steady

    def reset(self, caller: Caller) -> Reply:
        with self._lock:
            c = self._circuit(caller.name, caller.policy)
            rates = (c.failed / c.n, c.slow / c.n) if c.n else (0.0, 0.0)
            return self._move(c, "closed", "reset", *rates, caller.who)

    async def apermit(self, caller: Caller) -> Reply:
        return self.permit(caller)

    async def arecord(self, caller: Caller, epoch: int, token: str | None, outcome: int) -> Reply:
        return self.record(caller, epoch, token, outcome)

    async def arelease(self, caller: Caller, epoch: int, token: str) -> Reply:
        return self.release(caller, epoch, token)

    async def astate(self, caller: Caller) -> Reply:
        return self.state(caller)

    async def areset(self, caller: Caller) -> Reply:
        return self.reset(caller)

    def close(self) -> None:
        """Nothing to release."""

    # ------------------------------------------------------------ helpers
    def _circuit(self, name: str, policy: BreakerPolicy) -> _Circuit:
        c = self._circuits.get(name)
        if c is None:
            c = self._circuits[name] = _Circuit(policy.window)
        elif len(c.ring) != policy.window:  # a new policy: the old ring means nothing
            c.empty_window(policy.window)
        return c

    def _move(
        self,
        c: _Circuit,
        to: State,
        reason: Reason,
        failure_rate: float,
        slow_rate: float,
        who: str,
    ) -> Reply:
        """Enter ``to`` in a new epoch; every state starts with fresh counts."""
        c.last = Change(c.state, to, reason, failure_rate, slow_rate, who)
        c.state = to
        c.epoch += 1
        c.probes.clear()
        if to == "closed":
            c.empty_window(len(c.ring))
        elif to == "open":
            c.opened_at = self.clock()
        else:
            c.granted = c.done = c.done_failed = c.done_slow = 0
        c.steady = Reply(to, c.epoch, to == "closed", None, c.last)
        return c.steady
