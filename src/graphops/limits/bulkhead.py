"""A bulkhead as the guard applies it: one leased slot per run, from admission to close.

The slot is taken in the head node (waiting in the tenant's fair queue up to the
bulkhead's ``wait_s`` and the run's deadline), renewed from a background thread
while the run goes on, and given back as the run's scope closes, however it
ended. From sync code inside an event loop (a scope closes in a sync callback,
even in an async run) a remote store is released by a task of that loop, never
by a blocking call.
"""

from __future__ import annotations

import time
from typing import Any

from graphops.limits.deferred import Deferred
from graphops.limits.policy import Bulkhead
from graphops.limits.slot_store import Lease, Refused, slot_key
from graphops.limits.slots import Slots
from graphops.limits.store import StoreUnavailable
from graphops.runtime.scope import RunScope

__all__ = ["BulkheadGate"]


class BulkheadGate:
    """Admits a run to its tenant's (or user's) share of ``bulkhead.slots``, or refuses it."""

    def __init__(self, bulkhead: Bulkhead, slots: Slots) -> None:
        self.bulkhead = bulkhead
        self.slots = slots
        self._deferred = Deferred()

    def _key(self, scope: RunScope) -> str | None:
        who = getattr(scope.identity, self.bulkhead.per)
        return None if who is None else slot_key("runs", f"{self.bulkhead.per}:{who}")

    def _deadline(self, scope: RunScope) -> float:
        until = time.monotonic() + self.bulkhead.wait_s
        return until if scope.deadline is None else min(until, scope.deadline)

    def enter(self, scope: RunScope) -> dict[str, Any] | None:
        """Hold a slot for the run (None), or the refusal's outcome.

        An ``allowed`` outcome with ``unchecked`` means the store did not answer and
        the bulkhead fails open: the run goes ahead without a slot.
        """
        key = self._key(scope)
        if key is None:
            return None
        try:
            got = self.slots.acquire(
                key, self.bulkhead.slots, deadline=self._deadline(scope), ttl_s=self.bulkhead.ttl_s
            )
        except StoreUnavailable as exc:
            return self._unavailable(exc)
        return self._held(scope, got)

    async def aenter(self, scope: RunScope) -> dict[str, Any] | None:
        """:meth:`enter`, waiting without blocking the event loop."""
        key = self._key(scope)
        if key is None:
            return None
        try:
            got = await self.slots.aacquire(
                key, self.bulkhead.slots, deadline=self._deadline(scope), ttl_s=self.bulkhead.ttl_s
            )
        except StoreUnavailable as exc:
            return self._unavailable(exc)
        return self._held(scope, got)

    def _held(self, scope: RunScope, got: Lease | Refused) -> dict[str, Any] | None:
        if isinstance(got, Refused):
            return {
                "outcome": "refused",
                "reason": "bulkhead_full",
                "message": (
                    f"all {self.bulkhead.slots} run slots of this {self.bulkhead.per} are taken "
                    f"({got.ahead} waiting ahead after {got.waited_s:.3f} s); "
                    f"retry in {got.retry_after_s:g} s"
                ),
                "retry_after_s": got.retry_after_s,
                "limit": self._limit(),
            }
        renewal = self.slots.keep_alive(got)

        def release(_: RunScope) -> None:
            renewal.stop()
            self._release(got)

        scope.on_close(release)
        return None

    def _release(self, lease: Lease) -> None:
        self._deferred.call(
            self.slots.store.remote,
            lambda: self.slots.release(lease),
            lambda: self.slots.arelease(lease),
            "could not release a run slot: it lapses after its TTL",
        )

    async def drain(self) -> None:
        """Wait for the releases sent as tasks of this loop."""
        await self._deferred.drain()

    def _limit(self) -> dict[str, Any]:
        return {"kind": "concurrency", "per": self.bulkhead.per, "amount": self.bulkhead.slots}

    def _unavailable(self, exc: StoreUnavailable) -> dict[str, Any] | None:
        if self.bulkhead.fail == "open":
            return {"outcome": "allowed", "unchecked": True, "message": f"bulkhead: {exc}"}
        return {
            "outcome": "refused",
            "reason": "limiter_unavailable",
            "message": f"the slot store did not answer ({exc}) and the bulkhead fails closed",
            "retry_after_s": 1.0,
            "limit": {**self._limit(), "fail": "closed"},
        }
