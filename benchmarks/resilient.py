"""Overhead of the resilient chat model against the bare inner model, measured in one process.

    cd benchmarks && ../.venv/bin/python resilient.py [--calls N] [--rounds R]

The inner model is an in-process fake (a ``BaseChatModel`` answering a fixed
message, no I/O), so what is left is the resilient model's own cost: the run scope
and span lookups, the breaker's permit and record (memory breakers), the retry
budget's deposit, the chain's bookkeeping. Rows, each called through LangChain's
``invoke`` / ``ainvoke`` as an application would:

* ``bare``: the fake alone;
* ``resilient, 2 links``: ``resilient_chat`` over two fakes, the primary answering
  (memory breakers, a retry budget per link: the defaults);
* ``resilient, 2 links, no retry budget``: the same with ``retry_budget=None``;
* ``resilient, a retry every call``: the primary fails every call's first attempt
  with a ``ConnectionError`` and answers its retry (no backoff): what a retry costs
  when one is needed (the only case that builds a tenacity controller); its fake
  is called twice, so its overhead includes a second fake call.

The configurations take turns call by call, so the machine's drift hits all alike.
Printed per row: the median µs per call (the median round), its ratio to ``bare``,
the overhead over ``bare`` in µs (median round, lowest and highest), and for the
two steady rows the target: under 100 µs (0.1 ms) of overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from prometheus_client import CollectorRegistry

from graphops.models.resilient import resilient_chat
from graphops.observe.metrics import Metrics
from graphops.resilience.retry import RetryPolicy

TARGET_US = 100.0
BARE = "bare"
STEADY = ("resilient, 2 links", "resilient, 2 links, no retry budget")


class Fake(BaseChatModel):
    """Answers ``"ok"`` at once; ``fail_every`` > 0 fails every n-th call (a dropped connection).

    With ``fail_every=2`` behind a retry, every first attempt fails and its retry answers.
    """

    fail_every: int = 0
    count: int = 0

    @property
    def _llm_type(self) -> str:
        return "fake"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.count += 1
        if self.fail_every and self.count % self.fail_every == 0:
            raise ConnectionError("dropped")
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        return self._generate(messages, *args, **kwargs)


def models() -> dict[str, BaseChatModel]:
    metrics = Metrics(CollectorRegistry())  # not the process's registry
    no_wait = RetryPolicy(attempts=2, backoff_s=0.0, max_backoff_s=0.0)
    return {
        BARE: Fake(),
        STEADY[0]: resilient_chat({"a": Fake(), "b": Fake()}, metrics=metrics),
        STEADY[1]: resilient_chat({"a": Fake(), "b": Fake()}, retry_budget=None, metrics=metrics),
        "resilient, a retry every call": resilient_chat(
            {"a": Fake(fail_every=2), "b": Fake()}, retry=no_wait, metrics=metrics
        ),
    }


Round = dict[str, float]  # each row's median µs per call in one round


def interleaved(chats: dict[str, BaseChatModel], calls: int) -> Round:
    """One round: each row's median µs per ``invoke``, the rows taking turns call by call."""
    samples: dict[str, list[float]] = {name: [] for name in chats}
    for _ in range(calls):
        for name, chat in chats.items():
            started = time.perf_counter()
            chat.invoke("hello")
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


async def ainterleaved(chats: dict[str, BaseChatModel], calls: int) -> Round:
    """:func:`interleaved` for ``ainvoke``."""
    samples: dict[str, list[float]] = {name: [] for name in chats}
    for _ in range(calls):
        for name, chat in chats.items():
            started = time.perf_counter()
            await chat.ainvoke("hello")
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


def print_table(title: str, rounds: list[Round]) -> bool:
    """Per row: median µs, ratio to bare, overhead µs (median, lowest-highest round), target."""
    print(f"{title:<48}{'µs/call':>9}{'ratio':>7}{'overhead µs':>13}{'rounds':>16}  target")
    met = True
    for name in rounds[0]:
        value = statistics.median(r[name] for r in rounds)
        ratio = statistics.median(r[name] / r[BARE] for r in rounds)
        extra = [r[name] - r[BARE] for r in rounds]
        spread = f"{min(extra):.1f}-{max(extra):.1f}"
        verdict = ""
        if name in STEADY:
            ok = statistics.median(extra) < TARGET_US
            met = met and ok
            verdict = f"< {TARGET_US:.0f} µs: {'yes' if ok else 'NO'}"
        overhead = f"{statistics.median(extra):.1f}" if name != BARE else "-"
        print(f"{name:<48}{value:>9.1f}{ratio:>7.2f}{overhead:>13}{spread:>16}  {verdict}")
    print()
    return met


def measure(
    title: str, run: Callable[[dict[str, BaseChatModel], int], Round], calls: int, rounds: int
) -> bool:
    chats = models()
    run(chats, 300)  # warm up: imports, pydantic, caches
    return print_table(title, [run(chats, calls) for _ in range(rounds)])


async def ameasure(
    title: str,
    run: Callable[[dict[str, BaseChatModel], int], Awaitable[Round]],
    calls: int,
    rounds: int,
) -> bool:
    chats = models()
    await run(chats, 300)
    return print_table(title, [await run(chats, calls) for _ in range(rounds)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per row per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    met = measure("invoke (sync), memory breakers", interleaved, args.calls, args.rounds)
    title = "ainvoke (async), memory breakers"
    met = asyncio.run(ameasure(title, ainterleaved, args.calls, args.rounds)) and met
    print(f"target (overhead under {TARGET_US:.0f} µs per call): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
