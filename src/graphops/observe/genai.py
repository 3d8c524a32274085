"""Reading LangChain callback payloads into GenAI semantic-convention attributes.

Pure functions, so the handler stays about control flow and these stay testable.
LangChain already normalises what matters into ``ls_*`` metadata (provider, model,
temperature, max tokens) and ``usage_metadata`` on messages; we read those first
and fall back on provider-specific invocation parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from graphops.observe import semconv as sc

__all__ = [
    "chat_request",
    "chat_response",
    "document_ids_and_scores",
    "generations_json",
    "messages_json",
    "prompt_attributes",
    "retrieval_request",
    "route_targets",
    "run_attributes",
]

_RUN_KEYS = {
    "thread_id": sc.THREAD_ID,
    "user": sc.USER,
    "tenant": sc.TENANT,
    "session": sc.SESSION,
    "replay_of": sc.REPLAY_OF,
}


def run_attributes(run_id: UUID, graph: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The root span's attributes: who and which conversation (from config metadata)."""
    attrs: dict[str, Any] = {
        sc.OPERATION: sc.OP_AGENT,
        sc.AGENT_NAME: graph,
        sc.RUN_ID: str(run_id),
    }
    for key, name in _RUN_KEYS.items():
        value = metadata.get(key)
        if value is not None:
            attrs[name] = str(value)
    if sc.THREAD_ID in attrs:
        attrs[sc.CONVERSATION_ID] = attrs[sc.THREAD_ID]
    return attrs


def prompt_attributes(ref: str) -> dict[str, str]:
    """An LLM span's prompt attributes from a ``name@version`` ref."""
    name, _, version = ref.rpartition("@")
    return {sc.PROMPT_NAME: name or ref, sc.PROMPT_VERSION: version}


def route_targets(outputs: Any) -> list[str] | None:
    """The node names a conditional edge chose, or None when it is not a routing result."""
    items = outputs if isinstance(outputs, list | tuple) else [outputs]
    targets: list[str] = []
    for item in items:
        if isinstance(item, str):
            targets.append(item)
        elif type(item).__name__ == "Send":
            targets.append(str(getattr(item, "node", "?")))
        else:
            return None
    return targets


def chat_request(
    metadata: dict[str, Any], params: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """(provider, model, request attributes) of a chat model call."""
    raw_provider = str(metadata.get("ls_provider") or params.get("_type") or "unknown")
    provider = sc.PROVIDERS.get(raw_provider, raw_provider)
    model = str(
        metadata.get("ls_model_name")
        or params.get("model")
        or params.get("model_name")
        or "unknown"
    )
    attrs: dict[str, Any] = {
        sc.OPERATION: sc.OP_CHAT,
        sc.PROVIDER: provider,
        sc.REQUEST_MODEL: model,
    }
    temperature = metadata.get("ls_temperature", params.get("temperature"))
    if isinstance(temperature, int | float):
        attrs[sc.REQUEST_TEMPERATURE] = float(temperature)
    max_tokens = metadata.get("ls_max_tokens", params.get("max_tokens"))
    if isinstance(max_tokens, int):
        attrs[sc.REQUEST_MAX_TOKENS] = max_tokens
    return provider, model, attrs


def chat_response(response: LLMResult) -> tuple[tuple[int, int], str, list[str]]:
    """((input tokens, output tokens), response model, finish reasons) of a chat result."""
    input_tokens = output_tokens = 0
    model = ""
    finish: list[str] = []
    for generations in response.generations:
        for generation in generations:
            if not isinstance(generation, ChatGeneration):
                continue
            message = generation.message
            usage = getattr(message, "usage_metadata", None) or {}
            input_tokens += int(usage.get("input_tokens", 0))
            output_tokens += int(usage.get("output_tokens", 0))
            meta = message.response_metadata or {}
            model = model or str(meta.get("model_name") or meta.get("model") or "")
            reason = meta.get("finish_reason") or (generation.generation_info or {}).get(
                "finish_reason"
            )
            if reason:
                finish.append(str(reason).lower())
    if not input_tokens and not output_tokens and response.llm_output:
        usage = response.llm_output.get("token_usage") or {}
        input_tokens = int(usage.get("prompt_tokens", 0))
        output_tokens = int(usage.get("completion_tokens", 0))
    return (input_tokens, output_tokens), model, finish


def messages_json(messages: list[list[BaseMessage]]) -> str:
    """Prompt messages as the convention's JSON (role and text parts)."""
    return json.dumps(
        [
            {"role": m.type, "parts": [{"type": "text", "content": m.text}]}
            for batch in messages
            for m in batch
        ],
        ensure_ascii=False,
    )


def generations_json(response: LLMResult) -> str:
    """Output messages as the convention's JSON."""
    return json.dumps(
        [
            {"role": "assistant", "parts": [{"type": "text", "content": g.text}]}
            for batch in response.generations
            for g in batch
        ],
        ensure_ascii=False,
    )


def retrieval_request(source: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """A retrieval span's request attributes."""
    attrs: dict[str, Any] = {sc.OPERATION: sc.OP_RETRIEVAL, sc.DATA_SOURCE_ID: source}
    top_k = metadata.get("ls_top_k")
    if isinstance(top_k, int):
        attrs[sc.REQUEST_TOP_K] = top_k
    return attrs


def document_ids_and_scores(documents: Sequence[Document]) -> tuple[list[str], list[float]]:
    """Ids (metadata ``id``, else ``Document.id``, else the source) and scores of hits."""
    ids: list[str] = []
    scores: list[float] = []
    for doc in documents:
        meta = doc.metadata or {}
        ids.append(str(meta.get("id") or doc.id or meta.get("source") or ""))
        score = meta.get("score")
        scores.append(float(score) if isinstance(score, int | float) else float("nan"))
    return ids, scores
