"""At most N calls in flight per provider: a chat model wrapper over concurrency slots.

Why in the model: providers cap concurrent requests per key (and answer the
excess with 429s), a local llama.cpp model serialises them anyway, and a limit
set in graph nodes misses the calls tools, sub-chains and structured-output
parsers make. Every call passes through the model layer, so the limit sits there.

Each call of :class:`ConcurrencyLimitedChatModel` (``invoke``, ``ainvoke``, each
item of a ``batch``, ``stream``, ``astream``, structured output, bound tools)
holds one slot of ``llm:<provider>`` (see :func:`~graphops.limits.slots.slot_key`)
for its duration; a stream holds it until it ends or is closed. The slots are
:mod:`graphops.limits.slots`: leases renewed in the background while the call
runs (so a killed process's slots come back after ``ttl_s``), waiters served in
the order they came. By default they live in one in-memory store shared by the
whole process, so two wrapped models of one provider share its limit and two
providers never share one; give ``slots=Slots(RedisSlotStore.from_url(...))``
to share the limit across processes.

A call waits at most ``wait_s`` for a slot, and never past its run's deadline
(``RunScope.deadline``, found through the call's callbacks), then raises
:class:`~graphops.limits.slots.SlotRefused` with ``retry_after_s``. The wait is
inside the LLM run (after ``on_chat_model_start``), like LangChain's own rate
limiter, so an LLM span's duration includes it; cache hits and rate-limiter
waits come first and hold no slot. When the store cannot answer, ``fail="open"``
(the default) lets the call go ahead unlimited, with a warning; ``"closed"``
raises :class:`~graphops.errors.ModelError`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, NoReturn, get_args

import anyio
from langchain_core.language_models import BaseChatModel
from pydantic import Field, model_validator

from graphops.errors import ConfigurationError, ModelError
from graphops.limits.policy import FailMode
from graphops.limits.slot_store import Lease, Refused, SlotRefused, Wait, slot_key
from graphops.limits.slots import Slots
from graphops.limits.slots_memory import MemorySlotStore
from graphops.limits.store import StoreUnavailable
from graphops.models.wrapper import ModelCall, WrapperChatModel

__all__ = ["ConcurrencyLimitedChatModel", "limit_concurrency", "shared_slots"]

_log = logging.getLogger("graphops.limits")

_shared: Slots | None = None
_shared_lock = threading.Lock()


def shared_slots() -> Slots:
    """The process's in-memory slots: what every limited model uses unless given its own."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Slots(MemorySlotStore())
        return _shared


def _bad(name: str, value: object, fix: str) -> NoReturn:
    raise ConfigurationError(f"ConcurrencyLimitedChatModel.{name} is {value!r}: {fix}")


class ConcurrencyLimitedChatModel(WrapperChatModel):
    """``inner`` with at most ``max_in_flight`` calls in flight per ``provider`` at once.

    ``provider`` defaults to the inner model's ``ls_provider`` (``"openai"``,
    ``"llama_cpp"``, ...); name one yourself for, say, an OpenAI-compatible server
    of your own. Wrappers sharing a provider and ``slots`` share the limit, and
    should agree on ``max_in_flight``: each call is admitted against its own.
    """

    max_in_flight: int
    provider: str = ""  # "": the inner model's ls_provider, filled in as it is built
    slots: Slots = Field(default_factory=shared_slots)
    wait_s: float = 30.0
    fail: FailMode = "open"

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        inner, count = data.get("inner"), data.get("max_in_flight")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            _bad("max_in_flight", count, "give a whole number of calls, at least 1")
        wait = data.get("wait_s", 30.0)
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait < math.inf:
            _bad("wait_s", wait, "give a number of seconds above 0")
        if data.get("fail", "open") not in get_args(FailMode):
            _bad("fail", data.get("fail"), "give 'open' or 'closed'")
        if "slots" in data and not isinstance(data["slots"], Slots):
            _bad("slots", data["slots"], "give a graphops.limits.slots.Slots, or leave it out")
        provider = data.get("provider")
        if provider is None and isinstance(inner, BaseChatModel):
            provider = inner._get_ls_params().get("ls_provider")
            data = {**data, "provider": provider}
        if isinstance(inner, BaseChatModel) and (not isinstance(provider, str) or not provider):
            _bad("provider", provider, "name the provider whose calls are limited, like 'openai'")
        return data

    @property
    def key(self) -> str:
        """The slot key every call holds one slot of."""
        return slot_key("llm", self.provider)

    def _wait(self, call: ModelCall) -> Wait:
        deadline = call.scope.deadline if call.scope is not None else None
        return {"timeout": self.wait_s, "deadline": deadline}

    # ------------------------------------------------------------ sync
    @contextmanager
    def around(self, call: ModelCall) -> Iterator[None]:
        try:
            got = self.slots.acquire(self.key, self.max_in_flight, **self._wait(call))
        except StoreUnavailable as exc:
            self._unavailable(exc)
            yield
            return
        lease = self._granted(got)
        try:
            with self.slots.keep_alive(lease):
                yield
        finally:
            try:
                self.slots.release(lease)
            except StoreUnavailable as exc:
                _log.warning("could not release the slot on %r (it lapses): %s", self.key, exc)

    # ------------------------------------------------------------ async
    @asynccontextmanager
    async def aaround(self, call: ModelCall) -> AsyncIterator[None]:
        try:
            got = await self.slots.aacquire(self.key, self.max_in_flight, **self._wait(call))
        except StoreUnavailable as exc:
            self._unavailable(exc)
            yield
            return
        lease = self._granted(got)
        # renewed from a thread, not a task group: this block may span a stream's yields
        renewal = None
        try:
            renewal = self.slots.keep_alive(lease)
            yield
        finally:
            if renewal is not None:
                renewal.stop()
            with anyio.CancelScope(shield=True):
                try:
                    await self.slots.arelease(lease)
                except StoreUnavailable as exc:
                    _log.warning("could not release the slot on %r (it lapses): %s", self.key, exc)

    # ------------------------------------------------------------ outcomes
    def _granted(self, got: Lease | Refused) -> Lease:
        if isinstance(got, Refused):
            raise SlotRefused(got)
        return got

    def _unavailable(self, exc: StoreUnavailable) -> None:
        if self.fail == "closed":
            raise ModelError(
                f"the slot store for {self.key!r} did not answer ({exc}), and fail='closed'"
            ) from exc
        _log.warning("the slot store for %r did not answer, calling unlimited: %s", self.key, exc)


def limit_concurrency(
    model: BaseChatModel,
    max_in_flight: int,
    *,
    provider: str | None = None,
    slots: Slots | None = None,
    wait_s: float = 30.0,
    fail: FailMode = "open",
) -> ConcurrencyLimitedChatModel:
    """``model`` with at most ``max_in_flight`` calls of its provider in flight at once.

    ``limit_concurrency(ChatOpenAI(model="gpt-4o-mini"), 8)``: every call holds one of
    8 slots of ``llm:openai``, shared with every other limited OpenAI model of the
    process (or of every process on ``slots``' Redis).
    """
    data: dict[str, Any] = {
        "inner": model,
        "max_in_flight": max_in_flight,
        "wait_s": wait_s,
        "fail": fail,
    }
    if provider is not None:
        data["provider"] = provider
    if slots is not None:
        data["slots"] = slots
    return ConcurrencyLimitedChatModel(**data)
