"""The embedded default models, for real: SmolLM2 on llama.cpp and MiniLM embeddings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import anyio
import numpy as np
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from pydantic import BaseModel

from graphops.models.local_chat import ChatLocalLlama
from graphops.models.local_embeddings import LocalMiniLMEmbeddings
from graphops.models.minilm_gguf import ensure_minilm_gguf

pytestmark = pytest.mark.anyio


class Colour(BaseModel):
    colour: Literal["red", "green", "blue"]
    confidence: int


def test_chat_reports_text_and_usage(local_chat: ChatLocalLlama) -> None:
    message = local_chat.invoke([HumanMessage("Say hello in three words.")], max_tokens=16)
    assert message.text.strip()
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 5
    assert 0 < usage["output_tokens"] <= 16
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert message.response_metadata["model_name"] == "SmolLM2-135M-Instruct.Q4_1"
    assert message.response_metadata["finish_reason"] in ("stop", "length")


def test_greedy_decoding_is_deterministic(local_chat: ChatLocalLlama) -> None:
    prompt = [HumanMessage("Name a fruit.")]
    assert (
        local_chat.invoke(prompt, max_tokens=12).text
        == local_chat.invoke(prompt, max_tokens=12).text
    )


def test_stream_yields_tokens_then_usage(local_chat: ChatLocalLlama) -> None:
    chunks = list(local_chat.stream([HumanMessage("Count from one to five.")], max_tokens=24))
    assert len(chunks) > 3
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.text for c in chunks).strip()
    usage = chunks[-1].usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0


def test_structured_output_always_parses(local_chat: ChatLocalLlama) -> None:
    structured = local_chat.with_structured_output(Colour)
    for question in ("What colour is the sky?", "What colour is grass?", "asdf qwerty"):
        result = structured.invoke(
            [SystemMessage("Answer with the colour and a confidence 0-10."), HumanMessage(question)]
        )
        assert isinstance(result, Colour)


async def test_async_calls_do_not_block_the_event_loop(local_chat: ChatLocalLlama) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        message = await local_chat.ainvoke([HumanMessage("Tell me a short story.")], max_tokens=48)
        group.cancel_scope.cancel()
    assert message.text
    assert ticks > 0  # the loop kept running while the model generated


def test_prompt_longer_than_the_context_is_a_model_error(local_settings: object) -> None:
    from graphops.errors import ModelError

    small = ChatLocalLlama(n_ctx=256, n_threads=2)
    with pytest.raises(ModelError, match="local model call failed"):
        small.invoke([HumanMessage("word " * 600)])


def test_embeddings_are_normalised_and_semantic(local_embeddings: LocalMiniLMEmbeddings) -> None:
    vectors = np.asarray(
        local_embeddings.embed_documents(
            [
                "How do I configure the chat model?",
                "Which setting selects the LLM used for chat?",
                "The cat sat on the warm windowsill.",
            ]
        )
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    query = np.asarray(local_embeddings.embed_query("How do I configure the chat model?"))
    assert float(query @ vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert local_embeddings.embed_documents([]) == []


def test_long_texts_are_truncated_like_sentence_transformers(
    local_embeddings: LocalMiniLMEmbeddings,
) -> None:
    words = " ".join(f"word{i}" for i in range(2000))
    long_vector = np.asarray(local_embeddings.embed_query(words))
    assert long_vector.shape == (384,)
    assert np.isfinite(long_vector).all()
    assert abs(float(np.linalg.norm(long_vector)) - 1.0) < 1e-5


async def test_async_embeddings(local_embeddings: LocalMiniLMEmbeddings) -> None:
    vector = await local_embeddings.aembed_query("async works")
    assert len(vector) == 384


def test_gguf_conversion_is_cached(local_embeddings: LocalMiniLMEmbeddings) -> None:
    local_embeddings.embed_query("load it")
    first = ensure_minilm_gguf(local_embeddings.cache_dir)
    stamp = os.stat(first).st_mtime_ns
    assert ensure_minilm_gguf(local_embeddings.cache_dir) == first
    assert os.stat(first).st_mtime_ns == stamp
    assert Path(first).stat().st_size > 40_000_000


@pytest.mark.parametrize("max_tokens", [8, 200])
def test_streamed_usage_equals_invoked_usage(local_chat: ChatLocalLlama, max_tokens: int) -> None:
    prompt = [SystemMessage("You are terse."), HumanMessage("Count from one to ten.")]
    invoked = local_chat.invoke(prompt, max_tokens=max_tokens)
    streamed = list(local_chat.stream(prompt, max_tokens=max_tokens))
    assert "".join(c.text for c in streamed) == invoked.text
    assert streamed[-1].usage_metadata == invoked.usage_metadata
