"""Concurrency slots on the real shared Redis: capacity, FIFO, leases, across processes.

Each test gets its own key prefix and deletes its keys afterwards; Redis itself is
never flushed. Without Redis on 127.0.0.1:6379 the tests skip, unless ``CI`` is set.
Times are real: leases of a fraction of a second, waits of a second or two, and no
tight timing asserts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
import redis

from graphops.limits.slot_store import SlotStore, slot_key
from graphops.limits.slots import Slots
from graphops.limits.slots_redis import RedisSlotStore
from graphops.limits.store import StoreUnavailable
from tests.slot_checks import held, peak_in_tasks, peak_in_threads, refused, served_order

pytestmark = pytest.mark.anyio

URL = "redis://127.0.0.1:6379/0"
TIMEOUT = 1.0  # per call: generous, the machine is shared; the default 50 ms is tested below


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        connection.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({exc})")
    yield connection
    connection.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    name = f"graphops-test:{uuid.uuid4().hex[:12]}:"
    yield name
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def store(prefix: str) -> Iterator[RedisSlotStore]:
    backend = RedisSlotStore.from_url(URL, timeout=TIMEOUT, prefix=prefix)
    yield backend
    backend.close()


def until(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


@contextmanager
def child(prefix: str, body: str) -> Iterator[subprocess.Popen[str]]:
    """A Python process with ``slots`` (a Slots on this test's Redis prefix) and ``say``;
    killed, if still running, when the block ends."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from graphops.limits.slots import Slots
        from graphops.limits.slots_redis import RedisSlotStore
        store = RedisSlotStore.from_url({URL!r}, timeout={TIMEOUT}, prefix={prefix!r})
        slots = Slots(store)
        def say(line):
            print(line, flush=True)
        """
    ) + textwrap.dedent(body)
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def test_the_redis_store_is_a_slot_store(store: RedisSlotStore) -> None:
    assert isinstance(store, SlotStore)


def test_capacity_is_respected_under_threads(store: RedisSlotStore) -> None:
    done, peak = peak_in_threads(Slots(store, ttl_s=5), "llm:local", 3, 10, wait_s=20, hold_s=0.01)
    assert done == list(range(10))
    assert 1 <= peak <= 3
    assert store.occupancy("llm:local") == (0, 0)


async def test_capacity_is_respected_under_tasks(store: RedisSlotStore) -> None:
    slots = Slots(store, ttl_s=5)
    done, peak = await peak_in_tasks(slots, "llm:local", 3, 10, wait_s=20, hold_s=0.01)
    await store.aclose()
    assert done == list(range(10))
    assert peak == 3
    assert store.occupancy("llm:local") == (0, 0)


def test_waiters_are_served_in_the_order_they_came(store: RedisSlotStore) -> None:
    assert served_order(Slots(store, ttl_s=5), "k", 4, wait_s=20) == [0, 1, 2, 3]


def test_a_timeout_refuses_with_a_retry_after(store: RedisSlotStore) -> None:
    slots = Slots(store, ttl_s=30)
    held(slots.acquire("k", 1, timeout=0))
    refusal = refused(slots.acquire("k", 1, timeout=0.2))
    assert refusal.waited_s >= 0.2
    assert 25 < refusal.retry_after_s <= 30
    assert store.occupancy("k") == (1, 0)  # the waiter left the queue


def test_a_lease_not_renewed_expires_and_renewing_keeps_one(store: RedisSlotStore) -> None:
    slots = Slots(store, ttl_s=0.3)
    lease = held(slots.acquire("lapses", 1, timeout=0))
    time.sleep(0.4)
    held(slots.acquire("lapses", 1, timeout=0))
    assert slots.renew(lease) is False
    with slots.hold("kept", 1, timeout=0) as kept:
        time.sleep(0.8)  # renewed every 0.1 s
        refused(slots.acquire("kept", 1, timeout=0))
    assert not kept.lost
    assert store.occupancy("kept") == (0, 0)


def test_a_silent_waiter_drops_out_after_its_heartbeat(store: RedisSlotStore) -> None:
    slots = Slots(store, ttl_s=5)
    lease = held(slots.acquire("k", 1, timeout=0))
    store.try_acquire("k", 1, "ghost", 5, queue_ttl_s=0.3)
    slots.release(lease)
    assert refused(slots.acquire("k", 1, timeout=0)).ahead == 1
    time.sleep(0.4)
    held(slots.acquire("k", 1, timeout=0))


async def test_one_tenants_flood_does_not_delay_another(store: RedisSlotStore) -> None:
    slots = Slots(store, ttl_s=5)
    a, b = slot_key("runs", "tenant:a"), slot_key("runs", "tenant:b")
    for _ in range(2):
        held(await slots.aacquire(a, 2, timeout=0))
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(lambda: slots.aacquire(a, 2, timeout=20))
        for _ in range(1000):  # all three are queued
            if store.occupancy(a) == (2, 3):
                break
            await anyio.sleep(0.01)
        assert store.occupancy(a) == (2, 3)
        lease = held(await slots.aacquire(b, 2, timeout=0))
        assert lease.waited_s < 1
        group.cancel_scope.cancel()
    assert store.occupancy(a) == (2, 0)  # cancelled waiters left the queue
    await store.aclose()


def test_a_killed_processs_leases_lapse_and_the_slots_come_back(
    store: RedisSlotStore, prefix: str
) -> None:
    body = """
        with slots.hold("k", 2, ttl_s=1), slots.hold("k", 2, ttl_s=1):
            say("held")
            time.sleep(3600)
        """
    with child(prefix, body) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        slots = Slots(store, ttl_s=5)
        refused(slots.acquire("k", 2, timeout=1.5))  # alive, it renews past its 1 s leases
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
        lease = held(slots.acquire("k", 2, timeout=5))
        assert lease.waited_s < 5
        assert store.occupancy("k")[0] >= 1


def test_processes_share_the_capacity_in_queue_order(
    store: RedisSlotStore, prefix: str, client: redis.Redis
) -> None:
    log = f"{prefix}log"

    def body(name: str) -> str:  # each process notes when it holds the one slot
        return f"""
        import redis
        log = redis.Redis.from_url({URL!r})
        with slots.hold("k", 1, {name!r}, timeout=30):
            log.rpush({log!r}, "start:{name}")
            time.sleep(0.05)
            log.rpush({log!r}, "end:{name}")
        """

    slots = Slots(store, ttl_s=5)
    first = held(slots.acquire("k", 1, "test", timeout=0))
    with child(prefix, body("p1")) as p1:
        until(lambda: store.occupancy("k") == (1, 1), 30)
        with child(prefix, body("p2")) as p2:
            until(lambda: store.occupancy("k") == (1, 2), 30)
            slots.release(first)
            assert p1.wait(30) == 0
            assert p2.wait(30) == 0
    entries = [e.decode() if isinstance(e, bytes) else e for e in client.lrange(log, 0, -1)]
    assert entries == ["start:p1", "end:p1", "start:p2", "end:p2"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_redis_is_unavailable_quickly() -> None:
    store = RedisSlotStore.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.try_acquire("k", 1, "me", 1.0)
    with pytest.raises(StoreUnavailable):
        await store.atry_acquire("k", 1, "me", 1.0)
    with pytest.raises(StoreUnavailable):
        Slots(store).acquire("k", 1, timeout=1)
    assert time.monotonic() - started < 1
    store.close()
