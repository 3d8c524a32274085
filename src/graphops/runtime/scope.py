"""The run scope: one control record per root run, outside the checkpointed state.

A :class:`RunScope` is opened when a run of an observed graph starts, whatever
node it starts at (a fresh input, ``invoke(None, config)`` resuming or forking a
thread, ``Command(resume=…)`` after an ``interrupt()``), and closed exactly once
when that run ends, fails, is interrupted or is cancelled. It holds who runs
(:class:`Identity`), the run's ids, its deadline, the variant of every flag
(resolved once, as it opens), the admission record the guard leaves, usage
counted from every LLM call, and, once it ended normally, its output; close
hooks registered on it run once, at close, which is where the answer is stored,
quotas settle and permits are released.

It is never stored in the graph state, so a resumed or forked run never inherits
the previous run's record: each run has its own scope. Nodes, steps and models
reach it through their ``config`` with :func:`graphops.runtime.run_scope`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Identity", "RunEnd", "RunScope", "Usage"]

_log = logging.getLogger("graphops.runtime")

RunEnd = Literal["ok", "error", "interrupted", "cancelled"]
"""How a run ended: normally, with an exception, at an ``interrupt()``, or cancelled."""

_IDENTITY_KEYS = ("thread_id", "user", "tenant", "session", "ip")


def _fingerprint(api_key: str) -> str:
    """A stable, non-reversible name for an API key: limits key by it, logs show it."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who runs: read from ``config["metadata"]`` (then ``configurable``) of the run.

    The API key itself is never kept: ``api_key_id`` is a fingerprint of it.
    """

    thread_id: str | None = None
    user: str | None = None
    tenant: str | None = None
    session: str | None = None
    ip: str | None = None
    api_key_id: str | None = None
    access: tuple[str, ...] = ()  # the run's access scope: groups or roles, sorted

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Identity:
        """The identity a run's callback metadata names (LangGraph copies ``configurable`` in).

        ``access`` is a string or a list of groups (a set: order and repeats do
        not matter); cached answers are shared only within one access scope.
        """
        values = {k: _text(metadata.get(k)) for k in _IDENTITY_KEYS}
        key = _text(metadata.get("api_key"))
        return cls(
            **values, api_key_id=_fingerprint(key) if key else None, access=_groups(metadata)
        )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _groups(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    value = metadata.get("access")
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list | tuple | set | frozenset) else [value]
    return tuple(sorted({str(v) for v in items if v is not None and v != ""}))


@dataclass(slots=True)
class Usage:
    """What the run's LLM calls used, counted as their results arrive."""

    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens


@dataclass(slots=True, eq=False)
class RunScope:
    """One run's control record (see the module docstring)."""

    run_id: str
    graph: str
    identity: Identity
    started: float = field(default_factory=time.monotonic)
    deadline: float | None = None  # time.monotonic() value; None: no deadline
    budget_read: bool = False  # whether the run's own budget (configurable) was read
    admission: Mapping[str, Any] | None = None  # what the guard decided for this run
    admitted: Any = None  # the limiter's admission (its token reservations), settled at close
    usage: Usage = field(default_factory=Usage)
    prompt_pins: dict[str, int] = field(default_factory=dict)  # versions the cache keyed on
    variants: dict[str, Any] = field(default_factory=dict)  # flag -> its Assignment, at open
    cache: Any = None  # the cache lookup's record (its key and snapshot), for the store
    outcomes: dict[str, Any] = field(default_factory=dict)  # this run's step outcomes
    ended: RunEnd | None = None
    output: Any = None  # what the run returned, set as it closes after a normal end
    trace_of: Callable[[], str | None] | None = None  # asked until it knows the trace
    _trace_id: str | None = None
    _hooks: list[Callable[[RunScope], object]] = field(default_factory=list)

    @property
    def trace_id(self) -> str | None:
        """The run's trace id (32 hex digits); None without telemetry.

        Asked of ``trace_of`` when first needed, not at open: the scope opens
        before telemetry starts the run's span, so that it closes after the
        steps that run at close have reported theirs, inside the run's span.
        """
        if self._trace_id is None and self.trace_of is not None:
            self._trace_id = self.trace_of()
        return self._trace_id

    @property
    def closed(self) -> bool:
        """Whether the run has ended and its close hooks have run."""
        return self.ended is not None

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds until the deadline (never below 0); None without a deadline."""
        if self.deadline is None:
            return None
        return max(self.deadline - (time.monotonic() if now is None else now), 0.0)

    def on_close(self, hook: Callable[[RunScope], object]) -> None:
        """Run ``hook(scope)`` once when the run ends (at once if it has already ended)."""
        if self.closed:
            self._call(hook)
        else:
            self._hooks.append(hook)

    def close(self, ended: RunEnd, output: Any = None) -> bool:
        """End the run as ``ended`` and run the close hooks; False if it was already closed.

        ``output`` is what a run that ended normally returned (hooks read it as
        ``scope.output``: the answer to store).

        A hook that raises is logged and the others still run: closing must never
        turn a finished run into a failed one, nor skip a settlement.
        """
        if self.closed:
            return False
        self.ended = ended
        self.output = output
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            self._call(hook)
        return True

    def _call(self, hook: Callable[[RunScope], object]) -> None:
        try:
            hook(self)
        except Exception:
            _log.exception("a close hook of run %s failed", self.run_id)
