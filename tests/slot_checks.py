"""Checks the slot tests run on both stores: how many holders a key had at once."""

from __future__ import annotations

import threading
import time

import anyio

from graphops.limits.slot_store import Lease, Refused
from graphops.limits.slots import Slots


def held(result: Lease | Refused) -> Lease:
    """``result``, which must be a lease."""
    assert isinstance(result, Lease), result
    return result


def refused(result: Lease | Refused) -> Refused:
    """``result``, which must be a refusal."""
    assert isinstance(result, Refused), result
    return result


def served_order(slots: Slots, key: str, waiters: int, *, wait_s: float) -> list[int]:
    """The order in which ``waiters`` threads, queued one after another behind a holder of
    ``key``'s one slot, got it once the holder let go."""
    first = held(slots.acquire(key, 1, timeout=0))
    order: list[int] = []

    def wait(i: int) -> None:
        with slots.hold(key, 1, timeout=wait_s):
            order.append(i)

    threads = []
    for i in range(waiters):
        threads.append(threading.Thread(target=wait, args=(i,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while slots.store.occupancy(key) != (1, i + 1):  # queued before the next one starts
            assert time.monotonic() < deadline, f"waiter {i} never joined the queue"
            time.sleep(0.001)
    slots.release(first)
    for thread in threads:
        thread.join(wait_s + 10)
    return order


def peak_in_threads(
    slots: Slots, key: str, capacity: int, workers: int, *, wait_s: float, hold_s: float
) -> tuple[list[int], int]:
    """``workers`` threads, released at once, each holding a slot of ``key`` for ``hold_s``:
    which finished, and the most that held one at the same time."""
    lock, running, peak, done = threading.Lock(), [0], [0], []
    start = threading.Barrier(workers)

    def work(i: int) -> None:
        start.wait()
        with slots.hold(key, capacity, timeout=wait_s):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(hold_s)
            with lock:
                running[0] -= 1
        done.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(wait_s + 10)
    return sorted(done), peak[0]


async def peak_in_tasks(
    slots: Slots, key: str, capacity: int, workers: int, *, wait_s: float, hold_s: float
) -> tuple[list[int], int]:
    """:func:`peak_in_threads` with tasks of the running loop."""
    running, peak, done = [0], [0], []

    async def work(i: int) -> None:
        async with slots.ahold(key, capacity, timeout=wait_s):
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            await anyio.sleep(hold_s)
            running[0] -= 1
        done.append(i)

    async with anyio.create_task_group() as group:
        for i in range(workers):
            group.start_soon(work, i)
    return sorted(done), peak[0]
