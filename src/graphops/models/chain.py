"""One call's walk down a resilient model's chain, and what it needs.

:class:`ChainCall` is the state of one call of a
:class:`~graphops.models.resilient.ResilientChatModel`: the run's deadline and the
current provider's share of it, the permits of each provider's breaker, the retry
loop (a first attempt bare, tenacity only once it failed), the per-request
timeouts, and the span events and metrics of retries, fallbacks and breaker
transitions. Kept apart from the model so that the model's module is its API
(links, the four call paths, tools and structured output) and this one its mechanics.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from opentelemetry.trace import Span

from graphops.errors import ProvidersUnavailable
from graphops.models.wrapper import RunManager, scope_of
from graphops.observe import semconv as sc
from graphops.observe.handler import answered_by, llm_span
from graphops.resilience.breaker import CircuitBreaker, Permit, Transition
from graphops.resilience.retry import (
    GiveUpReason,
    RetryEvent,
    aretrying,
    failure_kind,
    retrying,
)
from graphops.resilience.retry_budget import RetryBudget

if TYPE_CHECKING:
    from graphops.models.resilient import ResilientChatModel
    from graphops.observe.metrics import Metrics

__all__ = [
    "PROVIDER_KEY",
    "ChainCall",
    "Link",
    "Reporting",
    "astream_of",
    "mark",
    "stream_of",
    "transitions",
    "unanswered",
    "unavailable",
]

_log = logging.getLogger("graphops.resilience")
_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}
T = TypeVar("T")
PROVIDER_KEY = "graphops_provider"
"""The ``response_metadata`` key naming the link that answered."""
# what each link of a structured-output chain said when it did not answer (see _Fallbacks)
unanswered: contextvars.ContextVar[list[ProvidersUnavailable] | None] = contextvars.ContextVar(
    "graphops_resilientunanswered", default=None
)


class _Skip(Exception):
    """No retry of this provider in this call: its breaker opened between two attempts
    (``outcome="open"``), or too little time is left for one (``"deadline"``).

    Raised ``from None``: its kind is its own ("other", not transient), never that of
    an exception the caller happened to be handling.
    """

    def __init__(self, name: str, outcome: str) -> None:
        super().__init__(f"{name}: {outcome}")
        self.outcome = outcome


@dataclass(frozen=True, eq=False)
class Link:
    """One provider of the chain: its model, its breaker, its retry budget.

    ``kwargs`` are call arguments bound to this link (its tools, as its own
    ``bind_tools`` made them); ``timeout_kwarg`` is the argument its client takes a
    per-request timeout in (``"timeout"`` for OpenAI's), None when it takes none.
    """

    name: str
    model: BaseChatModel
    breaker: CircuitBreaker
    budget: RetryBudget | None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timeout_kwarg: str | None = None


class ChainCall:
    """One call's walk down the chain: its deadline, what each provider did, its telemetry."""

    __slots__ = ("deadline", "metrics", "model", "run_manager", "span", "tried", "until")

    def __init__(self, model: ResilientChatModel, run_manager: RunManager | None) -> None:
        self.model = model
        scope = scope_of(run_manager)
        self.deadline = scope.deadline if scope is not None else None
        self.until = self.deadline  # the deadline of the provider being tried
        self.run_manager = run_manager
        self.span = llm_span(run_manager)
        self.metrics: Metrics | None = _metrics(model)
        self.tried: list[tuple[str, str]] = []

    # ---------------------------------------------------------------- time
    def left(self) -> float | None:
        return None if self.until is None else self.until - time.monotonic()

    def begin(self, link: Link) -> None:
        """Start on ``link``: with providers behind it, it gets ``fallback_share`` of the time
        left, so one that hangs until its timeout still leaves them the rest."""
        self.until = self.deadline
        share = self.model.fallback_share
        if self.deadline is None or share >= 1 or link is self.model.links[-1]:
            return
        now = time.monotonic()
        self.until = now + max(self.deadline - now, 0.0) * share

    def left_for_retry(self) -> float | None:
        """What the retry loop may sleep through: the time left less one ``min_attempt_s``,
        so that no retry starts with less than that left."""
        left = self.left()
        return None if left is None else left - self.model.min_attempt_s

    def arguments(self, link: Link, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        arguments = {**link.kwargs, **kwargs}
        left = self.left()
        if link.timeout_kwarg is not None and left is not None:
            given = arguments.get(link.timeout_kwarg)
            if given is None:  # the client's own timeout, which the call's would replace
                given = getattr(getattr(link.model, "inner", link.model), "request_timeout", None)
            arguments[link.timeout_kwarg] = _capped(given, max(left, 0.001))
        return arguments

    def cancel_at_deadline(self) -> Any:
        """A cancel scope ending at the deadline; its expiry raises ``TimeoutError``."""
        left = self.left()
        return anyio.fail_after(max(left, 0.0)) if left is not None else _NO_LIMIT

    # ---------------------------------------------------------------- permits
    def first_permit(self, link: Link) -> Permit | None:
        self.begin(link)
        if self._no_time(link):
            return None
        with Reporting(self.span):
            permit = link.breaker.permit()
        if permit is None:
            self._fell_back(link, "open", "open")
        return permit

    async def afirst_permit(self, link: Link) -> Permit | None:
        self.begin(link)
        if self._no_time(link):
            return None
        with Reporting(self.span):
            permit = await link.breaker.apermit()
        if permit is None:
            self._fell_back(link, "open", "open")
        return permit

    def permit_again(self, link: Link) -> Permit:
        """A retry's permit, or :class:`_Skip` (the breaker opened, or the time is too short)."""
        if self._short_of_time():
            raise _Skip(link.name, "deadline") from None
        with Reporting(self.span):
            got = link.breaker.permit()
        if got is None:
            raise _Skip(link.name, "open") from None
        return got

    async def apermit_again(self, link: Link) -> Permit:
        if self._short_of_time():
            raise _Skip(link.name, "deadline") from None
        with Reporting(self.span):
            got = await link.breaker.apermit()
        if got is None:
            raise _Skip(link.name, "open") from None
        return got

    # ---------------------------------------------------------------- attempts
    def attempts(self, link: Link, permit: Permit, attempt: Callable[[Permit], T]) -> T:
        """``attempt(permit)``, then, if it failed, retried by a tenacity controller.

        The first attempt runs bare: the controller is built only once it has failed,
        and that failure is replayed to it as its own first attempt, so its retry, wait
        and stop decide as if it had made the call, and its first-attempt hook pays the
        retry budget's deposit. A call that succeeds at once (or is cancelled) deposits
        here instead: one deposit per call, either way. Retries run outside this
        ``except``, so a retry's error never gets the first one as its ``__context__``
        (which :func:`~graphops.resilience.retry.failure_kind` would read).
        """
        try:
            result = attempt(permit)
        except Exception as exc:
            failure: Exception = exc
        except BaseException:
            _deposit(link)
            raise
        else:
            _deposit(link)
            return result
        replay = [failure]

        def again() -> T:
            if replay:
                raise replay.pop()
            return attempt(self.permit_again(link))

        controller = retrying(self.model.retry, **self.retry_options(link))
        return controller(again)

    async def aattempts(
        self, link: Link, permit: Permit, attempt: Callable[[Permit], Awaitable[T]]
    ) -> T:
        """:meth:`attempts` for async attempts."""
        try:
            result = await attempt(permit)
        except Exception as exc:
            failure: Exception = exc
        except BaseException:
            _deposit(link)
            raise
        else:
            _deposit(link)
            return result
        replay = [failure]

        async def again() -> T:
            if replay:
                raise replay.pop()
            return await attempt(await self.apermit_again(link))

        controller = aretrying(self.model.retry, **self.retry_options(link))
        return await controller(again)

    def _short_of_time(self) -> bool:
        """Whether less than ``min_attempt_s`` is left: too little to start an attempt in."""
        left = self.left()
        return left is not None and left < self.model.min_attempt_s

    def _no_time(self, link: Link) -> bool:
        if self._short_of_time():
            self.tried.append((link.name, "deadline"))
            return True
        return False

    def _fell_back(
        self, link: Link, outcome: str, reason: str, error_type: str | None = None
    ) -> None:
        """``link`` did not answer (``outcome``); count and show the hand-over to the next."""
        self.tried.append((link.name, outcome))
        index = self.model.links.index(link)
        if index + 1 == len(self.model.links):
            return
        to = self.model.links[index + 1].name
        if self.metrics is not None:
            self.metrics.llm_fallbacks.labels(link.name, to, reason).inc()
        event = {"from": link.name, "to": to, "reason": reason}
        if error_type is not None:
            event["error.type"] = error_type
        self.span.add_event(sc.FALLBACK_EVENT, event)

    # ---------------------------------------------------------------- outcomes
    def succeeded(self, link: Link, permit: Permit, started: float) -> None:
        with Reporting(self.span):
            link.breaker.record(permit, ok=True, duration_s=time.monotonic() - started)

    async def asucceeded(self, link: Link, permit: Permit, started: float) -> None:
        with Reporting(self.span):
            await link.breaker.arecord(permit, ok=True, duration_s=time.monotonic() - started)

    def failed(self, link: Link, permit: Permit, exc: BaseException, started: float) -> None:
        with Reporting(self.span):
            if _says_nothing(exc):
                link.breaker.release(permit)
            else:
                link.breaker.record(permit, ok=False, duration_s=time.monotonic() - started)

    async def afailed(self, link: Link, permit: Permit, exc: BaseException, started: float) -> None:
        with anyio.CancelScope(shield=True), Reporting(self.span):
            if _says_nothing(exc):
                await link.breaker.arelease(permit)
            else:
                await link.breaker.arecord(permit, ok=False, duration_s=time.monotonic() - started)

    def retry_options(self, link: Link) -> dict[str, Any]:
        def on_retry(event: RetryEvent) -> None:
            if self.metrics is not None:
                self.metrics.llm_retries.labels(link.name, "retried").inc()
            self.span.add_event(
                sc.RETRY_LLM_EVENT,
                {
                    sc.ANSWERED_BY: link.name,
                    "attempt": event.attempt,
                    "error.type": type(event.exception).__name__,
                    "sleep_s": round(event.sleep_s, 3),
                },
            )

        def on_give_up(reason: GiveUpReason, exc: BaseException) -> None:
            if reason in ("budget", "deadline") and self.metrics is not None:
                self.metrics.llm_retries.labels(link.name, reason).inc()

        return {
            "time_left": self.left_for_retry,
            "budget": link.budget,
            "on_retry": on_retry,
            "on_give_up": on_give_up,
        }

    def gave_up(self, link: Link, exc: Exception) -> None:
        """``link`` failed for good: raise what no provider would take, else note it."""
        kind = failure_kind(exc)
        if kind == "input":
            raise exc
        if isinstance(exc, _Skip):
            self._fell_back(link, exc.outcome, exc.outcome, exc.outcome)
        else:
            # the label is the kind of failure (server, timeout, rate_limited, ...): few values
            self._fell_back(link, type(exc).__name__, kind, type(exc).__name__)

    def answered(self, link: Link, result: ChatResult | None) -> ChatResult:
        self.span.set_attribute(sc.ANSWERED_BY, link.name)
        if link is not self.model.links[0]:  # the span named the first: name who answered
            answered_by(self.run_manager, link.model)
        if result is None:
            return ChatResult(generations=[])
        for generation in result.generations:
            mark(generation.message, link.name)
        result.llm_output = {**(result.llm_output or {}), PROVIDER_KEY: link.name}
        return result

    def unavailable(self) -> ProvidersUnavailable:
        error = unavailable(tuple(self.tried))
        heard = unanswered.get()
        if heard is not None:  # a link of a structured-output chain: the chain says it all
            heard.append(error)
        return error


def unavailable(tried: tuple[tuple[str, str], ...]) -> ProvidersUnavailable:
    said = ", ".join(f"{name}: {outcome}" for name, outcome in tried)
    return ProvidersUnavailable(f"no provider answered ({said})", tried)


class _NoLimit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LIMIT = _NoLimit()


def _deposit(link: Link) -> None:
    if link.budget is not None:
        link.budget.deposit()


def _capped(given: Any, limit: float) -> Any:
    """A per-request timeout: ``given`` (seconds, or an ``httpx.Timeout``) cut to ``limit``."""
    if isinstance(given, int | float) and not isinstance(given, bool):
        return min(given, limit)
    import httpx

    if isinstance(given, httpx.Timeout):
        return httpx.Timeout(
            connect=_at_most(given.connect, limit),
            read=_at_most(given.read, limit),
            write=_at_most(given.write, limit),
            pool=_at_most(given.pool, limit),
        )
    return limit


def _at_most(value: float | None, limit: float) -> float:
    return limit if value is None else min(value, limit)


def _says_nothing(exc: BaseException) -> bool:
    """A cancellation, or a request no provider would take: not the provider's failure."""
    if not isinstance(exc, Exception):
        return True
    return failure_kind(exc) == "input"


def mark(message: BaseMessage, name: str) -> None:
    message.response_metadata = {**message.response_metadata, PROVIDER_KEY: name}


def stream_of(
    link: Link,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: CallbackManagerForLLMRun | None,
    arguments: dict[str, Any],
) -> Iterator[ChatGenerationChunk]:
    model = link.model
    if type(model)._stream is BaseChatModel._stream:  # no streaming: one chunk of the answer
        result = model._generate(messages, stop=stop, run_manager=run_manager, **arguments)
        for generation in result.generations:
            yield ChatGenerationChunk(message=_as_chunk(generation.message))
        return
    yield from model._stream(messages, stop=stop, run_manager=run_manager, **arguments)


async def astream_of(
    link: Link,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: AsyncCallbackManagerForLLMRun | None,
    arguments: dict[str, Any],
) -> AsyncIterator[ChatGenerationChunk]:
    model = link.model
    if (
        type(model)._astream is BaseChatModel._astream
        and type(model)._stream is BaseChatModel._stream
    ):
        result = await model._agenerate(messages, stop=stop, run_manager=run_manager, **arguments)
        for generation in result.generations:
            yield ChatGenerationChunk(message=_as_chunk(generation.message))
        return
    async for chunk in model._astream(messages, stop=stop, run_manager=run_manager, **arguments):
        yield chunk


def _as_chunk(message: BaseMessage) -> Any:
    from langchain_core.messages import AIMessageChunk

    return AIMessageChunk(
        content=message.content,
        response_metadata=message.response_metadata,
        usage_metadata=getattr(message, "usage_metadata", None),
        tool_calls=getattr(message, "tool_calls", []),
        id=message.id,
    )


def _metrics(model: ResilientChatModel) -> Metrics | None:
    if model.metrics is not None:
        return model.metrics  # type: ignore[no-any-return]
    from graphops.observe.metrics import default_metrics

    return default_metrics()


_reporting_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "graphops_breaker_span", default=None
)


class Reporting:
    """While a breaker is asked or told, the LLM span its transitions are events on.

    Set around each breaker call, not for a whole call: a stream's generator would
    leak the value into its consumer between chunks.
    """

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> None:
        self._token = _reporting_span.set(self._span)

    def __exit__(self, *exc: object) -> None:
        _reporting_span.reset(self._token)


def transitions(metrics: Metrics | None) -> Callable[[Transition], None]:
    """What a breaker transition does: gauge, counter, log line, and an event on the call's span."""

    def seen(change: Transition) -> None:
        chosen = metrics
        if chosen is None:
            from graphops.observe.metrics import default_metrics

            chosen = default_metrics()
        chosen.breaker_state.labels(change.name).set(_STATE_VALUE[change.to_state])
        chosen.breaker_transitions.labels(change.name, change.from_state, change.to_state).inc()
        span = _reporting_span.get()
        if span is not None:
            span.add_event(
                sc.BREAKER_EVENT,
                {
                    sc.BREAKER_STATE: change.to_state,
                    "from_state": change.from_state,
                    "provider": change.name,
                    "reason": change.reason,
                    "failure_rate": change.failure_rate,
                    "slow_rate": change.slow_rate,
                },
            )
        log = _log.warning if change.to_state == "open" else _log.info
        log(
            "circuit breaker %s: %s -> %s (%s; failure rate %.2f, slow rate %.2f)",
            change.name,
            change.from_state,
            change.to_state,
            change.reason,
            change.failure_rate,
            change.slow_rate,
        )

    return seen
