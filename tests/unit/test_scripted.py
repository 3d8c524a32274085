from __future__ import annotations

import pytest
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from pydantic import BaseModel

from graphops.models import ScriptedChatModel

pytestmark = pytest.mark.anyio


class Verdict(BaseModel):
    relevant: bool


def test_replies_are_used_in_order_then_respond() -> None:
    def echo(messages: list[BaseMessage]) -> str:
        return "echo " + messages[-1].text

    model = ScriptedChatModel(replies=["one", "two"], respond=echo)
    assert [model.invoke("a").text, model.invoke("b").text, model.invoke("c").text] == [
        "one",
        "two",
        "echo c",
    ]
    assert [call[-1].text for call in model.calls] == ["a", "b", "c"]


def test_script_exhausted_raises_lookup_error() -> None:
    model = ScriptedChatModel(replies=["only"])
    model.invoke("x")
    with pytest.raises(LookupError, match="no reply for call 2"):
        model.invoke("y")


def test_scripted_exception_is_raised() -> None:
    model = ScriptedChatModel(replies=[TimeoutError("provider down")])
    with pytest.raises(TimeoutError, match="provider down"):
        model.invoke("x")


def test_usage_metadata_counts_words() -> None:
    message = ScriptedChatModel(replies=["three word answer"]).invoke([HumanMessage("a b")])
    assert message.usage_metadata == {"input_tokens": 2, "output_tokens": 3, "total_tokens": 5}


def test_structured_output_parses_json() -> None:
    model = ScriptedChatModel(replies=['{"relevant": true}'])
    assert model.with_structured_output(Verdict).invoke("q") == Verdict(relevant=True)


def test_stream_yields_words_and_final_usage() -> None:
    chunks = list(ScriptedChatModel(replies=["hello big world"]).stream("q"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == "hello big world"
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata["output_tokens"] == 3


async def test_async_invoke() -> None:
    model = ScriptedChatModel(replies=["async ok"])
    assert (await model.ainvoke("q")).text == "async ok"
