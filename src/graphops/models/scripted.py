"""A scripted chat model: the fake that ships with the interface.

Like httpx's ``MockTransport`` or pydantic-ai's ``FunctionModel``, it is public so
that your own tests can drive a graph without a model: give it a list of replies
(used in order) or a function from the messages to a reply. It reports token usage
(one token per whitespace-separated word) and honours ``with_structured_output``
by parsing the reply as JSON, so graphs built for real models run on it unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field, PrivateAttr

from graphops.models._structured import json_structured

__all__ = ["Reply", "ScriptedChatModel"]

Reply = str | Callable[[list[BaseMessage]], str]
"""A scripted reply: fixed text, or a function of the prompt's messages."""


def _tokens(text: str) -> int:
    return len(text.split())


class ScriptedChatModel(BaseChatModel):
    """Answers from a script; raises ``LookupError`` when the script runs out.

    ``replies`` are used in order; ``respond`` (if given) answers every call after
    them. A reply that is an ``Exception`` instance is raised instead, to script
    failures. Every prompt is kept in ``calls`` for assertions.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    replies: list[Reply | BaseException] = Field(default_factory=list)
    respond: Callable[[list[BaseMessage]], str] | None = None
    name_of_model: str = "scripted"
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _position: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def model_name(self) -> str:
        """The name reported in usage and spans."""
        return self.name_of_model

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Its name: what tells two scripted models apart in cache keys (``_get_llm_string``)."""
        return {"model_name": self.name_of_model}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "scripted"
        params["ls_model_name"] = self.model_name
        return params

    def _next_reply(self, messages: list[BaseMessage]) -> str:
        with self._lock:
            self.calls.append(list(messages))
            if self._position < len(self.replies):
                reply = self.replies[self._position]
                self._position += 1
            elif self.respond is not None:
                reply = self.respond
            else:
                raise LookupError(
                    f"ScriptedChatModel has no reply for call {len(self.calls)}: "
                    "add replies or a respond function"
                )
        if isinstance(reply, BaseException):
            raise reply
        return reply(messages) if callable(reply) else reply

    def _message(self, text: str, messages: list[BaseMessage]) -> AIMessage:
        prompt = " ".join(m.text for m in messages)
        return AIMessage(
            content=text,
            usage_metadata=UsageMetadata(
                input_tokens=_tokens(prompt),
                output_tokens=_tokens(text),
                total_tokens=_tokens(prompt) + _tokens(text),
            ),
            response_metadata={"model_name": self.model_name, "model_provider": "scripted"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self._next_reply(messages)
        return ChatResult(generations=[ChatGeneration(message=self._message(text, messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        full = self._message(self._next_reply(messages), messages)
        words = full.text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == len(words) - 1 else word + " "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=full.usage_metadata,
                response_metadata=full.response_metadata,
                chunk_position="last",
            )
        )

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Parse the scripted reply as JSON into ``schema``."""
        return json_structured(self, schema)
