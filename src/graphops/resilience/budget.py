"""One deadline per run, and a time limit per node attempt that never outlasts it.

Why not only LangGraph's ``timeout=``: a ``TimeoutPolicy`` is fixed when the graph
compiles, so it cannot shrink to what is left of *this* run's deadline, and LangGraph
refuses it on sync nodes ("Node timeouts are only supported for async nodes"). So
each node of an observed graph with a budget runs inside :func:`budgeted`, which
gives every attempt ``min(stage limit, time left)`` and stops it there the way
LangGraph's own timeout does:

* an **async** node is cancelled (asyncio cancellation, through an anyio cancel
  scope), so its HTTP request is abandoned with it;
* a **sync** node runs in one of graphops' daemon worker threads, and the run stops
  waiting for it at the limit. Python cannot kill a thread: the node's code runs on
  until it returns by itself (its result is dropped, its writes never happen), so a
  node that never returns keeps one idle-looking thread. The *run* still ends on time.

Either way the attempt raises :class:`~graphops.errors.BudgetExhausted`, inside the
node's run, so the node's span, LangGraph's error handlers (the degradation ladder)
and ``graphops_budget_exhausted_total{node}`` all see it. A run's deadline is set
when its scope opens (:class:`~graphops.runtime.RunScope`), per run: a resumed or
forked run has a fresh one; a run's own ``timeout_s`` (``metadata`` or
``configurable``) replaces the default. ``reserve_s`` of it is kept back for the degradation
ladder, so a run that degrades still answers by its deadline. LLM calls read the
same deadline (the resilient model sizes each request's timeout and every retry by it).

A user's own ``timeout=`` on a node stays as it is, inside graphops' limit.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
from langchain_core.runnables import Runnable, RunnableConfig

from graphops._compat.langgraph import node_body, plain_node, with_body
from graphops.errors import BudgetExhausted, ConfigurationError, InvalidInputError
from graphops.observe import semconv as sc
from graphops.observe.handler import node_span
from graphops.runtime import RunScope, run_scope

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["BudgetPolicy", "attempt_limit", "budgeted"]


@dataclass(frozen=True)
class BudgetPolicy:
    """How long a run may take: ``total_s``, or the run's own ``timeout_s``.

    A run may ask for its own budget with ``config["configurable"][override_key]``
    (seconds, above 0 and at most ``max_total_s``): what the HTTP service passes as
    the request's ``timeout_s``; ``config["metadata"]`` works too. Nodes stop
    ``reserve_s`` before the deadline, which leaves the degradation ladder that long
    to answer. Stage limits per node are ``NodeOps(timeout=…)``.

    ``sync_nodes="thread"`` runs a sync node with a limit in a worker thread so that
    a run invoked synchronously ends on time even when the node hangs; each such
    attempt costs one thread handoff (tens of microseconds; docs/resilience.md has the
    measured cost). ``"inline"`` runs it in the calling thread: the limit is checked
    before each attempt, but a sync node that hangs holds a sync run past its deadline
    (async runs, and async nodes, are cut off either way).
    """

    total_s: float = 60.0
    reserve_s: float = 0.5
    override_key: str = "timeout_s"
    max_total_s: float = 3600.0
    sync_nodes: Literal["thread", "inline"] = "thread"

    def __post_init__(self) -> None:
        for name in ("total_s", "max_total_s"):
            _seconds(name, getattr(self, name), 0.0)
        _seconds("reserve_s", self.reserve_s, None)
        if self.total_s > self.max_total_s:
            raise ConfigurationError(
                f"BudgetPolicy.total_s ({self.total_s}) is above max_total_s ({self.max_total_s})"
            )
        if not isinstance(self.override_key, str) or not self.override_key:
            raise ConfigurationError("BudgetPolicy.override_key must name a configurable key")
        if self.sync_nodes not in ("thread", "inline"):
            raise ConfigurationError(
                f"BudgetPolicy.sync_nodes is {self.sync_nodes!r}: give 'thread' or 'inline'"
            )

    def total_for(self, metadata: Mapping[str, Any]) -> float:
        """The run's budget: its own ``override_key`` value when it gives one, else ``total_s``.

        A bad value is an :class:`~graphops.errors.InvalidInputError`: the run fails at
        its start with the reason, rather than running with a budget nobody asked for.
        """
        value = metadata.get(self.override_key)
        if value is None:
            return self.total_s
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= self.max_total_s
        ):
            raise InvalidInputError(
                f"{self.override_key}={metadata.get(self.override_key)!r}: give the run's time "
                f"budget in seconds, above 0 and at most {self.max_total_s}"
            )
        return float(value)

    def deadline_for(self, started: float, metadata: Mapping[str, Any]) -> float:
        """When the run's nodes must stop (``time.monotonic()``): its budget less the reserve."""
        total = self.total_for(metadata)
        return started + max(total - self.reserve_s, total / 2)


def _seconds(name: str, value: object, above: float | None) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and above is not None:
        ok = value > above  # type: ignore[operator]
    elif ok:
        ok = value >= 0  # type: ignore[operator]
    if not ok:
        least = f"above {above}" if above is not None else "at least 0"
        raise ConfigurationError(f"BudgetPolicy.{name} is {value!r}: give seconds, {least}")


def attempt_limit(scope: RunScope | None, stage_s: float | None) -> tuple[float, str] | None:
    """What one node attempt may take, and which limit that is (``"run"`` or ``"stage"``)."""
    return _limit(scope.time_left() if scope is not None else None, stage_s)


def _limit(left: float | None, stage_s: float | None) -> tuple[float, str] | None:
    if left is None:
        return None if stage_s is None else (stage_s, "stage")
    if stage_s is not None and stage_s < left:
        return stage_s, "stage"
    return left, "run"


class _Workers:
    """Daemon threads for sync nodes under a limit, reused while idle.

    Daemon threads, not a ``ThreadPoolExecutor``: its threads are joined at exit, so a
    node that never returns would keep the process from exiting.
    """

    def __init__(self, idle_s: float = 60.0) -> None:
        self._idle: list[queue.SimpleQueue[Callable[[], None] | None]] = []
        self._lock = threading.Lock()
        self._idle_s = idle_s

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        context = contextvars.copy_context()  # the run's config and OTel context go along

        def task() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(context.run(call))
            except BaseException as exc:
                future.set_exception(exc)

        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(inbox,), name="graphops-node", daemon=True
            ).start()
        inbox.put(task)
        return future

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        while True:
            try:
                task = inbox.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:
                        self._idle.remove(inbox)
                        return
                continue  # handed a task as it timed out: take it
            if task is None:
                return
            task()
            with self._lock:
                self._idle.append(inbox)


_workers = _Workers()


def read_budget(scope: RunScope, policy: BudgetPolicy, config: RunnableConfig) -> None:
    """Set the run's deadline from its own ``configurable[override_key]``, once per run.

    The scope opens from callback metadata, which carries no ``configurable`` (LangGraph
    copies only its own keys there), so a budget given in ``configurable`` is read from
    the first node's config.
    """
    if scope.budget_read:
        return
    scope.budget_read = True
    configurable = config.get("configurable") or {}
    if policy.override_key in configurable:
        scope.deadline = policy.deadline_for(scope.started, configurable)


def budgeted(
    node: str,
    runnable: Runnable[Any, Any],
    *,
    stage_s: float | None,
    policy: BudgetPolicy | None,
    graph: str,
    metrics: Metrics | None,
) -> Runnable[Any, Any]:
    """``runnable`` (a node's body) held to ``min(stage_s, the run's time left)`` per attempt."""

    def limit_of(config: RunnableConfig) -> tuple[float, str] | None:
        scope = run_scope(config)
        if scope is not None and policy is not None:
            read_budget(scope, policy, config)
        left = scope.time_left() if scope is not None else None
        limit = _limit(left, stage_s)
        if limit is None:
            return None
        span = node_span(config)
        if left is not None:
            span.set_attribute(sc.BUDGET_LEFT, round(left, 3))
        span.set_attribute(sc.BUDGET_LIMIT, round(limit[0], 3))
        if limit[0] <= 0:
            raise exhausted(config, *limit)
        return limit

    def exhausted(config: RunnableConfig, limit_s: float, kind: str) -> BudgetExhausted:
        if metrics is not None:
            metrics.budget_exhausted.labels(graph, node).inc()
        node_span(config).add_event(
            sc.BUDGET_EXHAUSTED_EVENT, {"kind": kind, sc.BUDGET_LIMIT: round(limit_s, 3)}
        )
        return BudgetExhausted(node, kind, limit_s)

    body = node_body(runnable)
    if body is None:  # a runnable of its own (a chain, a model): its invoke is the body
        runnable = _as_plain_node(node, runnable)
        body = node_body(runnable)
        assert body is not None
    func, afunc, takes_config = body
    is_async = func is None or (afunc is not None and not isinstance(afunc, functools.partial))
    inline = policy is not None and policy.sync_nodes == "inline"

    def run(state: Any, **kwargs: Any) -> Any:
        config = kwargs["config"] if takes_config else kwargs.pop("config")
        limit = limit_of(config)
        assert func is not None  # LangGraph calls the sync body only when there is one
        if limit is None or inline:
            return func(state, **kwargs)
        future = _workers.submit(lambda: func(state, **kwargs))
        try:
            return future.result(timeout=limit[0])
        except TimeoutError:
            raise exhausted(config, *limit) from None

    async def arun(state: Any, **kwargs: Any) -> Any:
        config = kwargs["config"] if takes_config else kwargs.pop("config")
        limit = limit_of(config)
        if limit is None:
            assert afunc is not None
            return await afunc(state, **kwargs)
        with anyio.move_on_after(limit[0]) as scope:
            if is_async:
                assert afunc is not None
                return await afunc(state, **kwargs)
            assert func is not None
            return await asyncio.wrap_future(_workers.submit(lambda: func(state, **kwargs)))
        if scope.cancelled_caught:
            raise exhausted(config, *limit)
        raise AssertionError("unreachable: the cancel scope returned without a result")

    return with_body(runnable, run if func is not None else None, arun)


def _as_plain_node(node: str, runnable: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """A node that is a runnable of its own, as a plain node calling it (async on ainvoke)."""

    def invoke(state: Any, config: RunnableConfig) -> Any:
        return runnable.invoke(state, config)

    async def ainvoke(state: Any, config: RunnableConfig) -> Any:
        return await runnable.ainvoke(state, config)

    return plain_node(node, invoke, ainvoke)
