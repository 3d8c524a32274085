"""Flags for runs: one snapshot of the flag table, refreshed, and kept through an outage.

:class:`Flags` reads every flag at once (:meth:`FlagStore.all`) and evaluates
runs against that snapshot in memory, so a resolution costs no database round
trip. The snapshot is read again when it is older than ``refresh_s`` (5 s by
default): a changed row takes effect on the next run that starts after that,
with no restart. That is the staleness bound: a change is seen by every process
within ``refresh_s`` of being written (plus one store read).

Stale-if-error: when the store stops answering (a
:class:`~graphops.errors.RunError` from the database layer), runs are evaluated
against the last snapshot that was read, each such evaluation is counted in
``graphops_flag_stale_total{flag}`` and its :class:`Assignment` says
``stale=True`` (OpenFeature's ``STALE`` reason); the store is asked again at most
once per ``retry_s``. One warning is logged per outage. A store that has never
answered since the resolver was made raises instead: that is a wrong URL or a
database not up yet, not an outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from graphops.errors import ConfigurationError, RunError
from graphops.flags.evaluate import Assignment, evaluate
from graphops.flags.model import Flag, check_flag_name
from graphops.flags.store import FlagStore

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["Flags", "prompt_flag"]

_log = logging.getLogger("graphops.flags")


def prompt_flag(prompt: str) -> str:
    """The name of the flag that picks prompt ``prompt``'s version: the prompt's own name.

    Its variants' values are versions (``3``) or labels (``"staging"``); ``graphops
    flags set answer v3=5 v2=95`` makes one whose variants ``v3`` and ``v2`` are
    versions 3 and 2 of prompt ``answer``.
    """
    return check_flag_name(prompt)


class Flags:
    """Resolve flags for runs from a :class:`FlagStore` (see the module docstring)."""

    def __init__(
        self,
        store: FlagStore,
        *,
        refresh_s: float = 5.0,
        retry_s: float = 5.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(store, FlagStore):
            raise ConfigurationError(f"Flags takes a FlagStore, not {type(store).__name__}")
        for name, value in (("refresh_s", refresh_s), ("retry_s", retry_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"Flags.{name} is {value!r}: give seconds, at least 0")
        self.store = store
        self.refresh_s = float(refresh_s)
        self.retry_s = float(retry_s)
        self._metrics = metrics
        self._clock = clock
        self._snapshot: dict[str, Flag] | None = None
        self._read_at = 0.0
        self._down: RunError | None = None
        self._next_try = 0.0
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one refresh at a time; the others use the snapshot

    # ------------------------------------------------------------------ public
    def resolve(self, name: str, context: Mapping[str, Any] | None = None) -> Assignment | None:
        """The variant flag ``name`` gives a run with ``context``; None: no such flag."""
        check_flag_name(name)
        flags, stale = self._flags()
        flag = flags.get(name)
        return None if flag is None else self._assign(flag, context, stale)

    def resolve_all(self, context: Mapping[str, Any] | None = None) -> dict[str, Assignment]:
        """Every flag's variant for a run with ``context``: what a run scope holds.

        One snapshot, evaluated in memory: a run sees every flag as of one moment,
        never half an update.
        """
        flags, stale = self._flags()
        return {name: self._assign(flags[name], context, stale) for name in sorted(flags)}

    def get(self, name: str) -> Flag | None:
        """The flag ``name`` as the current snapshot has it."""
        check_flag_name(name)
        return self._flags()[0].get(name)

    @property
    def stale(self) -> bool:
        """Whether the store is failing, so flags are evaluated on the last good snapshot."""
        with self._lock:
            return self._down is not None and self._snapshot is not None

    def refresh(self) -> None:
        """Read the flags now, whatever the snapshot's age (after a change made here)."""
        with self._lock:
            self._read_at = float("-inf")
            self._next_try = 0.0
        self._flags()

    # ------------------------------------------------------------------ inside
    def _flags(self) -> tuple[dict[str, Flag], bool]:
        now = self._clock()
        with self._lock:
            snapshot, fresh = self._snapshot, now - self._read_at < self.refresh_s
            resting = self._down is not None and now < self._next_try
        if snapshot is not None and (fresh or resting):
            return snapshot, self._down is not None
        if snapshot is not None and not self._reading.acquire(blocking=False):
            return snapshot, self._down is not None  # another thread is reading it
        if snapshot is None:
            self._reading.acquire()
        try:
            return self._read(now)
        finally:
            self._reading.release()

    def _read(self, now: float) -> tuple[dict[str, Flag], bool]:
        try:
            flags = self.store.all()
        except RunError as exc:
            with self._lock:
                first = self._down is None
                self._down = exc
                self._next_try = now + self.retry_s
                snapshot = self._snapshot
            if snapshot is None:
                raise
            if first:
                _log.warning(
                    "the flag store failed (%s): runs get the last flags read, and it is "
                    "tried again every %g s",
                    exc,
                    self.retry_s,
                )
            return snapshot, True
        with self._lock:
            recovered = self._down is not None
            self._snapshot, self._read_at, self._down = flags, now, None
        if recovered:
            _log.info("the flag store answers again: flags are fresh")
        return flags, False

    def _assign(self, flag: Flag, context: Mapping[str, Any] | None, stale: bool) -> Assignment:
        """One flag's variant for ``context``, counted, marked stale when the snapshot is."""
        assignment = evaluate(flag, context or {})
        metrics = self._metrics_()
        reason = "STALE" if stale else assignment.reason
        metrics.flag_evaluations.labels(
            flag=assignment.flag, variant=assignment.variant, reason=reason
        ).inc()
        if stale:
            metrics.flag_stale.labels(flag=assignment.flag).inc()
            return replace(assignment, stale=True)
        return assignment

    def _metrics_(self) -> Metrics:
        if self._metrics is None:
            from graphops.observe.metrics import default_metrics

            self._metrics = default_metrics()
        return self._metrics
