"""A chat model over a chain of providers: retries, circuit breakers, fallbacks, one deadline.

Why one model and not LangChain's ``with_fallbacks``: that returns a
``RunnableWithFallbacks``, which is no ``BaseChatModel`` (no ``bind_tools``, no
``with_structured_output``, no model attributes telemetry reads), knows nothing of
the run's deadline, and retries nothing. :class:`ResilientChatModel` is a
``BaseChatModel``; each call (``invoke``, ``stream``, each ``batch`` item, their
async twins) goes down its chain of :class:`Link` s:

* a provider whose circuit breaker is open is skipped
  (:mod:`graphops.resilience.breaker`, shared through Redis when its store is);
* a provider is called with retries on transient errors only (timeouts, connection
  errors, 429, 5xx), full-jitter exponential backoff and ``Retry-After``, capped by
  a retry budget per provider (:mod:`graphops.resilience.retry`); the inner clients
  are built with ``max_retries=0``, so this is the one retry loop;
* every attempt first checks the run's time left (``RunScope.deadline``): none is
  started with less than ``min_attempt_s`` left, no retry sleeps into that last
  ``min_attempt_s``, the request's own HTTP timeout (``timeout_kwarg``) is the time
  left or the client's own timeout if that is shorter, and an async attempt is
  cancelled at the deadline whatever the client does;
* while providers wait behind it, a provider gets at most ``fallback_share`` (half)
  of the time left, retries included, so one that hangs still leaves the next
  provider the rest;
* a provider that still fails hands the call to the next; an error that says the
  *request* is wrong (400, 413, 422) is raised at once, since no provider would
  take it. When none answers: :class:`~graphops.errors.ProvidersUnavailable`.

A stream falls back only until its first chunk: after that the answer is the
provider's that began it. The answer names who gave it
(``response_metadata["graphops_provider"]`` and ``graphops.llm.provider`` on the
LLM span; ``gen_ai.provider.name`` there names the chain's first provider, the one
the call was made to). Retries, fallbacks and breaker transitions are span events
and metrics (``graphops_llm_retries_total``, ``graphops_llm_fallbacks_total``,
``graphops_breaker_state``, ``graphops_breaker_transitions_total``).

Tools and structured output go through the chain: ``bind_tools`` binds each link's
model its own way and keeps one ``ResilientChatModel``; ``with_structured_output``
builds each link's own structured runnable (their parsers differ by provider) over
a one-link resilient model, chained as fallbacks on ``ProvidersUnavailable``.
"""

from __future__ import annotations

import contextvars
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from langchain_core.tools import BaseTool
from opentelemetry.trace import Span
from pydantic import BaseModel, ConfigDict, model_validator

from graphops.errors import ConfigurationError, ProvidersUnavailable, UserError
from graphops.models.wrapper import RunManager, replace_model, scope_of
from graphops.observe import semconv as sc
from graphops.observe.handler import llm_span
from graphops.resilience.breaker import BreakerPolicy, CircuitBreaker, Permit, Transition
from graphops.resilience.breaker_store import BreakerStore
from graphops.resilience.retry import (
    GiveUpReason,
    RetryEvent,
    RetryPolicy,
    aretrying,
    failure_kind,
    retrying,
)
from graphops.resilience.retry_budget import RetryBudget

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["Link", "ResilientChatModel", "resilient_chat"]

_log = logging.getLogger("graphops.resilience")
_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}
# what each link of a structured-output chain said when it did not answer (see _Fallbacks)
_unanswered: contextvars.ContextVar[list[ProvidersUnavailable] | None] = contextvars.ContextVar(
    "graphops_resilient_unanswered", default=None
)
T = TypeVar("T")
PROVIDER_KEY = "graphops_provider"
"""The ``response_metadata`` key naming the link that answered."""


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


class ResilientChatModel(BaseChatModel):
    """A ``BaseChatModel`` over ``links``, tried in order (see the module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    links: tuple[Link, ...]
    retry: RetryPolicy = RetryPolicy()
    min_attempt_s: float = 0.05
    fallback_share: float = 0.5
    metrics: Any = None  # graphops.observe.metrics.Metrics; None: the process's

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        links = data.get("links")
        if not isinstance(links, tuple | list) or not links:
            raise ConfigurationError("ResilientChatModel.links: give at least one Link")
        for link in links:
            if not isinstance(link, Link) or not isinstance(link.model, BaseChatModel):
                raise ConfigurationError(f"ResilientChatModel.links holds {link!r}, not a Link")
        names = [link.name for link in links]
        if len(set(names)) != len(names):
            raise ConfigurationError(
                f"ResilientChatModel.links {names}: give each link its own name"
            )
        if "retry" in data and not isinstance(data["retry"], RetryPolicy):
            raise ConfigurationError("ResilientChatModel.retry takes a RetryPolicy")
        least = data.get("min_attempt_s", 0.0)
        if (
            isinstance(least, bool)
            or not isinstance(least, int | float)
            or not math.isfinite(least)
            or least < 0
        ):
            raise ConfigurationError(
                f"ResilientChatModel.min_attempt_s is {least!r}: give seconds, 0 or more, "
                "the least time left worth starting an attempt in"
            )
        share = data.get("fallback_share", 0.5)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise ConfigurationError(
                f"ResilientChatModel.fallback_share is {share!r}: give the share of the time "
                "left one provider may use while others wait behind it, above 0 and at most 1"
            )
        if data.get("metrics") is not None:
            from graphops.observe.metrics import Metrics

            if not isinstance(data["metrics"], Metrics):
                raise ConfigurationError(
                    "ResilientChatModel.metrics takes graphops.observe.metrics.Metrics or None, "
                    f"not {type(data['metrics']).__name__}"
                )
        primary = links[0].model
        # the primary's settings (callbacks, tags, cache, rate limiter, ...) are the chain's
        return {**{n: getattr(primary, n) for n in BaseChatModel.model_fields}, **data}

    # ------------------------------------------------------------ what telemetry reads
    @property
    def _llm_type(self) -> str:
        return self.links[0].model._llm_type

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return self.links[0].model._identifying_params

    @property
    def model_name(self) -> str:
        """The first provider's model name."""
        name = getattr(self.links[0].model, "model_name", None)
        return name if isinstance(name, str) else self.links[0].name

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.links[0].model._get_ls_params(stop=stop, **kwargs)

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return self.links[0].model._get_invocation_params(stop=stop, **kwargs)

    def _should_stream(
        self, *, async_api: bool, run_manager: RunManager | None = None, **kwargs: Any
    ) -> bool:
        return self.links[0].model._should_stream(
            async_api=async_api, run_manager=run_manager, **kwargs
        )

    # ------------------------------------------------------------ the chain, sync
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = _Call(self, run_manager)
        for index, link in enumerate(self.links):
            permit = call.first_permit(link)
            if permit is None:
                continue

            def attempt(got: Permit, link: Link = link) -> ChatResult:
                started = time.monotonic()
                try:
                    result = link.model._generate(
                        messages, stop=stop, run_manager=run_manager, **call.arguments(link, kwargs)
                    )
                except BaseException as exc:
                    call.failed(link, got, exc, started)
                    raise
                with _Reporting(call.span):
                    link.breaker.record(got, ok=True, duration_s=time.monotonic() - started)
                return result

            try:
                result = call.attempts(link, permit, attempt)
            except Exception as exc:
                call.gave_up(index, link, exc)
                continue
            return call.answered(link, result)
        raise call.unavailable()

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = _Call(self, run_manager)
        for index, link in enumerate(self.links):
            permit = call.first_permit(link)
            if permit is None:
                continue

            def opening(
                got: Permit, link: Link = link
            ) -> tuple[Permit, float, Iterator[ChatGenerationChunk], ChatGenerationChunk | None]:
                started = time.monotonic()
                try:
                    chunks = _chunks(
                        link, messages, stop, run_manager, call.arguments(link, kwargs)
                    )
                    return got, started, chunks, next(chunks, None)
                except BaseException as exc:
                    call.failed(link, got, exc, started)
                    raise

            try:
                got, started, chunks, first = call.attempts(link, permit, opening)
            except Exception as exc:
                call.gave_up(index, link, exc)
                continue
            call.answered(link, None)
            try:
                if first is not None:
                    _mark(first.message, link.name)
                    yield first
                    yield from chunks
            except BaseException as exc:  # mid-stream: no fallback, the stream is this provider's
                call.failed(link, got, exc, started)
                raise
            with _Reporting(call.span):
                link.breaker.record(got, ok=True, duration_s=time.monotonic() - started)
            return
        raise call.unavailable()

    # ------------------------------------------------------------ the chain, async
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = _Call(self, run_manager)
        for index, link in enumerate(self.links):
            permit = await call.afirst_permit(link)
            if permit is None:
                continue

            async def attempt(got: Permit, link: Link = link) -> ChatResult:
                started = time.monotonic()
                try:
                    with call.cancel_at_deadline():
                        result = await link.model._agenerate(
                            messages,
                            stop=stop,
                            run_manager=run_manager,
                            **call.arguments(link, kwargs),
                        )
                except BaseException as exc:
                    await call.afailed(link, got, exc, started)
                    raise
                with _Reporting(call.span):
                    await link.breaker.arecord(got, ok=True, duration_s=time.monotonic() - started)
                return result

            try:
                result = await call.aattempts(link, permit, attempt)
            except Exception as exc:
                call.gave_up(index, link, exc)
                continue
            return call.answered(link, result)
        raise call.unavailable()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = _Call(self, run_manager)
        for index, link in enumerate(self.links):
            permit = await call.afirst_permit(link)
            if permit is None:
                continue

            async def opening(
                got: Permit, link: Link = link
            ) -> tuple[Permit, float, AsyncIterator[ChatGenerationChunk], Any]:
                started = time.monotonic()
                try:
                    chunks = _achunks(
                        link, messages, stop, run_manager, call.arguments(link, kwargs)
                    )
                    with call.cancel_at_deadline():
                        first = await anext(chunks, None)
                    return got, started, chunks, first
                except BaseException as exc:
                    await call.afailed(link, got, exc, started)
                    raise

            try:
                got, started, chunks, first = await call.aattempts(link, permit, opening)
            except Exception as exc:
                call.gave_up(index, link, exc)
                continue
            call.answered(link, None)
            try:
                if first is not None:
                    _mark(first.message, link.name)
                    yield first
                    async for chunk in chunks:
                        yield chunk
            except BaseException as exc:
                await call.afailed(link, got, exc, started)
                raise
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
            with _Reporting(call.span):
                await link.breaker.arecord(got, ok=True, duration_s=time.monotonic() - started)
            return
        raise call.unavailable()

    # ------------------------------------------------------------ tools and structured output
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        links = []
        for link in self.links:
            bound = link.model.bind_tools(tools, **kwargs)
            if not isinstance(bound, RunnableBinding) or not isinstance(bound.bound, BaseChatModel):
                raise UserError(
                    f"{type(link.model).__name__}.bind_tools returned a {type(bound).__name__}, "
                    "not a binding of the model: bind tools to that link's model yourself"
                )
            links.append(replace(link, model=bound.bound, kwargs={**link.kwargs, **bound.kwargs}))
        return self.model_copy(update={"links": tuple(links)})

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        chain: list[Runnable[Any, Any]] = []
        for link in self.links:
            made = link.model.with_structured_output(schema, include_raw=include_raw, **kwargs)
            alone = self.model_copy(update={"links": (link,)})
            rebuilt, found = replace_model(made, link.model, alone)
            if not found:
                raise UserError(
                    f"{type(link.model).__name__}.with_structured_output returned a runnable "
                    "that does not call the model itself, so the chain cannot apply to it"
                )
            chain.append(rebuilt)
        if len(chain) == 1:
            return chain[0]
        return _Fallbacks(
            runnable=chain[0], fallbacks=chain[1:], exceptions_to_handle=(ProvidersUnavailable,)
        )


class _Call:
    """One call's walk down the chain: its deadline, what each provider did, its telemetry."""

    __slots__ = ("deadline", "metrics", "model", "span", "tried", "until")

    def __init__(self, model: ResilientChatModel, run_manager: RunManager | None) -> None:
        self.model = model
        scope = scope_of(run_manager)
        self.deadline = scope.deadline if scope is not None else None
        self.until = self.deadline  # the deadline of the provider being tried
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
        with _Reporting(self.span):
            permit = link.breaker.permit()
        if permit is None:
            self._skip(link, "open")
        return permit

    async def afirst_permit(self, link: Link) -> Permit | None:
        self.begin(link)
        if self._no_time(link):
            return None
        with _Reporting(self.span):
            permit = await link.breaker.apermit()
        if permit is None:
            self._skip(link, "open")
        return permit

    def permit_again(self, link: Link) -> Permit:
        """A retry's permit, or :class:`_Skip` (the breaker opened, or the time is too short)."""
        left = self.left()
        if left is not None and left < self.model.min_attempt_s:
            raise _Skip(link.name, "deadline") from None
        with _Reporting(self.span):
            got = link.breaker.permit()
        if got is None:
            raise _Skip(link.name, "open") from None
        return got

    async def apermit_again(self, link: Link) -> Permit:
        left = self.left()
        if left is not None and left < self.model.min_attempt_s:
            raise _Skip(link.name, "deadline") from None
        with _Reporting(self.span):
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

    def _no_time(self, link: Link) -> bool:
        left = self.left()
        if left is not None and left < self.model.min_attempt_s:
            self.tried.append((link.name, "deadline"))
            return True
        return False

    def _skip(self, link: Link, outcome: str) -> None:
        self.tried.append((link.name, outcome))
        index = self.model.links.index(link)
        if index + 1 < len(self.model.links):
            to = self.model.links[index + 1].name
            if self.metrics is not None:
                self.metrics.llm_fallbacks.labels(link.name, to, outcome).inc()
            self.span.add_event(sc.FALLBACK_EVENT, {"from": link.name, "to": to, "reason": outcome})

    # ---------------------------------------------------------------- outcomes
    def failed(self, link: Link, permit: Permit, exc: BaseException, started: float) -> None:
        with _Reporting(self.span):
            if _says_nothing(exc):
                link.breaker.release(permit)
            else:
                link.breaker.record(permit, ok=False, duration_s=time.monotonic() - started)

    async def afailed(self, link: Link, permit: Permit, exc: BaseException, started: float) -> None:
        with anyio.CancelScope(shield=True), _Reporting(self.span):
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

    def gave_up(self, index: int, link: Link, exc: Exception) -> None:
        """``link`` failed for good: raise what no provider would take, else note it."""
        if failure_kind(exc) == "input":
            raise exc
        outcome = exc.outcome if isinstance(exc, _Skip) else type(exc).__name__
        self.tried.append((link.name, outcome))
        after = self.model.links[index + 1 :]
        if after:
            to = after[0].name
            if self.metrics is not None:
                self.metrics.llm_fallbacks.labels(link.name, to, outcome).inc()
            self.span.add_event(sc.FALLBACK_EVENT, {"from": link.name, "to": to, "reason": outcome})

    def answered(self, link: Link, result: ChatResult | None) -> ChatResult:
        self.span.set_attribute(sc.ANSWERED_BY, link.name)
        if result is None:
            return ChatResult(generations=[])
        for generation in result.generations:
            _mark(generation.message, link.name)
        result.llm_output = {**(result.llm_output or {}), PROVIDER_KEY: link.name}
        return result

    def unavailable(self) -> ProvidersUnavailable:
        error = _unavailable(tuple(self.tried))
        heard = _unanswered.get()
        if heard is not None:  # a link of a structured-output chain: the chain says it all
            heard.append(error)
        return error


def _unavailable(tried: tuple[tuple[str, str], ...]) -> ProvidersUnavailable:
    said = ", ".join(f"{name}: {outcome}" for name, outcome in tried)
    return ProvidersUnavailable(f"no provider answered ({said})", tried)


class _Fallbacks(RunnableWithFallbacks[Any, Any]):
    """Each link's structured-output runnable in turn, falling back on ``ProvidersUnavailable``.

    LangChain's fallbacks raise the *first* runnable's error when none answers, which
    would name only the first provider; ``invoke`` and ``ainvoke`` raise one that
    lists what every link did (``batch`` and the streams keep LangChain's).
    """

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        heard: list[ProvidersUnavailable] = []
        token = _unanswered.set(heard)
        try:
            return super().invoke(input, config, **kwargs)
        except ProvidersUnavailable as exc:
            raise _merged(heard, exc) from exc
        finally:
            _unanswered.reset(token)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        heard: list[ProvidersUnavailable] = []
        token = _unanswered.set(heard)
        try:
            return await super().ainvoke(input, config, **kwargs)
        except ProvidersUnavailable as exc:
            raise _merged(heard, exc) from exc
        finally:
            _unanswered.reset(token)


def _merged(heard: list[ProvidersUnavailable], first: ProvidersUnavailable) -> ProvidersUnavailable:
    tried = tuple(pair for error in heard for pair in error.attempts)
    return _unavailable(tried) if tried else first


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


def _mark(message: BaseMessage, name: str) -> None:
    message.response_metadata = {**message.response_metadata, PROVIDER_KEY: name}


def _chunks(
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


async def _achunks(
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


class _Reporting:
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


def _transitions(metrics: Metrics | None) -> Callable[[Transition], None]:
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


def link_name(model: BaseChatModel) -> str:
    """``provider:model`` from a model's LangSmith parameters (what its breaker is called)."""
    params = model._get_ls_params()
    provider = str(params.get("ls_provider") or type(model).__name__)
    name = params.get("ls_model_name") or getattr(model, "model_name", None)
    return f"{provider}:{name}" if name else provider


_RETRY, _BREAKER = RetryPolicy(), BreakerPolicy()  # immutable: safe to share as defaults


def resilient_chat(
    models: Sequence[BaseChatModel] | Mapping[str, BaseChatModel],
    *,
    retry: RetryPolicy = _RETRY,
    breaker: BreakerPolicy = _BREAKER,
    breaker_store: BreakerStore | None = None,
    retry_budget: Callable[[], RetryBudget] | None = RetryBudget,
    min_attempt_s: float = 0.05,
    fallback_share: float = 0.5,
    metrics: Metrics | None = None,
) -> ResilientChatModel:
    """A :class:`ResilientChatModel` over ``models``, tried in order.

    Names (``provider:model``, or the mapping's keys) name each link's breaker:
    breakers on one ``breaker_store`` (a
    :class:`~graphops.resilience.breaker_redis.RedisBreakerStore` is shared by
    processes) and one name are one breaker. ``retry_budget`` makes each link's
    budget (None: retries unbudgeted). ``fallback_share`` is the share of the time
    left a provider may use while others wait behind it. An OpenAI client gets its
    per-request timeout from the run's time left; build the inner clients with
    ``max_retries=0``.
    """
    named = list(models.items()) if isinstance(models, Mapping) else [(None, m) for m in models]
    if not named:
        raise ConfigurationError("resilient_chat needs at least one model")
    if breaker_store is not None and not isinstance(breaker_store, BreakerStore):
        raise ConfigurationError(
            f"resilient_chat breaker_store takes a BreakerStore (MemoryBreakerStore, "
            f"RedisBreakerStore), not {type(breaker_store).__name__}"
        )
    if retry_budget is not None and not callable(retry_budget):
        raise ConfigurationError(
            "resilient_chat retry_budget takes what makes each link's RetryBudget (the class, "
            f"or a lambda: RetryBudget(...)), or None; not {retry_budget!r}"
        )
    on_transition = _transitions(metrics)
    links = []
    seen: set[str] = set()
    for given, model in named:
        if not isinstance(model, BaseChatModel):
            raise ConfigurationError(f"resilient_chat takes chat models, not {model!r}")
        name = given or link_name(model)
        if name in seen:
            raise ConfigurationError(f"two links are named {name!r}: name them (pass a mapping)")
        seen.add(name)
        links.append(
            Link(
                name,
                model,
                CircuitBreaker(name, breaker, breaker_store, on_transition=on_transition),
                retry_budget() if retry_budget is not None else None,
                timeout_kwarg=_timeout_kwarg(model),
            )
        )
    return ResilientChatModel(
        links=tuple(links),
        retry=retry,
        min_attempt_s=min_attempt_s,
        fallback_share=fallback_share,
        metrics=metrics,
    )


def _timeout_kwarg(model: BaseChatModel) -> str | None:
    """The call argument a model's client takes a per-request timeout in, if it has one."""
    try:
        from langchain_openai.chat_models.base import BaseChatOpenAI
    except ImportError:  # pragma: no cover - langchain-openai is a dependency
        return None
    inner = getattr(model, "inner", model)  # a graphops wrapper passes arguments through
    return "timeout" if isinstance(inner, BaseChatOpenAI) else None
