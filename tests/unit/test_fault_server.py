"""The fault server the resilience tests stand on: each fault as an OpenAI client meets it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.fault_server import FaultServer, fault_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with fault_server() as running:
        yield running


def client(server: FaultServer, timeout: float = 5.0, **more: Any) -> ChatOpenAI:
    """A ChatOpenAI on the server, without its own retries: each call is one request."""
    return ChatOpenAI(
        model="fault",
        api_key="not-needed",  # type: ignore[arg-type]
        base_url=server.url,
        max_retries=0,
        timeout=timeout,
        **more,
    )


def test_a_healthy_server_answers_plain_streamed_and_structured(server: FaultServer) -> None:
    chat = client(server, stream_usage=True)
    answer = chat.invoke("hello there")
    assert answer.text == "echo: hello there"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] == 2
    assert answer.usage_metadata["output_tokens"] == 3
    chunks = list(chat.stream("stream me"))
    assert "".join(c.text for c in chunks) == "echo: stream me"
    assert sum((c.usage_metadata or {}).get("output_tokens", 0) for c in chunks) == 3

    class Echo(BaseModel):
        said: str

    server.reply = lambda messages: '{"said": "yes"}'
    structured = chat.with_structured_output(Echo, method="json_mode")
    assert structured.invoke("answer in JSON") == Echo(said="yes")
    assert server.requests == 3 and not server.faults


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("429", openai.RateLimitError),
        ("drop", openai.APIConnectionError),
    ],
)
def test_each_status_fault_reaches_the_client_as_the_sdk_names_it(
    server: FaultServer, fault: str, error: type[Exception]
) -> None:
    server.fail(fault, retry_after=7)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        client(server).invoke("hi")
    if fault == "429":
        response = caught.value.response  # type: ignore[attr-defined]
        assert response.headers["retry-after"] == "7"
    assert server.faults[fault] == 1
    server.heal()
    assert client(server).invoke("hi").text == "echo: hi"


def test_a_hang_ends_at_the_clients_timeout_and_a_slow_first_byte_still_answers(
    server: FaultServer,
) -> None:
    server.fail("hang")
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client(server, timeout=0.3).invoke("hi")
    assert time.monotonic() - started < 5  # a hang guard, not a timing claim
    server.fail("slow", delay=0.2)
    assert client(server).invoke("late").text == "echo: late"
    assert server.faults == {"hang": 1, "slow": 1}


def test_a_rate_fails_that_share_of_requests_repeatably() -> None:
    def run() -> tuple[int, int]:
        with fault_server(seed=7) as server:
            server.fail("500", rate=0.5)
            chat = client(server)
            failed = 0
            for _ in range(200):
                try:
                    chat.invoke("q")
                except openai.InternalServerError:
                    failed += 1
            return failed, server.requests

    first = run()
    assert first == run()  # the same seed, the same requests failed
    failed, requests = first
    assert requests == 200 and 70 < failed < 130


async def test_async_clients_meet_the_same_faults(server: FaultServer) -> None:
    chat = client(server)
    assert (await chat.ainvoke("async hi")).text == "echo: async hi"
    server.fail("503")
    with pytest.raises(openai.InternalServerError):
        await chat.ainvoke("async hi")


def test_bad_fault_settings_are_refused(server: FaultServer) -> None:
    with pytest.raises(ValueError, match="unknown fault 'fire'"):
        server.fail("fire")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"rate is 1\.5"):
        server.fail("500", rate=1.5)
