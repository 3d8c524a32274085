"""A chat model that wraps another, so behaviour across every call sits where the calls are.

Like pydantic-ai's ``WrapperModel``: a limit, a budget or a failover applied in
graph nodes misses the calls a tool, a sub-chain or a structured-output parser
makes, while every call of a LangChain chat model, whatever the door (``invoke``,
``batch``, ``stream``, ``astream``, ``astream_events``, ``with_structured_output``,
``bind_tools``), ends in one of four methods: ``_generate``, ``_agenerate``,
``_stream``, ``_astream``. :class:`WrapperChatModel` is a ``BaseChatModel`` whose
four methods call the inner model's, with the same run manager, inside the
:meth:`~WrapperChatModel.around` / :meth:`~WrapperChatModel.aaround` hooks a
subclass overrides (a stream is one call, until it ends or is closed).

Otherwise it is the inner model: what telemetry reads (``_get_ls_params``,
invocation and identifying parameters, ``_llm_type``, ``model_name``), the cache
key, the serialized form, and the choice between streaming and generating
(``_should_stream``) are the inner's, and its callbacks, tags, cache, rate limiter
and streaming settings are copied at construction. Cache hits and rate-limiter
waits happen before the hooks, as they would before the inner's API call.

Runnables the inner builds (``with_structured_output``, ``bind_tools``) name the
inner model; the wrapper returns them with itself in the inner's place, so the
structured path goes through the hooks too, and raises :class:`UserError` when it
cannot find the inner model in them rather than bypass the hooks silently.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, Literal, TypeVar, cast

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, BaseLanguageModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, ensure_config
from langchain_core.tools import BaseTool
from pydantic import BaseModel, model_validator

from graphops.errors import ConfigurationError, UserError
from graphops.runtime import RunScope, ScopeHandler, run_scope

__all__ = ["ModelCall", "RunManager", "WrapperChatModel", "replace_model", "scope_of"]

RunManager = CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun
R = TypeVar("R")

# BaseChatModel's settings (callbacks, tags, cache, rate_limiter, disable_streaming, ...),
# read by the wrapper's own machinery: taken from the inner model
_MIRRORED = tuple(BaseChatModel.model_fields)


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One call of the inner model, as the hooks see it.

    ``kind`` is ``"generate"`` (one result) or ``"stream"`` (the hook spans the
    whole stream); ``scope`` is the graphops run it belongs to, None outside one.
    """

    kind: Literal["generate", "stream"]
    messages: Sequence[BaseMessage]
    kwargs: Mapping[str, Any]
    run_manager: RunManager | None
    scope: RunScope | None


def scope_of(run_manager: RunManager | None) -> RunScope | None:
    """The run scope of a model call: its run manager's scope handler knows the LLM run
    (and its parent); without one (``stream()`` passes none) the calling context's config."""
    if run_manager is not None:
        for handler in run_manager.handlers:
            if isinstance(handler, ScopeHandler):
                scope = handler.scope_of(run_manager.run_id)
                scope = scope or handler.scope_of(run_manager.parent_run_id)
                if scope is not None:
                    return scope
    return run_scope(ensure_config())


def replace_model(
    value: Any, old: BaseLanguageModel[Any], new: Runnable[Any, Any]
) -> tuple[Any, int]:
    """``value`` (a runnable) with ``new`` wherever it holds ``old``, and how many it replaced.

    Composed runnables are pydantic models whose fields hold their children
    (``RunnableBinding.bound``, ``RunnableSequence.first/middle/last``,
    ``RunnableParallel.steps__``, ``RunnableWithFallbacks.runnable/fallbacks``,
    ``RunnableAssign.mapper``, ...): a LangChain shape, not a documented API. This walks
    those fields and the lists, tuples and dicts in them, copying (``model_copy``) only
    what changed. Other models and tools are not entered; a ``RunnableLambda`` is opaque.
    """
    if value is old:
        return new, 1
    if type(value) in (list, tuple):
        items = [replace_model(item, old, new) for item in value]
        found = sum(n for _, n in items)
        return (type(value)(item for item, _ in items) if found else value), found
    if type(value) is dict:
        entries = {key: replace_model(item, old, new) for key, item in value.items()}
        found = sum(n for _, n in entries.values())
        return ({key: item for key, (item, _) in entries.items()} if found else value), found
    if not isinstance(value, Runnable) or not isinstance(value, BaseModel):
        return value, 0
    if isinstance(value, BaseLanguageModel | BaseTool):
        return value, 0
    changes: dict[str, Any] = {}
    found = 0
    for name in type(value).model_fields:
        changed, n = replace_model(getattr(value, name), old, new)
        if n:
            changes[name], found = changed, found + n
    # a shallow copy with the children replaced: no validation, private state kept
    return (value.model_copy(update=changes) if changes else value), found


@cache
def _takes_run_manager(function: Callable[..., Any]) -> bool:
    return "run_manager" in inspect.signature(function).parameters


def _manager(method: Callable[..., Any], run_manager: RunManager | None) -> dict[str, Any]:
    """``run_manager=`` for ``method`` if it takes one (LangChain checks the same way)."""
    function = getattr(method, "__func__", method)
    if run_manager is None or not _takes_run_manager(function):
        return {}
    return {"run_manager": run_manager}


class WrapperChatModel(BaseChatModel):
    """A chat model that calls ``inner`` for everything; subclasses override the hooks."""

    inner: BaseChatModel

    @model_validator(mode="before")
    @classmethod
    def _mirror_inner(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        inner = data.get("inner")
        if not isinstance(inner, BaseChatModel):
            raise ConfigurationError(
                f"{cls.__name__}.inner is {inner!r}: give a LangChain chat model (a BaseChatModel)"
            )
        return {**{name: getattr(inner, name) for name in _MIRRORED}, **data}

    # ------------------------------------------------------------ the hooks
    def around(self, call: ModelCall) -> AbstractContextManager[None]:
        """What wraps each sync call of the inner model (a stream: until it ends or is closed).

        The default does nothing; override it with a ``@contextmanager``.
        """
        return nullcontext()

    def aaround(self, call: ModelCall) -> AbstractAsyncContextManager[None]:
        """:meth:`around` for async calls. It may span the yields of a stream, so it must
        not keep a task group or a cancel scope open across its own ``yield``."""
        return nullcontext()

    def _call(
        self,
        kind: Literal["generate", "stream"],
        messages: list[BaseMessage],
        kwargs: dict[str, Any],
        run_manager: RunManager | None,
    ) -> ModelCall:
        return ModelCall(kind, messages, kwargs, run_manager, scope_of(run_manager))

    # ------------------------------------------------------------ the calls
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self.around(self._call("generate", messages, kwargs, run_manager)):
            method = self.inner._generate
            return method(messages, stop=stop, **_manager(method, run_manager), **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        async with self.aaround(self._call("generate", messages, kwargs, run_manager)):
            method = self.inner._agenerate
            return await method(messages, stop=stop, **_manager(method, run_manager), **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with self.around(self._call("stream", messages, kwargs, run_manager)):
            method = self.inner._stream
            yield from method(messages, stop=stop, **_manager(method, run_manager), **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async with self.aaround(self._call("stream", messages, kwargs, run_manager)):
            method = self.inner._astream
            chunks = method(messages, stop=stop, **_manager(method, run_manager), **kwargs)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:  # `async for` does not close what it leaves early: close it first
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()

    # BaseChatModel asks these to choose between _stream and _generate. The wrapper
    # defines both, so ask the inner, with the same arguments (private LangChain shape).
    def _should_stream(
        self, *, async_api: bool, run_manager: RunManager | None = None, **kwargs: Any
    ) -> bool:
        return self.inner._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    def _should_use_protocol_streaming(
        self, *, async_api: bool, run_manager: RunManager | None = None, **kwargs: Any
    ) -> bool:
        should = self.inner._should_use_protocol_streaming
        return should(async_api=async_api, run_manager=run_manager, **kwargs)

    # ------------------------------------------------------------ what telemetry reads
    @property
    def _llm_type(self) -> str:
        return self.inner._llm_type

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return self.inner._identifying_params

    @property
    def model_name(self) -> str:
        """The inner model's ``model_name`` (an AttributeError if it has none)."""
        name = getattr(self.inner, "model_name", None)
        if not isinstance(name, str):
            raise AttributeError(f"{type(self.inner).__name__} has no model_name")
        return name

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.inner._get_ls_params(stop=stop, **kwargs)

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return self.inner._get_invocation_params(stop=stop, **kwargs)

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        return self.inner._get_llm_string(stop=stop, **kwargs)  # the inner's cache key

    def _combine_llm_outputs(self, llm_outputs: list[dict[str, Any] | None]) -> dict[str, Any]:
        return self.inner._combine_llm_outputs(llm_outputs)

    @cached_property
    def _serialized(self) -> dict[str, Any]:
        return self.inner._serialized  # what callbacks are told the model is

    def get_token_ids(self, text: str) -> list[int]:
        return self.inner.get_token_ids(text)

    def get_num_tokens(self, text: str) -> int:
        return self.inner.get_num_tokens(text)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        return self.inner.get_num_tokens_from_messages(messages, tools)

    # ------------------------------------------------------------ runnables built by the inner
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.rebind(self.inner.bind_tools(tools, **kwargs), "bind_tools")

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        made = self.inner.with_structured_output(schema, include_raw=include_raw, **kwargs)
        return self.rebind(made, "with_structured_output")

    def rebind(self, runnable: Runnable[Any, R], made_by: str | None = None) -> Runnable[Any, R]:
        """``runnable`` (built by the inner model, by ``made_by``) with this wrapper in the
        inner's place; a UserError if the inner model is nowhere in it."""
        rebuilt, found = replace_model(runnable, self.inner, self)
        if not found:
            source = f"{type(self.inner).__name__}.{made_by} returned a" if made_by else "a"
            raise UserError(
                f"{source} {type(runnable).__name__} that does not call the model itself, so "
                f"{type(self).__name__} cannot apply to it: wrap the runnable's model yourself, "
                "or build the runnable from the wrapper"
            )
        return cast(Runnable[Any, R], rebuilt)
