"""Concurrency slots on the memory store: capacity, FIFO waiting, deadlines, leases, bulkheads.

Most tests drive an injected clock (sleeping advances it), so they never really wait;
the ones about threads, tasks and background renewal use real time, briefly.
"""

from __future__ import annotations

import math
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from graphops.errors import ConfigurationError
from graphops.limits.slot_store import SlotRefused, SlotStore, slot_key
from graphops.limits.slots import Slots
from graphops.limits.slots_memory import MemorySlotStore
from tests.slot_checks import held, peak_in_tasks, peak_in_threads, refused, served_order

pytestmark = pytest.mark.anyio


class Clock:
    """Fake monotonic time: sleeping (sync or async) advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemorySlotStore:
    return MemorySlotStore(clock=clock)


@pytest.fixture
def slots(store: MemorySlotStore, clock: Clock) -> Slots:
    return Slots(store, ttl_s=30, clock=clock, sleep=clock.sleep, asleep=clock.asleep)


async def settle(condition: Any, turns: int = 1000) -> None:
    """Let other tasks run until ``condition()`` holds."""
    for _ in range(turns):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never held")


def test_the_memory_store_is_a_slot_store(store: MemorySlotStore) -> None:
    assert isinstance(store, SlotStore)


# ---------------------------------------------------------------- capacity
def test_capacity_is_respected_under_threads() -> None:
    store = MemorySlotStore()
    done, peak = peak_in_threads(Slots(store, ttl_s=5), "llm:local", 3, 12, wait_s=10, hold_s=0.005)
    assert done == list(range(12))
    assert 1 <= peak <= 3
    assert store.occupancy("llm:local") == (0, 0)


async def test_capacity_is_respected_under_tasks() -> None:
    store = MemorySlotStore()
    slots = Slots(store, ttl_s=5)
    done, peak = await peak_in_tasks(slots, "llm:local", 3, 12, wait_s=10, hold_s=0.005)
    assert done == list(range(12))
    assert peak == 3
    assert store.occupancy("llm:local") == (0, 0)


# ---------------------------------------------------------------- fairness
async def test_waiters_are_served_in_the_order_they_came(
    slots: Slots, store: MemorySlotStore
) -> None:
    first = held(slots.acquire("k", 1, "first", timeout=0))
    order: list[str] = []

    async def wait(name: str) -> None:
        lease = held(await slots.aacquire("k", 1, name, timeout=10_000))
        order.append(name)
        await anyio.lowlevel.checkpoint()
        await slots.arelease(lease)

    names = [f"w{i}" for i in range(5)]
    async with anyio.create_task_group() as group:
        for i, name in enumerate(names):
            group.start_soon(wait, name)
            await settle(lambda i=i: store.occupancy("k") == (1, i + 1))
        slots.release(first)
    assert order == names


def test_waiting_threads_are_served_in_the_order_they_came() -> None:
    assert served_order(Slots(MemorySlotStore(), ttl_s=5), "k", 4, wait_s=10) == [0, 1, 2, 3]


def test_a_newcomer_does_not_pass_the_queue(slots: Slots, store: MemorySlotStore) -> None:
    lease = held(slots.acquire("k", 1, "holder", timeout=0))
    store.try_acquire("k", 1, "queued", 30, queue_ttl_s=5)
    slots.release(lease)
    assert refused(slots.acquire("k", 1, "newcomer", timeout=0)).ahead == 1
    held(slots.acquire("k", 1, "queued", timeout=0))


def test_a_silent_waiter_drops_out_after_its_heartbeat(
    slots: Slots, store: MemorySlotStore, clock: Clock
) -> None:
    lease = held(slots.acquire("k", 1, timeout=0))
    store.try_acquire("k", 1, "ghost", 30, queue_ttl_s=2)  # joins, then never polls again
    slots.release(lease)
    assert store.occupancy("k") == (0, 1)
    refused(slots.acquire("k", 1, timeout=0))
    clock.sleep(2.1)
    held(slots.acquire("k", 1, timeout=0))


# ---------------------------------------------------------------- deadlines
def test_a_timeout_refuses_with_a_retry_after(
    slots: Slots, store: MemorySlotStore, clock: Clock
) -> None:
    held(slots.acquire("k", 1, timeout=0))
    refusal = refused(slots.acquire("k", 1, timeout=5))
    assert refusal.waited_s == pytest.approx(5)
    assert refusal.retry_after_s == pytest.approx(25)  # the lease has 25 of its 30 s left
    assert refusal.ahead == 0
    assert store.occupancy("k") == (1, 0)  # the waiter left the queue


def test_a_deadline_bounds_the_wait(slots: Slots, clock: Clock) -> None:
    held(slots.acquire("k", 1, timeout=0))
    refusal = refused(slots.acquire("k", 1, deadline=clock() + 3, timeout=60))
    assert refusal.waited_s == pytest.approx(3)
    assert refused(slots.acquire("k", 1, deadline=clock() - 1)).waited_s == 0


def test_hold_raises_when_no_slot_came(slots: Slots) -> None:
    held(slots.acquire("k", 1, timeout=0))
    with pytest.raises(SlotRefused) as caught, slots.hold("k", 1, timeout=2):
        raise AssertionError("the block must not run")
    assert caught.value.retry_after_s == pytest.approx(28)
    assert "'k'" in str(caught.value)


# ---------------------------------------------------------------- leases
def test_a_lease_not_renewed_expires_and_the_slot_comes_back(slots: Slots, clock: Clock) -> None:
    lease = held(slots.acquire("k", 1, ttl_s=10, timeout=0))
    clock.sleep(9.9)
    refused(slots.acquire("k", 1, timeout=0))
    clock.sleep(0.2)
    held(slots.acquire("k", 1, timeout=0))
    assert slots.renew(lease) is False
    assert lease.lost


def test_renewing_keeps_the_lease(slots: Slots, clock: Clock) -> None:
    lease = held(slots.acquire("k", 1, ttl_s=10, timeout=0))
    clock.sleep(8)
    assert slots.renew(lease) is True
    assert lease.expires_at == pytest.approx(clock() + 10)
    clock.sleep(8)
    refused(slots.acquire("k", 1, timeout=0))
    clock.sleep(3)
    held(slots.acquire("k", 1, timeout=0))


def test_hold_renews_in_the_background() -> None:
    store = MemorySlotStore()
    slots = Slots(store, ttl_s=0.15)
    with slots.hold("k", 1, timeout=0) as lease:
        time.sleep(0.4)  # more than two lease lengths
        refused(slots.acquire("k", 1, timeout=0))
    assert not lease.lost
    assert store.occupancy("k") == (0, 0)


def test_a_lease_with_its_own_ttl_is_renewed_by_that_ttl() -> None:
    slots = Slots(MemorySlotStore(), ttl_s=30)  # would renew every 10 s
    with slots.hold("k", 1, "me", ttl_s=0.15, timeout=0) as lease:
        time.sleep(0.4)
        refused(slots.acquire("k", 1, timeout=0))
    assert lease.holder == "me"
    assert not lease.lost


async def test_ahold_renews_in_the_background_and_releases() -> None:
    store = MemorySlotStore()
    slots = Slots(store, ttl_s=0.15)
    async with slots.ahold("k", 1, timeout=0) as lease:
        await anyio.sleep(0.4)
        refused(await slots.aacquire("k", 1, timeout=0))
    assert not lease.lost
    assert store.occupancy("k") == (0, 0)


async def test_an_error_in_the_block_comes_out_as_itself(
    slots: Slots, store: MemorySlotStore
) -> None:
    with pytest.raises(ValueError, match="boom"):
        async with slots.ahold("k", 1, timeout=0):
            raise ValueError("boom")
    assert store.occupancy("k") == (0, 0)


# ---------------------------------------------------------------- bulkheads
async def test_one_tenants_flood_does_not_delay_another(
    slots: Slots, store: MemorySlotStore
) -> None:
    a, b = slot_key("runs", "tenant:a"), slot_key("runs", "tenant:b")
    assert a == "runs:tenant%3Aa"
    for _ in range(2):
        held(slots.acquire(a, 2, timeout=0))
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(lambda: slots.aacquire(a, 2, timeout=10_000))
        await settle(lambda: store.occupancy(a) == (2, 3))
        lease = held(await slots.aacquire(b, 2, timeout=10_000))
        assert lease.waited_s == 0
        group.cancel_scope.cancel()
    assert store.occupancy(a) == (2, 0)  # cancelled waiters left the queue
    assert store.occupancy(b) == (1, 0)


# ---------------------------------------------------------------- misuse
@pytest.mark.parametrize("capacity", [0, -1, True, 1.5, "2"])
def test_capacity_must_be_a_whole_number_above_zero(slots: Slots, capacity: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"capacity is {capacity!r}"):
        slots.acquire("k", capacity, timeout=0)


@pytest.mark.parametrize("ttl", [0, -1.0, math.nan, math.inf])
def test_ttl_must_be_positive(slots: Slots, ttl: float) -> None:
    with pytest.raises(ConfigurationError, match=f"ttl_s is {ttl!r}"):
        slots.acquire("k", 1, ttl_s=ttl, timeout=0)
    with pytest.raises(ConfigurationError, match=f"ttl_s is {ttl!r}"):
        Slots(ttl_s=ttl)


@pytest.mark.parametrize("key", ["", "  ", None])
async def test_key_must_be_named(slots: Slots, key: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"key is {key!r}"):
        await slots.aacquire(key, 1, timeout=0)


def test_renewal_must_come_before_the_lease_ends() -> None:
    with pytest.raises(ConfigurationError, match="renew_every_s is 10"):
        Slots(ttl_s=10, renew_every_s=10)
