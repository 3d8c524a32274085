"""Retrying LLM calls: real provider errors classified, Retry-After read, the loop bounded."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import httpx
import httpx2
import openai
import pytest
from blockbuster import BlockingError, blockbuster_ctx
from google.genai import errors as genai_errors
from langchain_google_genai.chat_models import GoogleModelNotFoundError, GoogleRateLimitError
from langchain_openai import ChatOpenAI

from graphops.errors import ConfigurationError
from graphops.resilience.retry import (
    GiveUpReason,
    RetryEvent,
    RetryPolicy,
    aretrying,
    deadline_left,
    failure_kind,
    is_transient,
    retry_after_s,
    retrying,
)
from graphops.resilience.retry_budget import RetryBudget
from tests.fault_server import FaultServer, fault_server

URL = "http://provider.test/v1/chat/completions"
REQUEST = httpx.Request("POST", URL)
SDK_REQUEST = httpx2.Request("POST", URL)  # openai 3.x is built on httpx2, not httpx
NOW = 1_700_000_000.0  # a fixed wall clock for HTTP dates
SDK = openai.OpenAI(api_key="x", base_url="http://provider.test/v1")  # never called


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with fault_server() as running:
        yield running


def chat(server: FaultServer, timeout: float = 5.0) -> ChatOpenAI:
    """A ChatOpenAI without its own retries: each call is one request."""
    return ChatOpenAI(
        model="m",
        api_key="x",
        base_url=server.url,
        max_retries=0,
        timeout=timeout,
    )


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    """The error the openai SDK raises for ``status`` (its own subclass, as it picks it)."""
    response = httpx2.Response(status, headers=headers, request=SDK_REQUEST)
    return SDK._make_status_error(f"status {status}", body=None, response=response)


# --- classification of real errors --------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"), [("500", "server"), ("503", "server"), ("429", "rate_limited")]
)
def test_real_status_faults_are_classified_and_429_carries_its_retry_after(
    server: FaultServer, fault: str, kind: str
) -> None:
    server.fail(fault, retry_after=7)  # type: ignore[arg-type]
    with pytest.raises(openai.APIStatusError) as caught:
        chat(server).invoke("hi")
    assert failure_kind(caught.value) == kind
    assert is_transient(caught.value)
    assert retry_after_s(caught.value) == (7.0 if fault == "429" else None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "kind"), [("500", "server"), ("503", "server"), ("429", "rate_limited")]
)
async def test_async_calls_meet_the_same_classification(
    server: FaultServer, fault: str, kind: str
) -> None:
    server.fail(fault, retry_after=2.5)  # type: ignore[arg-type]
    with pytest.raises(openai.APIStatusError) as caught:
        await chat(server).ainvoke("hi")
    assert failure_kind(caught.value) == kind
    assert retry_after_s(caught.value) == (2.5 if fault == "429" else None)


def test_a_hang_is_a_timeout_and_a_dropped_connection_a_connection_failure(
    server: FaultServer,
) -> None:
    server.fail("hang")
    with pytest.raises(openai.APITimeoutError) as hung:
        chat(server, timeout=0.3).invoke("hi")
    assert failure_kind(hung.value) == "timeout"
    server.fail("drop")
    with pytest.raises(openai.APIConnectionError) as dropped:
        chat(server).invoke("hi")
    assert failure_kind(dropped.value) == "connection"
    assert is_transient(hung.value) and is_transient(dropped.value)


@pytest.mark.anyio
async def test_async_hang_and_drop(server: FaultServer) -> None:
    server.fail("hang")
    with pytest.raises(openai.APITimeoutError) as hung:
        await chat(server, timeout=0.3).ainvoke("hi")
    server.fail("drop")
    with pytest.raises(openai.APIConnectionError) as dropped:
        await chat(server).ainvoke("hi")
    assert (failure_kind(hung.value), failure_kind(dropped.value)) == ("timeout", "connection")


# --- classification of constructed errors -------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "input"),
        (401, "auth"),
        (403, "auth"),
        (404, "other"),  # model not found: this provider's configuration, not the input
        (408, "timeout"),
        (409, "other"),
        (413, "input"),
        (422, "input"),
        (429, "rate_limited"),
        (500, "server"),
        (502, "server"),
        (504, "server"),
        (529, "server"),
    ],
)
def test_statuses_map_to_kinds_whatever_carries_them(status: int, kind: str) -> None:
    response = httpx.Response(status, request=REQUEST)
    carriers: list[BaseException] = [
        status_error(status),
        httpx.HTTPStatusError("bad", request=REQUEST, response=response),
        genai_errors.APIError(status, {"error": {"message": "x"}}),
    ]
    assert [failure_kind(e) for e in carriers] == [kind] * 3
    assert is_transient(carriers[0]) is (kind in {"timeout", "rate_limited", "server"})


class _WithStatus(Exception):
    def __init__(self, **attributes: Any) -> None:
        super().__init__("with attributes")
        self.__dict__.update(attributes)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (openai.APITimeoutError(SDK_REQUEST), "timeout"),
        (openai.APIConnectionError(request=SDK_REQUEST), "connection"),
        (httpx.ReadTimeout("slow", request=REQUEST), "timeout"),
        (httpx.ConnectError("refused", request=REQUEST), "connection"),
        (httpx.RemoteProtocolError("peer closed", request=REQUEST), "connection"),
        (httpx.UnsupportedProtocol("ftp://"), "other"),
        (httpx2.ReadTimeout("slow"), "timeout"),
        (httpx2.ConnectError("refused"), "connection"),
        (
            genai_errors.ClientError(429, {"error": {"status": "RESOURCE_EXHAUSTED"}}),
            "rate_limited",
        ),
        (genai_errors.ServerError(503, {"error": {"status": "UNAVAILABLE"}}), "server"),
        (genai_errors.ClientError(404, {"error": {"status": "NOT_FOUND"}}), "other"),
        (_WithStatus(status="DEADLINE_EXCEEDED"), "timeout"),  # a status name, no code
        (TimeoutError(), "timeout"),
        (ConnectionResetError(), "connection"),
        (_WithStatus(status_code=503), "server"),
        (_WithStatus(response=httpx.Response(413, request=REQUEST)), "input"),
        (_WithStatus(code=401), "auth"),
        (_WithStatus(code=2), "other"),  # an errno-like code is not an HTTP status
        (ValueError("a bug"), "other"),
    ],
)
def test_sdk_builtin_and_duck_typed_errors(error: BaseException, kind: str) -> None:
    assert failure_kind(error) == kind


def _raised_from(outer: Callable[[], BaseException], inner: BaseException) -> BaseException:
    try:
        raise outer() from inner
    except BaseException as wrapped:
        return wrapped


def test_wrapped_errors_are_judged_by_what_they_wrap() -> None:
    # langchain-google-genai raises its own classes from the SDK's ClientError
    limited = _raised_from(lambda: GoogleRateLimitError("quota"), genai_errors.ClientError(429, {}))
    missing = _raised_from(
        lambda: GoogleModelNotFoundError("no model"), genai_errors.ClientError(404, {})
    )
    assert (failure_kind(limited), failure_kind(missing)) == ("rate_limited", "other")
    # a plain wrapper, explicit (__cause__) or implicit (__context__)
    assert (
        failure_kind(_raised_from(lambda: RuntimeError("wrapped"), status_error(503))) == "server"
    )
    try:
        try:
            raise httpx.ReadTimeout("slow", request=REQUEST)
        except httpx.ReadTimeout:
            raise RuntimeError("while handling") from None
    except RuntimeError as suppressed:
        assert failure_kind(suppressed) == "other"  # ``from None`` cuts the chain
    try:
        try:
            raise httpx.ReadTimeout("slow", request=REQUEST)
        except httpx.ReadTimeout:
            raise RuntimeError("while handling")  # noqa: B904
    except RuntimeError as implicit:
        assert failure_kind(implicit) == "timeout"


def test_a_cycle_in_the_cause_chain_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert failure_kind(first) == "other"


# --- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),  # ...when it parses
        ({"retry-after": formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": formatdate(NOW - 30, usegmt=True)}, 0.0),  # past: never negative
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after-ms": "-3"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_from_the_errors_response(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after_s(status_error(429, headers), now=NOW) == seconds


def test_retry_after_without_a_response_plain_dict_headers_and_wrapped() -> None:
    assert retry_after_s(ValueError("no response")) is None
    assert retry_after_s(openai.APITimeoutError(SDK_REQUEST)) is None
    plain = _WithStatus(response=_WithStatus(headers={"Retry-After": "4"}))
    assert retry_after_s(plain) == 4.0
    assert retry_after_s(_raised_from(lambda: RuntimeError("x"), plain)) == 4.0


# --- the policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", 0),
        ("attempts", 2.5),
        ("attempts", True),
        ("backoff_s", -0.1),
        ("backoff_s", float("nan")),
        ("backoff_s", float("inf")),
        ("max_backoff_s", "4"),
        ("max_retry_after_s", -1),
        ("honour_retry_after", "yes"),
    ],
)
def test_bad_policy_values_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"RetryPolicy {field} is"):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_policy_defaults_and_backoff_caps() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.backoff_s, policy.max_backoff_s) == (3, 0.25, 4.0)
    assert [policy.backoff_cap_s(n) for n in (1, 2, 3, 5, 6, 10_000)] == [
        0.25,
        0.5,
        1.0,
        4.0,
        4.0,
        4.0,
    ]
    assert RetryPolicy(max_retry_after_s=float("inf")).max_retry_after_s == float("inf")
    with pytest.raises(ConfigurationError, match="give a RetryPolicy"):
        retrying({"attempts": 3})  # type: ignore[arg-type]


def test_deadline_left() -> None:
    now = [100.0]
    assert deadline_left(None)() is None
    left = deadline_left(105.0, clock=lambda: now[0])
    assert left() == 5.0
    now[0] = 107.0
    assert left() == -2.0


# --- the retrying loop ----------------------------------------------------------------


class Provider:
    """A callable that raises the given errors in turn, then answers ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            error = self.errors.pop(0)
            self.raised.append(error)
            raise error
        return "ok"


class Recorder:
    """The hooks and sleep of a loop, recorded; the sleep advances a fake clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.retries: list[RetryEvent] = []
        self.gave_up: list[tuple[GiveUpReason, BaseException]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def hooks(self) -> dict[str, Any]:
        return {"on_retry": self.retries.append, "on_give_up": self._give_up}

    def _give_up(self, reason: GiveUpReason, exc: BaseException) -> None:
        self.gave_up.append((reason, exc))


def test_transient_errors_are_retried_until_an_answer() -> None:
    rec, provider = Recorder(), Provider(status_error(503), httpx.ReadTimeout("slow"))
    loop = retrying(RetryPolicy(), sleep=rec.sleep, rng=random.Random(1), **rec.hooks())
    assert loop(provider) == "ok"
    assert provider.calls == 3 and len(rec.sleeps) == 2 and rec.gave_up == []
    assert [(e.attempt, e.exception, e.kind) for e in rec.retries] == [
        (1, provider.raised[0], "server"),
        (2, provider.raised[1], "timeout"),
    ]
    assert [e.sleep_s for e in rec.retries] == rec.sleeps


def test_a_non_transient_error_is_raised_at_once_as_the_provider_raised_it() -> None:
    rec, provider = Recorder(), Provider(status_error(400))
    with pytest.raises(openai.BadRequestError) as caught:
        retrying(RetryPolicy(), sleep=rec.sleep, **rec.hooks())(provider)
    assert caught.value is provider.raised[0]
    assert provider.calls == 1 and rec.sleeps == [] and rec.retries == []
    assert rec.gave_up == [("not_transient", provider.raised[0])]


def test_attempts_are_used_up_and_the_last_error_is_reraised() -> None:
    rec = Recorder()
    provider = Provider(*(status_error(500) for _ in range(5)))
    with pytest.raises(openai.InternalServerError) as caught:
        retrying(RetryPolicy(attempts=3), sleep=rec.sleep, **rec.hooks())(provider)
    assert provider.calls == 3 and len(rec.sleeps) == 2
    assert caught.value is provider.raised[-1]
    assert rec.gave_up == [("attempts", provider.raised[-1])]


def test_a_cancellation_is_not_retried_nor_reported_as_a_give_up() -> None:
    rec, provider = Recorder(), Provider(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        retrying(RetryPolicy(), sleep=rec.sleep, **rec.hooks())(provider)
    assert provider.calls == 1 and rec.gave_up == []


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    rec = Recorder()
    policy = RetryPolicy(attempts=7, backoff_s=1.0, max_backoff_s=4.0)
    provider = Provider(*(status_error(502) for _ in range(7)))
    with pytest.raises(openai.InternalServerError):
        retrying(policy, sleep=rec.sleep, rng=random.Random(42))(provider)
    caps = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    replay = random.Random(42)
    assert rec.sleeps == [replay.uniform(0.0, cap) for cap in caps]
    assert all(0.0 <= wait <= cap for wait, cap in zip(rec.sleeps, caps, strict=True))


def test_retry_after_is_waited_out_when_honoured_and_ignored_when_not() -> None:
    rec = Recorder()
    provider = Provider(status_error(429, {"retry-after": "3"}))
    assert retrying(RetryPolicy(), sleep=rec.sleep)(provider) == "ok"
    assert rec.sleeps == [3.0]  # jitter is at most 0.25 s, the provider asked for 3
    rec = Recorder()
    provider = Provider(status_error(429, {"retry-after": "3"}))
    assert retrying(RetryPolicy(honour_retry_after=False), sleep=rec.sleep)(provider) == "ok"
    assert len(rec.sleeps) == 1 and rec.sleeps[0] <= 0.25


def test_a_retry_after_longer_than_the_cap_gives_up_without_waiting() -> None:
    rec = Recorder()
    provider = Provider(status_error(429, {"retry-after": "60"}))
    with pytest.raises(openai.RateLimitError):
        retrying(RetryPolicy(max_retry_after_s=20), sleep=rec.sleep, **rec.hooks())(provider)
    assert provider.calls == 1 and rec.sleeps == []
    assert rec.gave_up == [("retry_after", provider.raised[0])]


def test_a_sleep_that_would_cross_the_deadline_is_not_taken() -> None:
    rec = Recorder()
    provider = Provider(*(status_error(503, {"retry-after": "4"}) for _ in range(10)))
    loop = retrying(
        RetryPolicy(attempts=10),
        time_left=deadline_left(10.0, clock=lambda: rec.now),
        sleep=rec.sleep,
        **rec.hooks(),
    )
    with pytest.raises(openai.InternalServerError):
        loop(provider)
    assert rec.sleeps == [4.0, 4.0]  # a third would end at 12 s, past the 10 s deadline
    assert rec.now <= 10.0 and provider.calls == 3
    assert rec.gave_up == [("deadline", provider.raised[-1])]


def test_a_spent_deadline_allows_no_retry_at_all() -> None:
    rec, provider = Recorder(), Provider(status_error(503))
    with pytest.raises(openai.InternalServerError):
        retrying(RetryPolicy(), time_left=lambda: 0.0, sleep=rec.sleep, **rec.hooks())(provider)
    assert provider.calls == 1 and rec.gave_up[0][0] == "deadline"


def test_the_budget_pays_for_retries_and_stops_them_when_spent() -> None:
    budget = RetryBudget(percent=0.2, min_per_s=0, clock=lambda: 0.0)
    for _ in range(4):
        budget.deposit()  # with this call's own deposit: five calls, one retry
    rec = Recorder()
    provider = Provider(*(status_error(500) for _ in range(3)))
    with pytest.raises(openai.InternalServerError):
        retrying(RetryPolicy(attempts=5), budget=budget, sleep=rec.sleep, **rec.hooks())(provider)
    assert provider.calls == 2 and len(rec.retries) == 1
    assert rec.gave_up == [("budget", provider.raised[-1])]
    assert budget.balance() == 0


def test_the_budget_is_withdrawn_only_for_a_retry_that_happens() -> None:
    budget = RetryBudget(percent=1.0, min_per_s=0, clock=lambda: 0.0)
    budget.deposit()
    for provider, policy in [
        (Provider(status_error(500)), RetryPolicy(attempts=1)),  # attempts stop it first
        (Provider(status_error(429, {"retry-after": "99"})), RetryPolicy()),
        (Provider(status_error(401)), RetryPolicy()),
    ]:
        with pytest.raises(openai.APIStatusError):
            retrying(policy, budget=budget, sleep=Recorder().sleep)(provider)
    assert budget.balance() == 4  # one deposit before, three calls' deposits, no withdrawal


def test_a_retrying_object_can_be_reused_call_after_call() -> None:
    rec = Recorder()
    loop = retrying(RetryPolicy(), sleep=rec.sleep)
    assert loop(Provider(status_error(503))) == "ok"
    assert loop(Provider(status_error(503), status_error(503))) == "ok"
    assert len(rec.sleeps) == 3
    for attempt in retrying(RetryPolicy(), sleep=rec.sleep):  # the iterator form too
        with attempt:
            result = Provider()()
    assert result == "ok"


# --- async ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_async_twin_retries_gives_up_and_reraises_the_same() -> None:
    rec = Recorder()
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise status_error(503)
        return "ok"

    loop = aretrying(RetryPolicy(), sleep=rec.asleep, rng=random.Random(3), **rec.hooks())
    assert await loop(flaky) == "ok"
    assert len(calls) == 3 and len(rec.sleeps) == 2 and len(rec.retries) == 2

    provider = Provider(*(status_error(500) for _ in range(3)))

    async def failing() -> str:
        return provider()

    with pytest.raises(openai.InternalServerError) as caught:
        await aretrying(RetryPolicy(), sleep=rec.asleep, **rec.hooks())(failing)
    assert caught.value is provider.raised[-1]
    assert rec.gave_up == [("attempts", provider.raised[-1])]

    bad = Provider(status_error(422))

    async def invalid() -> str:
        return bad()

    with pytest.raises(openai.UnprocessableEntityError):
        await aretrying(RetryPolicy(), sleep=rec.asleep, **rec.hooks())(invalid)
    assert bad.calls == 1 and rec.gave_up[-1] == ("not_transient", bad.raised[0])


@pytest.mark.anyio
async def test_async_sleeps_do_not_block_the_event_loop() -> None:
    async def flaky(provider: Provider) -> str:
        return provider()

    fast = RetryPolicy(backoff_s=0.001, max_backoff_s=0.001)
    with blockbuster_ctx():
        # the default sleep is anyio's: a real sleep, on the loop, that blockbuster allows
        assert await aretrying(fast)(flaky, Provider(status_error(503))) == "ok"
        # while a time.sleep on the loop is caught: the check above is a real one
        with pytest.raises(BlockingError):
            retrying(fast)(Provider(status_error(503)))
