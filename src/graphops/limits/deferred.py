"""Calls to a store from a run's close: inline, or as tasks of the running event loop.

A run's scope closes in a sync callback, even in an async run. A settlement or
a slot release there must not make a blocking network call on the event loop,
so a remote store's call is sent as a task of that loop instead, and kept until
it ends (:meth:`Deferred.drain` waits for those in flight); outside a loop, or
for a store in memory, the call is made at once. A call that finds the store
unavailable is logged, never raised: closing must not fail a finished run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from graphops.limits.store import StoreUnavailable

__all__ = ["Deferred"]

_log = logging.getLogger("graphops.limits")


class Deferred:
    """Runs close-time store calls without blocking an event loop (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()

    def call(
        self,
        remote: bool,
        call: Callable[[], object],
        acall: Callable[[], Awaitable[object]],
        failed: str,
    ) -> None:
        """``call()`` now, or ``acall()`` as a task when ``remote`` and inside a loop.

        ``failed`` is the log line when the store does not answer (what that means).
        """
        loop = _running_loop() if remote else None
        if loop is None:
            try:
                call()
            except StoreUnavailable as exc:
                _failed(failed, exc)
            return
        task = loop.create_task(self._logged(acall, failed))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _logged(self, acall: Callable[[], Awaitable[object]], failed: str) -> None:
        try:
            await acall()
        except StoreUnavailable as exc:
            _failed(failed, exc)

    async def drain(self) -> None:
        """Wait for the calls sent as tasks of this loop."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _failed(message: str, exc: StoreUnavailable) -> None:
    _log.warning(message, extra={"graphops": {"message": str(exc)}})
