"""A chat model that replays a stored run's LLM outputs: re-runs with no model cost.

``graphops replay --rerun --recorded`` swaps the graph's chat model for this one.
Each node's calls are answered, in order, with what that node's calls answered in
the original run (read from its spans' ``gen_ai.output.messages``), so a code change
can be checked against a stored run deterministically. A call the original run did
not make is an error, not a guess.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field, PrivateAttr

from graphops.errors import RunError
from graphops.models._structured import json_structured
from graphops.observe import semconv as sc

__all__ = ["RecordedChatModel"]


class RecordedChatModel(BaseChatModel):
    """Answers each node's LLM calls with that node's recorded outputs, in order."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    outputs: dict[str, list[str]] = Field(default_factory=dict)
    name_of_model: str = "recorded"
    _used: dict[str, int] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "recorded"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "recorded"
        params["ls_model_name"] = self.name_of_model
        return params

    @classmethod
    def from_spans(cls, spans: Sequence[Any], *, after_step: int = -(10**9)) -> RecordedChatModel:
        """Outputs of the chat spans under node spans of steps after ``after_step``.

        ``spans`` are stored :class:`~graphops.checkpoint.SpanRow` records of one run.
        """
        nodes = {
            s.span_id: (s.name, s.attributes.get(sc.STEP, -1))
            for s in spans
            if sc.NODE in s.attributes
        }
        outputs: dict[str, list[str]] = {}
        model = "recorded"
        for span in sorted(spans, key=lambda s: s.start_ns):
            if span.attributes.get(sc.OPERATION) != sc.OP_CHAT or span.parent_span_id not in nodes:
                continue
            node, step = nodes[span.parent_span_id]
            if step <= after_step:
                continue
            recorded = span.attributes.get(sc.OUTPUT_MESSAGES)
            if recorded is None:
                raise RunError(
                    "the original run recorded no LLM outputs: record runs with "
                    "GRAPHOPS_CAPTURE_CONTENT=true to re-run them with --recorded"
                )
            parts = json.loads(recorded)[0]["parts"]
            outputs.setdefault(node, []).append("".join(p.get("content", "") for p in parts))
            model = str(span.attributes.get(sc.REQUEST_MODEL, model))
        return cls(outputs=outputs, name_of_model=f"recorded:{model}")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        node = str((run_manager.metadata if run_manager else {}).get("langgraph_node", ""))
        with self._lock:
            index = self._used.get(node, 0)
            queue = self.outputs.get(node, [])
            if index >= len(queue):
                raise RunError(
                    f"the recording has {len(queue)} LLM call(s) for node {node!r}; the re-run "
                    f"made call {index + 1}: the graph now calls the model where it did not"
                )
            self._used[node] = index + 1
        message = AIMessage(
            content=queue[index],
            usage_metadata=UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0),
            response_metadata={"model_name": self.name_of_model, "model_provider": "recorded"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Parse the recorded JSON into ``schema``, as the original structured call did."""
        return json_structured(self, schema)
