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
LLM span; when a fallback answered, the span's name and ``gen_ai.*`` request
attributes, and the call's metrics, are the fallback's). Retries, fallbacks and
breaker transitions are span events and metrics (``graphops_llm_retries_total``,
``graphops_llm_fallbacks_total``, ``graphops_breaker_state``,
``graphops_breaker_transitions_total``).

Tools and structured output go through the chain: ``bind_tools`` binds each link's
model its own way and keeps one ``ResilientChatModel``; ``with_structured_output``
builds each link's own structured runnable (their parsers differ by provider) over
a one-link resilient model, chained as fallbacks on ``ProvidersUnavailable``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, model_validator

from graphops.errors import ConfigurationError, ProvidersUnavailable, UserError
from graphops.models.chain import (
    PROVIDER_KEY,
    ChainCall,
    Link,
    astream_of,
    mark,
    stream_of,
    transitions,
    unanswered,
    unavailable,
)
from graphops.models.wrapper import RunManager, replace_model
from graphops.resilience.breaker import BreakerPolicy, CircuitBreaker, Permit
from graphops.resilience.breaker_store import BreakerStore
from graphops.resilience.retry import RetryPolicy
from graphops.resilience.retry_budget import RetryBudget

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["PROVIDER_KEY", "Link", "ResilientChatModel", "resilient_chat"]


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
        call = ChainCall(self, run_manager)
        for link in self.links:
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
                call.succeeded(link, got, started)
                return result

            try:
                result = call.attempts(link, permit, attempt)
            except Exception as exc:
                call.gave_up(link, exc)
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
        call = ChainCall(self, run_manager)
        for link in self.links:
            permit = call.first_permit(link)
            if permit is None:
                continue

            def opening(
                got: Permit, link: Link = link
            ) -> tuple[Permit, float, Iterator[ChatGenerationChunk], ChatGenerationChunk | None]:
                started = time.monotonic()
                try:
                    chunks = stream_of(
                        link, messages, stop, run_manager, call.arguments(link, kwargs)
                    )
                    return got, started, chunks, next(chunks, None)
                except BaseException as exc:
                    call.failed(link, got, exc, started)
                    raise

            try:
                got, started, chunks, first = call.attempts(link, permit, opening)
            except Exception as exc:
                call.gave_up(link, exc)
                continue
            call.answered(link, None)
            try:
                if first is not None:
                    mark(first.message, link.name)
                    yield first
                    yield from chunks
            except BaseException as exc:  # mid-stream: no fallback, the stream is this provider's
                call.failed(link, got, exc, started)
                raise
            call.succeeded(link, got, started)
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
        call = ChainCall(self, run_manager)
        for link in self.links:
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
                await call.asucceeded(link, got, started)
                return result

            try:
                result = await call.aattempts(link, permit, attempt)
            except Exception as exc:
                call.gave_up(link, exc)
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
        call = ChainCall(self, run_manager)
        for link in self.links:
            permit = await call.afirst_permit(link)
            if permit is None:
                continue

            async def opening(
                got: Permit, link: Link = link
            ) -> tuple[Permit, float, AsyncIterator[ChatGenerationChunk], Any]:
                started = time.monotonic()
                try:
                    chunks = astream_of(
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
                call.gave_up(link, exc)
                continue
            call.answered(link, None)
            try:
                if first is not None:
                    mark(first.message, link.name)
                    yield first
                    async for chunk in chunks:
                        yield chunk
            except BaseException as exc:
                await call.afailed(link, got, exc, started)
                raise
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
            await call.asucceeded(link, got, started)
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
        token = unanswered.set(heard)
        try:
            return super().invoke(input, config, **kwargs)
        except ProvidersUnavailable as exc:
            raise _merged(heard, exc) from exc
        finally:
            unanswered.reset(token)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        heard: list[ProvidersUnavailable] = []
        token = unanswered.set(heard)
        try:
            return await super().ainvoke(input, config, **kwargs)
        except ProvidersUnavailable as exc:
            raise _merged(heard, exc) from exc
        finally:
            unanswered.reset(token)


def _merged(heard: list[ProvidersUnavailable], first: ProvidersUnavailable) -> ProvidersUnavailable:
    tried = tuple(pair for error in heard for pair in error.attempts)
    return unavailable(tried) if tried else first


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
    on_transition = transitions(metrics)
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
