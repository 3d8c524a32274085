"""Retrying LLM calls: which errors a retry can fix, how long to wait, when to stop.

Three layers, each usable alone:

* :func:`failure_kind` sorts a provider's exception (openai, httpx or httpx2,
  google-genai, LangChain's ``ModelError`` types, builtins, anything carrying an HTTP
  status) by what could fix it. ``timeout``, ``connection``, ``rate_limited`` and
  ``server`` are transient (:func:`is_transient`): the same request may work in a
  moment. ``input`` would fail anywhere. ``auth`` and ``other`` will not fix
  themselves; another provider may.
* :func:`retry_after_s` reads how long the provider asked us to wait.
* :class:`RetryPolicy` is the immutable value object; :func:`retrying` and
  :func:`aretrying` build tenacity controllers from it: full-jitter exponential
  backoff that waits at least ``Retry-After``, and a stop that gives up when the
  attempts are used, when the next sleep would cross the caller's deadline, when the
  provider asks for a longer wait than we will sit through, or when the shared
  :class:`~graphops.resilience.retry_budget.RetryBudget` refuses.

tenacity 9 runs the wait strategy *before* the stop strategy and keeps the result in
``retry_state.upcoming_sleep``, so the stop can refuse a sleep that would end past the
deadline instead of sleeping and then finding the time gone.

A controller holds per-call state (tenacity keeps it thread-local, not task-local):
build one per call. It is cheap (a few microseconds).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal, NoReturn

import anyio
import tenacity
from tenacity import RetryCallState

from graphops.errors import ConfigurationError
from graphops.resilience.retry_budget import RetryBudget

__all__ = [
    "FailureKind",
    "GiveUpReason",
    "RetryEvent",
    "RetryPolicy",
    "aretrying",
    "deadline_left",
    "failure_kind",
    "is_transient",
    "retry_after_s",
    "retrying",
]

FailureKind = Literal["timeout", "connection", "rate_limited", "server", "input", "auth", "other"]
GiveUpReason = Literal["attempts", "deadline", "retry_after", "budget", "not_transient"]

TRANSIENT: frozenset[FailureKind] = frozenset({"timeout", "connection", "rate_limited", "server"})

# 404 is "other", not "input": on an LLM API it nearly always means the model (or the
# deployment, or the base URL) does not exist there. That is this provider's
# configuration, not the request: another provider can answer the same input, and
# calling it "input" would tell the caller not to try one.
_STATUS_KINDS: dict[int, FailureKind] = {400: "input", 401: "auth", 403: "auth", 404: "other"}
_STATUS_KINDS |= {408: "timeout", 413: "input", 422: "input", 429: "rate_limited"}
# google-genai's gRPC-style status names, read only when an error has no HTTP code
_GOOGLE_STATUS_KINDS: dict[str, FailureKind] = {
    "DEADLINE_EXCEEDED": "timeout", "RESOURCE_EXHAUSTED": "rate_limited", "UNAVAILABLE": "server",
    "INTERNAL": "server", "INVALID_ARGUMENT": "input", "FAILED_PRECONDITION": "input",
    "UNAUTHENTICATED": "auth", "PERMISSION_DENIED": "auth", "NOT_FOUND": "other",
}  # fmt: skip
_LC = "langchain_core.exceptions"
# (module, class, kind), tried in order; None: the class carries a status, read it.
# Classes are looked up in sys.modules, never imported: an SDK that is not loaded
# raised nothing, so classifying costs no import and tolerates a missing package.
# google-genai's APIError needs no row: its ``code`` / ``status`` are read below, and
# langchain-google-genai's wrappers (no code of their own) are LangChain ModelErrors.
_TYPE_ROWS: tuple[tuple[str, str, FailureKind | None], ...] = (
    ("openai", "APITimeoutError", "timeout"),  # before APIConnectionError, its base class
    ("openai", "APIConnectionError", "connection"),
    ("openai", "APIStatusError", None),
    *(
        row
        for module in ("httpx", "httpx2")  # httpx2: the fork openai 3 and google-genai use
        for row in (
            (module, "TimeoutException", "timeout"),
            (module, "UnsupportedProtocol", "other"),  # a bad URL: ours to fix, not a retry's
            (module, "LocalProtocolError", "other"),
            (module, "TransportError", "connection"),
            (module, "HTTPStatusError", None),
        )
    ),
    (_LC, "ModelTimeoutError", "timeout"),
    (_LC, "ModelConnectionError", "connection"),
    (_LC, "ModelRateLimitError", "rate_limited"),
    (_LC, "ModelAPIError", "server"),
    (_LC, "ModelAuthenticationError", "auth"),
    (_LC, "ModelPermissionDeniedError", "auth"),
    (_LC, "ModelInvalidRequestError", "input"),
    (_LC, "ContextOverflowError", "input"),
    (_LC, "ModelNotFoundError", "other"),
    ("builtins", "TimeoutError", "timeout"),
    ("builtins", "ConnectionError", "connection"),
)
_CHAIN_DEPTH = 8


def _status_kind(status: int) -> FailureKind:
    if 500 <= status <= 599:
        return "server"  # 500, 502, 503, 504, Anthropic's 529 "overloaded", ...
    return _STATUS_KINDS.get(status, "other")


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status an error carries: ``status_code``, ``response.status_code``, ``code``."""
    for value in (exc, getattr(exc, "response", None)):
        status = getattr(value, "status_code", None)
        if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
            return status
    code = getattr(exc, "code", None)
    # ``code`` means many things (errno, exit codes, gRPC enums): trust only an error status
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    return None


def _own_kind(exc: BaseException) -> FailureKind | None:
    """The kind of one exception, ignoring its cause (None: it does not say)."""
    for module_name, class_name, kind in _TYPE_ROWS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            if kind is not None:
                return kind
            break
    status = _http_status(exc)
    if status is not None:
        return _status_kind(status)
    name = getattr(exc, "status", None)
    return _GOOGLE_STATUS_KINDS.get(name) if isinstance(name, str) else None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it was raised from (or during), as a traceback shows them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_DEPTH:
        seen.add(id(current))
        yield current
        cause = current.__cause__
        if cause is None and not current.__suppress_context__:
            cause = current.__context__
        current = cause


def failure_kind(exc: BaseException) -> FailureKind:
    """What kind of failure ``exc`` is, judged by what could fix it.

    The first exception in the cause chain that says anything decides: LangChain and
    the SDKs wrap one another (``raise Wrapper(...) from original``).
    """
    for link in _chain(exc):
        kind = _own_kind(link)
        if kind is not None:
            return kind
    return "other"


def is_transient(exc: BaseException) -> bool:
    """Whether the same request, sent again soon, may succeed."""
    return failure_kind(exc) in TRANSIENT


def retry_after_s(exc: BaseException, *, now: float | None = None) -> float | None:
    """Seconds the provider asked us to wait (``retry-after-ms``, ``retry-after``).

    ``retry-after`` may be seconds or an HTTP date, taken relative to ``now`` (epoch
    seconds, default the wall clock). None when no header is there or none parses;
    a date in the past gives 0, a negative or non-finite number gives None.
    """
    for link in _chain(exc):
        headers = getattr(getattr(link, "response", None), "headers", None)
        if not isinstance(headers, Mapping):
            continue
        millis = _seconds(_header(headers, "retry-after-ms"))
        if millis is not None:
            return millis / 1000.0
        value = _header(headers, "retry-after")
        seconds = _seconds(value)
        if seconds is not None:
            return seconds
        if value is not None:
            return _until_date(value, time.time() if now is None else now)
    return None


def _header(headers: Mapping[Any, Any], name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):  # a plain dict is case-sensitive
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    return value.strip() if isinstance(value, str) else None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _until_date(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; a zone-less one is not an HTTP date
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one provider's calls are retried.

    ``attempts`` counts the first call. The n-th retry waits
    ``uniform(0, min(max_backoff_s, backoff_s * 2 ** (n - 1)))`` ("full jitter", so
    callers that failed together do not retry together), but at least the provider's
    ``Retry-After`` when ``honour_retry_after``. A provider asking for more than
    ``max_retry_after_s`` is not retried at all: the caller falls back instead of
    waiting. ``honour_retry_after=False`` ignores the header altogether.
    """

    attempts: int = 3
    backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    max_retry_after_s: float = 20.0
    honour_retry_after: bool = True

    def __post_init__(self) -> None:
        attempts = self.attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            _refuse("attempts", attempts, "a whole number, 1 or more (the first call counts)")
        for name in ("backoff_s", "max_backoff_s", "max_retry_after_s"):
            value = getattr(self, name)
            finite = name != "max_retry_after_s"  # inf there: wait out any Retry-After
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or math.isnan(value) or value < 0 or (finite and math.isinf(value)):
                _refuse(name, value, "seconds, 0 or more" + (", finite" if finite else ""))
        if not isinstance(self.honour_retry_after, bool):
            _refuse("honour_retry_after", self.honour_retry_after, "True or False")

    def backoff_cap_s(self, retry: int) -> float:
        """The longest the ``retry``-th retry (1-based) may wait before jitter."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** min(retry - 1, 64))


def _refuse(field: str, value: object, wanted: str) -> NoReturn:
    raise ConfigurationError(f"RetryPolicy {field} is {value!r}: give {wanted}")


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A retry about to happen: attempt ``attempt`` (1 = the first call) failed."""

    attempt: int
    exception: BaseException
    sleep_s: float
    kind: FailureKind


def deadline_left(
    deadline_monotonic: float | None, *, clock: Callable[[], float] = time.monotonic
) -> Callable[[], float | None]:
    """A ``time_left`` for :func:`retrying`: seconds to the deadline (None: no deadline)."""
    if deadline_monotonic is None:
        return lambda: None
    return lambda: deadline_monotonic - clock()


_RNG = random.Random()


class _Strategy:
    """The retry, wait, stop and hooks of one controller, sharing one policy and budget."""

    def __init__(
        self,
        policy: RetryPolicy,
        time_left: Callable[[], float | None],
        budget: RetryBudget | None,
        on_retry: Callable[[RetryEvent], None] | None,
        on_give_up: Callable[[GiveUpReason, BaseException], None] | None,
        rng: random.Random | None,
    ) -> None:
        if not isinstance(policy, RetryPolicy):
            raise ConfigurationError(f"policy is {policy!r}: give a RetryPolicy")
        self.policy, self.time_left, self.budget = policy, time_left, budget
        self.on_retry, self.on_give_up, self.rng = on_retry, on_give_up, rng or _RNG

    def kwargs(self) -> dict[str, Any]:
        return {
            "retry": self.retry,
            "wait": self.wait,
            "stop": self.stop,
            "before": self.before,
            "before_sleep": self.before_sleep,
            "reraise": True,
        }

    def retry(self, state: RetryCallState) -> bool:
        """Retry transient failures only; a success or any other error ends the loop."""
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is None:
            return False
        if is_transient(exc):
            return True
        if isinstance(exc, Exception):  # a cancellation is not a provider giving up
            self._give_up("not_transient", exc)
        return False

    def wait(self, state: RetryCallState) -> float:
        """Full-jitter exponential backoff, but at least ``Retry-After`` when honoured."""
        jitter = self.rng.uniform(0.0, self.policy.backoff_cap_s(state.attempt_number))
        asked = self._retry_after(_failure(state))
        return jitter if asked is None else max(jitter, asked)

    def stop(self, state: RetryCallState) -> bool:
        """Attempts, Retry-After, deadline, then the budget: asked last, a withdrawal
        happens only when the retry really will."""
        exc = _failure(state)
        if state.attempt_number >= self.policy.attempts:
            return self._give_up("attempts", exc)
        asked = self._retry_after(exc)
        if asked is not None and asked > self.policy.max_retry_after_s:
            return self._give_up("retry_after", exc)
        left = self.time_left()
        if left is not None and state.upcoming_sleep >= left:
            return self._give_up("deadline", exc)
        if self.budget is not None and not self.budget.try_withdraw():
            return self._give_up("budget", exc)
        return False

    def before(self, state: RetryCallState) -> None:
        if state.attempt_number == 1 and self.budget is not None:
            self.budget.deposit()  # every call pays in once; its retries draw on it

    def before_sleep(self, state: RetryCallState) -> None:
        if self.on_retry is not None:
            exc = _failure(state)
            event = RetryEvent(state.attempt_number, exc, state.upcoming_sleep, failure_kind(exc))
            self.on_retry(event)

    def _retry_after(self, exc: BaseException) -> float | None:
        return retry_after_s(exc) if self.policy.honour_retry_after else None

    def _give_up(self, reason: GiveUpReason, exc: BaseException) -> bool:
        if self.on_give_up is not None:
            self.on_give_up(reason, exc)
        return True


def _failure(state: RetryCallState) -> BaseException:
    exc = state.outcome.exception() if state.outcome is not None else None
    if exc is None:
        raise RuntimeError("tenacity asked about the failure of an attempt that did not fail")
    return exc


def retrying(
    policy: RetryPolicy,
    *,
    time_left: Callable[[], float | None] = lambda: None,
    budget: RetryBudget | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    on_give_up: Callable[[GiveUpReason, BaseException], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    rng: random.Random | None = None,
) -> tenacity.Retrying:
    """A tenacity controller applying ``policy`` to one call (``for attempt in ...`` or ``(fn)``).

    ``time_left()`` gives the seconds left before the caller's deadline (None: none).
    ``budget`` gets a deposit on each first attempt and a withdrawal per retry.
    ``on_retry`` hears of each retry before its sleep; ``on_give_up`` hears why the
    loop ended on a failure, which is then re-raised as the provider raised it.
    ``sleep`` defaults to ``time.sleep``, looked up now (so a patched one is seen).
    """
    strategy = _Strategy(policy, time_left, budget, on_retry, on_give_up, rng)
    return tenacity.Retrying(sleep=sleep or time.sleep, **strategy.kwargs())


def aretrying(
    policy: RetryPolicy,
    *,
    time_left: Callable[[], float | None] = lambda: None,
    budget: RetryBudget | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    on_give_up: Callable[[GiveUpReason, BaseException], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    rng: random.Random | None = None,
) -> tenacity.AsyncRetrying:
    """The async twin of :func:`retrying`; it sleeps with ``anyio.sleep``, not blocking."""
    strategy = _Strategy(policy, time_left, budget, on_retry, on_give_up, rng)
    return tenacity.AsyncRetrying(sleep=sleep or anyio.sleep, **strategy.kwargs())
