"""The in-flight bound of limited chat models, shared by two processes over the real Redis.

Each process wraps its own scripted model (threads in one, asyncio tasks in the
other; invoke and stream in both) around slots in the shared Redis, under this
test's own key prefix (deleted afterwards; Redis is never flushed). The scripted
model counts the calls inside it in Redis too, so the bound is measured across
processes. Without Redis on 127.0.0.1:6379 the tests skip, unless ``CI`` is set.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from graphops.limits.slot_store import SlotRefused
from graphops.limits.slots import Slots
from graphops.limits.slots_redis import RedisSlotStore
from graphops.models import ScriptedChatModel
from graphops.models.limited import limit_concurrency
from tests.integration.redis_support import ROOT, hear, tell

TIMEOUT = 1.0  # per Redis call: generous, the machine is shared

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time
    import redis
    from graphops.limits.slots import Slots
    from graphops.limits.slots_redis import RedisSlotStore
    from graphops.models import ScriptedChatModel
    from graphops.models.limited import limit_concurrency

    spec = json.loads(sys.argv[1])
    counts = redis.Redis.from_url(spec["url"], socket_timeout=5)
    inside, seen = spec["prefix"] + "inside", spec["prefix"] + "seen"
    release = threading.Event()

    def respond(messages):
        counts.rpush(seen, counts.incr(inside))  # how many calls are inside, this one included
        if spec["mode"] == "hold":
            release.wait(60)
        else:
            time.sleep(spec["hold_s"])
        counts.decr(inside)
        return "done"

    store = RedisSlotStore.from_url(spec["url"], timeout=spec["timeout"], prefix=spec["prefix"])
    model = limit_concurrency(
        ScriptedChatModel(respond=respond), spec["n"], slots=Slots(store, ttl_s=5), wait_s=60
    )

    def call(i):
        if i % 2:
            return "".join(chunk.text for chunk in model.stream("q"))
        return model.invoke("q").text

    async def acall(i):
        if i % 2:
            return "".join([chunk.text async for chunk in model.astream("q")])
        return (await model.ainvoke("q")).text

    answers = []
    threads = [
        threading.Thread(target=lambda i=i: answers.append(call(i))) for i in range(spec["calls"])
    ]

    async def tasks():
        return await asyncio.gather(*(acall(i) for i in range(spec["calls"])))

    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    if spec["mode"] == "tasks":
        answers = asyncio.run(tasks())
    else:
        for thread in threads:
            thread.start()
        if spec["mode"] == "hold":
            while int(counts.get(inside) or 0) < spec["calls"]:
                time.sleep(0.01)
            print("held", flush=True)
            assert sys.stdin.readline().strip() == "release"
            release.set()
        for thread in threads:
            thread.join(60)
    print(json.dumps(answers), flush=True)
    """
)


@contextmanager
def child(**spec: object) -> Iterator[subprocess.Popen[str]]:
    """A process running :data:`CHILD` with ``spec``; killed if it is still running at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hear(process) == "ready"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_two_processes_share_the_in_flight_bound(shared_redis_url: str, redis_prefix: str) -> None:
    n, calls = 3, 8
    spec = {"url": shared_redis_url, "prefix": redis_prefix, "n": n, "calls": calls}
    spec.update(timeout=TIMEOUT, hold_s=0.2)
    with child(**spec, mode="threads") as threads, child(**spec, mode="tasks") as tasks:
        tell([threads, tasks], "go")
        answers = [json.loads(hear(threads)), json.loads(hear(tasks))]
        assert threads.wait(60) == 0 and tasks.wait(60) == 0
    assert answers == [["done"] * calls, ["done"] * calls]
    counts = redis.Redis.from_url(shared_redis_url, socket_timeout=5)
    try:
        seen = [int(x) for x in counts.lrange(f"{redis_prefix}seen", 0, -1)]
        assert len(seen) == 2 * calls
        assert max(seen) == n  # the calls did overlap, and never past the bound
        assert int(counts.get(f"{redis_prefix}inside") or 0) == 0
    finally:
        counts.close()
    store = RedisSlotStore.from_url(shared_redis_url, timeout=TIMEOUT, prefix=redis_prefix)
    try:
        assert store.occupancy("llm:scripted") == (0, 0)
    finally:
        store.close()


def test_a_call_waits_for_another_processs_slots_then_is_refused_or_served(
    shared_redis_url: str, redis_prefix: str
) -> None:
    store = RedisSlotStore.from_url(shared_redis_url, timeout=TIMEOUT, prefix=redis_prefix)
    slots = Slots(store, ttl_s=5)
    impatient = limit_concurrency(ScriptedChatModel(replies=["x"]), 2, slots=slots, wait_s=0.3)
    patient = limit_concurrency(ScriptedChatModel(replies=["y"]), 2, slots=slots, wait_s=20)
    spec = {"url": shared_redis_url, "prefix": redis_prefix, "n": 2, "calls": 2}
    try:
        with child(**spec, timeout=TIMEOUT, hold_s=0, mode="hold") as holder:
            tell([holder], "go")
            assert hear(holder) == "held"
            assert store.occupancy("llm:scripted") == (2, 0)
            with pytest.raises(SlotRefused) as refused:
                impatient.invoke("q")
            assert 0 < refused.value.retry_after_s <= 5
            tell([holder], "release")
            assert patient.invoke("q").text == "y"
            assert json.loads(hear(holder)) == ["done", "done"]
            assert holder.wait(30) == 0
        assert store.occupancy("llm:scripted") == (0, 0)
    finally:
        store.close()
