"""The Redis limit store on real Redis: the memory store's semantics, shared, and its outages.

The semantic tests run the same scenarios on :class:`MemoryLimitStore` and on
:class:`RedisLimitStore` and expect the same answers; the concurrency tests fire
a limit's worth of admissions at once, from two processes or from threads and
tasks; the outage tests kill a private ``redis-server``, or put it to sleep.
Clocks are injected: nothing waits for a window to pass.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio
import pytest
import redis

from graphops.errors import ConfigurationError
from graphops.limits.limiter import Admission, Limiter
from graphops.limits.memory import MemoryLimitStore
from graphops.limits.policy import RequestLimit, TokenQuota
from graphops.limits.redis import RedisLimitStore
from graphops.limits.store import LimitStore, RateCheck, StoreUnavailable
from graphops.runtime.scope import Identity
from tests.integration.redis_support import (
    ESTIMATE,
    QUOTA,
    RedisServer,
    aadmit_in_tasks,
    admit_in_threads,
    free_port,
    limiter_for,
    run_workers,
    sleep_server,
    used_for,
)

DAY = 86400
START = float(int(time.time()) // DAY * DAY + 3600)  # 01:00 UTC today: minutes from a day's end
SCRIPT_COMMANDS = {"lindex", "get", "lpush", "ltrim", "pexpire", "pttl", "incrby", "pexpireat"}
HANG = 2.0  # a decision's bound while Redis is down or asleep: a hang guard, not a timing test


class Clock:
    """An injected clock: tests move ``now``."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MakeLimiter = Callable[..., Limiter]


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[LimitStore, str]]:
    """Each store, and the key prefix to use on it (the shared Redis: the test's own)."""
    if request.param == "memory":
        yield MemoryLimitStore(), "graphops-test:"
        return
    prefix = request.getfixturevalue("redis_prefix")
    redis_store = RedisLimitStore.from_url(request.getfixturevalue("shared_redis_url"), timeout=5)
    yield redis_store, prefix
    redis_store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(store: tuple[LimitStore, str], clock: Clock) -> MakeLimiter:
    """``make(requests, quotas)``: a limiter on the store under test and the injected clock."""

    def limiter(
        requests: Sequence[RequestLimit] = (), quotas: Sequence[TokenQuota] = ()
    ) -> Limiter:
        return Limiter(requests, quotas, store=store[0], prefix=store[1], clock=clock)

    return limiter


def used(limiter: Limiter, per: str, who: str) -> list[int]:
    return [row["used"] for row in limiter.usage(per, who)]


ALICE = Identity(user="alice", tenant="acme", ip="10.0.0.1")


# ---------------------------------------------------------------- the memory store's semantics
def test_moving_window_refuses_the_eleventh_until_the_oldest_leaves(
    make: MakeLimiter, clock: Clock
) -> None:
    limiter = make([RequestLimit("user", "10/minute")])
    for second in range(10):
        clock.now = START + second
        assert limiter.admit(ALICE).allowed
    clock.now = START + 10
    refused = limiter.admit(ALICE)
    assert (refused.allowed, refused.reason, refused.retry_after_s) == (False, "rate_limited", 50)
    assert refused.limit is not None
    assert (refused.limit["amount"], refused.limit["window_s"]) == (10, 60)
    assert limiter.admit(Identity(user="bob")).allowed  # another user: another window
    row = limiter.usage("user", "alice")[0]
    assert (row["used"], row["remaining"]) == (10, 0)

    clock.now = START + 60  # the first admission is exactly a window old: out
    assert limiter.admit(ALICE).allowed
    again = limiter.admit(ALICE)  # the second (START + 1) is still in
    assert (again.allowed, again.retry_after_s) == (False, 1)
    assert used(limiter, "user", "alice") == [10]


def test_every_window_of_a_rate_counts(make: MakeLimiter, clock: Clock) -> None:
    limiter = make([RequestLimit("user", "10/minute;500/day")])
    for minute in range(50):
        for tenth in range(10):
            clock.now = START + 60 * minute + tenth / 10
            assert limiter.admit(ALICE).allowed, (minute, tenth)
        refused = limiter.admit(ALICE)  # the minute is full; after 50 minutes, the day too
        assert refused.limit is not None
        assert (refused.allowed, refused.limit["window_s"]) == (False, 60 if minute < 49 else DAY)
    clock.now = START + 60 * 50  # a minute with room, but 500 today already
    refused = limiter.admit(ALICE)
    assert refused.limit is not None
    assert (refused.allowed, refused.limit["window_s"]) == (False, DAY)
    assert refused.retry_after_s == DAY - 60 * 50
    assert used(limiter, "user", "alice") == [9, 500]  # nothing counted by the refusal
    clock.now = START + DAY
    assert limiter.admit(ALICE).allowed


def test_a_full_limit_refuses_without_counting_in_the_others(
    make: MakeLimiter, clock: Clock
) -> None:
    limiter = make(
        [RequestLimit("user", "5/minute"), RequestLimit("tenant", "3/minute")],
        [TokenQuota("user", 100)],
    )
    for user in ("bob", "carol", "dave"):
        assert limiter.admit(Identity(user=user, tenant="acme")).allowed
    refused = limiter.admit(ALICE, tokens=10)
    assert refused.limit is not None
    assert (refused.reason, refused.limit["per"]) == ("rate_limited", "tenant")
    assert used(limiter, "user", "alice") == [0, 0]  # the user's room and quota untouched
    assert limiter.admit(Identity(user="alice", tenant="other"), tokens=60).allowed
    over = limiter.admit(Identity(user="alice", tenant="other"), tokens=60)
    assert over.reason == "quota_exceeded"
    assert used(limiter, "user", "alice") == [1, 60]  # the refused run took no request slot
    assert used(limiter, "tenant", "other") == [1]


def test_a_reservation_is_settled_by_refund_and_by_charge(make: MakeLimiter, clock: Clock) -> None:
    limiter = make(quotas=[TokenQuota("user", 1000)])
    first = limiter.admit(ALICE, tokens=400)
    assert first.allowed and [r.tokens for r in first.reservations] == [400]
    assert used(limiter, "user", "alice") == [400]
    assert limiter.settle(first, 250) == (250,)  # used less: 150 back
    second = limiter.admit(ALICE, tokens=400)
    assert used(limiter, "user", "alice") == [650]
    assert limiter.settle(second, 500) == (750,)  # used more: 100 charged
    clock.now = START + 5
    refused = limiter.admit(ALICE, tokens=400)
    assert (refused.allowed, refused.reason) == (False, "quota_exceeded")
    assert refused.retry_after_s == DAY - 3600 - 5  # until the UTC day ends
    assert refused.limit is not None and refused.limit["remaining"] == 250
    assert limiter.admit(ALICE, tokens=250).allowed
    assert used(limiter, "user", "alice") == [1000]


def test_a_settlement_never_takes_a_quota_below_zero(
    make: MakeLimiter, store: tuple[LimitStore, str]
) -> None:
    limiter = make(quotas=[TokenQuota("user", 1000)])
    admission = limiter.admit(ALICE, tokens=100)
    assert limiter.settle(admission, 0) == (0,)
    key, reset_at = admission.reservations[0].key, admission.reservations[0].reset_at
    assert store[0].settle(key, -50, reset_at) == 0
    assert used(limiter, "user", "alice") == [0]
    assert store[0].settle(store[1] + "never-seen", -10, reset_at) == 0
    assert store[0].settle(key, 30, reset_at) == 30


def test_reset_forgets_what_was_counted(make: MakeLimiter) -> None:
    limiter = make([RequestLimit("user", "1/minute")], [TokenQuota("user", 100)])
    assert limiter.admit(ALICE, tokens=100).allowed
    assert not limiter.admit(ALICE).allowed
    assert limiter.reset("user", "alice") == 2
    assert used(limiter, "user", "alice") == [0, 0]
    assert limiter.admit(ALICE, tokens=100).allowed
    assert limiter.reset("user", "nobody") == 0


def test_usage_changes_nothing(make: MakeLimiter, store: tuple[LimitStore, str]) -> None:
    limiter = make([RequestLimit("ip", "2/minute")])
    assert store[0].usage([], [], START) == ()
    for _ in range(3):
        assert used(limiter, "ip", "10.0.0.1") == [0]
    assert limiter.admit(ALICE).allowed
    assert [(r["used"], r["remaining"]) for r in limiter.usage("ip", "10.0.0.1")] == [(1, 1)]


# ---------------------------------------------------------------- concurrency
def test_two_processes_share_one_rate_limit(shared_redis_url: str, redis_prefix: str) -> None:
    result = run_workers(shared_redis_url, redis_prefix, "rate", threads=50, tokens=0, now=START)
    assert result["admitted"] == 50
    assert (result["unchecked"], result["reasons"]) == (0, {"rate_limited"})


def test_two_processes_share_one_token_quota(shared_redis_url: str, redis_prefix: str) -> None:
    result = run_workers(
        shared_redis_url, redis_prefix, "quota", threads=25, tokens=ESTIMATE, now=START
    )
    assert result["admitted"] == QUOTA // ESTIMATE
    assert (result["unchecked"], result["reasons"]) == (0, {"quota_exceeded"})
    store = RedisLimitStore.from_url(shared_redis_url, timeout=5)
    limiter = limiter_for("quota", store, redis_prefix, START)
    assert used(limiter, "user", "shared-user") == [result["settled"]]
    assert result["settled"] <= QUOTA
    store.close()


def _settle_all(admissions: Sequence[Admission], limiter: Limiter) -> int:
    total = 0
    for i, admission in enumerate(a for a in admissions if a.allowed):
        limiter.settle(admission, used_for(i, ESTIMATE))
        total += used_for(i, ESTIMATE)
    return total


@pytest.mark.parametrize("mode", ["rate", "quota"])
def test_threads_take_a_limit_exactly(store: tuple[LimitStore, str], mode: str) -> None:
    limiter = limiter_for(mode, store[0], store[1], START)
    identity = Identity(user="shared-user")
    tokens = ESTIMATE if mode == "quota" else 0
    admissions = admit_in_threads(limiter, [identity] * 100, tokens)
    admitted = sum(a.allowed and not a.unchecked for a in admissions)
    assert admitted == (50 if mode == "rate" else QUOTA // ESTIMATE)
    if mode == "quota":
        settled = _settle_all(admissions, limiter)
        assert used(limiter, "user", "shared-user") == [settled]
        assert settled <= QUOTA


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["rate", "quota"])
async def test_tasks_take_a_limit_exactly(store: tuple[LimitStore, str], mode: str) -> None:
    limiter = limiter_for(mode, store[0], store[1], START)
    identity = Identity(user="shared-user")
    tokens = ESTIMATE if mode == "quota" else 0
    admissions = await aadmit_in_tasks(limiter, [identity] * 100, tokens)
    assert len(admissions) == 100
    admitted = [a for a in admissions if a.allowed and not a.unchecked]
    assert len(admitted) == (50 if mode == "rate" else QUOTA // ESTIMATE)
    settled = 0
    for i, admission in enumerate(admitted):
        await limiter.asettle(admission, used_for(i, ESTIMATE))
        settled += used_for(i, ESTIMATE) if mode == "quota" else 0
    if mode == "quota":
        assert used(limiter, "user", "shared-user") == [settled]
    if isinstance(store[0], RedisLimitStore):
        await store[0].aclose()


def test_each_event_loop_gets_its_own_async_client(
    shared_redis_url: str, redis_prefix: str
) -> None:
    store = RedisLimitStore.from_url(shared_redis_url, timeout=5)
    limiter = Limiter([RequestLimit("user", "3/minute")], store=store, prefix=redis_prefix)

    async def admit_once() -> bool:
        admission = await limiter.aadmit(ALICE)
        await store.aclose()
        return admission.allowed

    assert [asyncio.run(admit_once()) for _ in range(4)] == [True, True, True, False]
    store.close()


def test_a_decision_is_one_round_trip(private_redis: RedisServer) -> None:
    store = RedisLimitStore.from_url(private_redis.url)
    limiter = Limiter(
        [RequestLimit("user", "10/minute;100/day"), RequestLimit("tenant", "50/minute")],
        [TokenQuota("user", 1000), TokenQuota("tenant", 10_000)],
        store=store,
    )
    assert limiter.admit(ALICE, tokens=10).allowed  # loads the script
    admin = private_redis.client()
    admin.config_resetstat()
    assert limiter.admit(ALICE, tokens=10).allowed
    stats = admin.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    called = {name.removeprefix("cmdstat_") for name in stats} - {"config|resetstat", "info"}
    assert called - SCRIPT_COMMANDS == {"evalsha"}  # what the script calls is counted too
    admin.close()
    store.close()


def test_a_flushed_script_cache_is_loaded_again(private_redis: RedisServer) -> None:
    store = RedisLimitStore.from_url(private_redis.url)
    limiter = Limiter([RequestLimit("user", "3/minute")], [TokenQuota("user", 100)], store=store)
    admin = private_redis.client()

    async def decide() -> Admission:
        admission = await limiter.aadmit(ALICE, tokens=10)
        await store.aclose()
        return admission

    assert limiter.admit(ALICE, tokens=10).allowed
    admin.script_flush()
    assert limiter.settle(limiter.admit(ALICE, tokens=10), 5) == (15,)
    admin.script_flush()
    assert asyncio.run(decide()).allowed
    assert [r["used"] for r in limiter.usage("user", "alice")] == [3, 25]
    admin.close()
    store.close()


def test_a_store_made_of_a_client_runs_it_in_threads_for_async_callers(
    shared_redis_url: str, redis_prefix: str
) -> None:
    store = RedisLimitStore(redis.Redis.from_url(shared_redis_url, socket_timeout=5))
    assert store.label == "redis://127.0.0.1:6379/0"
    limiter = Limiter(quotas=[TokenQuota("user", 100)], store=store, prefix=redis_prefix)

    async def decide() -> tuple[Admission, tuple[int, ...]]:
        admission = await limiter.aadmit(ALICE, tokens=60)
        return admission, await limiter.asettle(admission, 40)

    admission, settled = asyncio.run(decide())
    assert admission.allowed and settled == (40,)
    assert not limiter.admit(ALICE, tokens=61).allowed
    store.close()


# ---------------------------------------------------------------- outages
def _limiters(store: RedisLimitStore) -> tuple[Limiter, Limiter]:
    """The same limits, failing open and failing closed."""
    return (
        Limiter([RequestLimit("user", "100000/minute", fail="open")], store=store),
        Limiter([RequestLimit("user", "100000/minute", fail="closed")], store=store),
    )


def _assert_unavailable(opened: Admission, closed: Admission) -> None:
    assert (opened.allowed, opened.unchecked) == (True, True), opened
    assert opened.message is not None and "limits unchecked" in opened.message
    assert (closed.allowed, closed.reason) == (False, "limiter_unavailable"), closed


def _timed(decide: Callable[[], Admission]) -> tuple[Admission, float]:
    started = time.perf_counter()
    admission = decide()
    return admission, time.perf_counter() - started


def test_killed_mid_load_fail_modes_decide_at_once(private_redis: RedisServer) -> None:
    store = RedisLimitStore.from_url(private_redis.url)
    fail_open, fail_closed = _limiters(store)
    decisions: list[tuple[float, float, Admission, Admission]] = []  # started, took, open, closed
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            opened, closed = fail_open.admit(ALICE), fail_closed.admit(ALICE)
            decisions.append((started, time.perf_counter() - started, opened, closed))
            time.sleep(0.001)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    while len(decisions) < 40:
        time.sleep(0.01)
    private_redis.kill()
    killed = time.perf_counter()
    while sum(started > killed for started, *_ in decisions) < 40:
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert max(took for _, took, _, _ in decisions) < 2 * HANG  # two decisions each
    before = [(o, c) for started, _, o, c in decisions[:20]]
    assert all(o.allowed and not o.unchecked and c.allowed for o, c in before)
    for started, _, opened, closed in decisions:
        if started > killed:
            _assert_unavailable(opened, closed)
    store.close()


@pytest.mark.anyio
async def test_killed_mid_load_async(private_redis: RedisServer) -> None:
    store = RedisLimitStore.from_url(private_redis.url)
    fail_open, fail_closed = _limiters(store)
    assert (await fail_closed.aadmit(ALICE)).allowed
    decisions: list[tuple[float, float, Admission]] = []  # started, took, admission
    killed = [float("inf")]

    async def load(limiter: Limiter) -> None:
        while sum(started > killed[0] for started, _, _ in decisions) < 40:
            started = time.perf_counter()
            admission = await limiter.aadmit(ALICE)
            decisions.append((started, time.perf_counter() - started, admission))
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as group:
        for limiter in (fail_open, fail_closed) * 2:
            group.start_soon(load, limiter)
        await anyio.sleep(0.1)
        private_redis.kill()
        killed[0] = time.perf_counter()
    assert max(took for _, took, _ in decisions) < HANG
    before = [a for started, _, a in decisions if started < killed[0]]
    assert len(before) > 4 and all(a.allowed and not a.unchecked for a in before[:4])
    after = [a for started, _, a in decisions if started > killed[0]]
    outcomes = {(a.allowed, a.unchecked, a.reason) for a in after}
    assert outcomes <= {(True, True, None), (False, False, "limiter_unavailable")}
    assert len(outcomes) == 2
    await store.aclose()
    store.close()


def test_a_store_error_names_the_server_without_its_password() -> None:
    store = RedisLimitStore.from_url(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable) as caught:
        store.admit([RateCheck("graphops-test:k", 1, 60)], [], START)
    assert "127.0.0.1" in str(caught.value) and ":***@" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_sleeping_server_times_out_each_decision_once(private_redis: RedisServer) -> None:
    store = RedisLimitStore.from_url(private_redis.url)  # 50 ms
    fail_open, fail_closed = _limiters(store)
    assert fail_closed.admit(ALICE).allowed  # one connection open, the script loaded
    admin = private_redis.client()
    connected = admin.info("stats")["total_connections_received"]
    sleeper, probes = sleep_server(private_redis, 2)
    timed = [_timed(lambda: fail_open.admit(ALICE)), _timed(lambda: fail_closed.admit(ALICE))]
    assert sleeper.is_alive(), "decided only after the server woke"
    assert max(took for _, took in timed) < HANG / 2
    _assert_unavailable(timed[0][0], timed[1][0])

    async def both() -> tuple[Admission, Admission]:
        results = (await fail_open.aadmit(ALICE), await fail_closed.aadmit(ALICE))
        await store.aclose()
        return results

    started = time.perf_counter()
    opened, closed = asyncio.run(both())
    assert sleeper.is_alive() and time.perf_counter() - started < HANG / 2
    _assert_unavailable(opened, closed)

    sleeper.join(10)
    # no retries: the first decision timed out on the open connection, each other one
    # opened one connection (redis-py 8.1's default would have retried each up to ten times)
    assert admin.info("stats")["total_connections_received"] - connected == probes + 3
    assert fail_closed.admit(ALICE).allowed  # awake: decided again
    admin.close()
    store.close()


def test_decisions_resume_when_the_server_is_back(private_redis: RedisServer) -> None:
    store = RedisLimitStore.from_url(private_redis.url)
    fail_open, fail_closed = _limiters(store)
    assert fail_closed.admit(ALICE).allowed

    async def decide() -> Admission:
        admission = await fail_closed.aadmit(ALICE)
        await store.aclose()
        return admission

    assert asyncio.run(decide()).allowed
    private_redis.kill()
    _assert_unavailable(fail_open.admit(ALICE), fail_closed.admit(ALICE))
    private_redis.start()  # the same port, empty
    checked = fail_closed.admit(ALICE)
    assert (checked.allowed, checked.unchecked) == (True, False)
    assert asyncio.run(decide()).allowed
    assert [r["used"] for r in fail_closed.usage("user", "alice")] == [2]
    store.close()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",
        "http://localhost:6379/0",
        "redis://localhost:port/0",
        "redis://localhost:99999/0",
        "redis://localhost:6379/zero",
        "redis://",
        "unix://",
    ],
)
def test_a_bad_url_is_a_configuration_error_naming_it(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisLimitStore.from_url(url)
    assert repr(url) in str(caught.value)


def test_a_bad_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisLimitStore.from_url("redis://:hunter2@localhost:port/0")
    assert "hunter2" not in str(caught.value) and "redis://:***@localhost:port/0" in str(
        caught.value
    )


@pytest.mark.parametrize("timeout", [0, -1, 0.0, float("nan"), float("inf"), "fast", True])
def test_a_bad_timeout_is_a_configuration_error_naming_it(timeout: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisLimitStore.from_url("redis://localhost:6379/0", timeout=timeout)
    assert repr(timeout) in str(caught.value)
