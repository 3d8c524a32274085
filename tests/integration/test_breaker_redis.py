"""Circuit breakers on real Redis: the unit tests' semantics, across processes, through outages.

The scenarios of ``tests/unit/test_breaker.py`` run here unchanged on
:class:`RedisBreakerStore`, with real (short) waits: Redis's own clock decides, so
waiting means sleeping at least as long, and no assert depends on sleeping *less*.
Each test has its own key prefix on the shared Redis (deleted afterwards); the
outage tests break a private ``redis-server`` instead.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from graphops.resilience.breaker import BreakerPolicy, CircuitBreaker, Transition
from graphops.resilience.breaker_redis import RedisBreakerStore
from tests.integration.redis_support import RedisServer, hear, sleep_server, tell
from tests.unit.test_breaker import SCENARIOS, Clock, Rig, fail, succeed

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stores(shared_redis_url: str, redis_prefix: str) -> Iterator[Callable[..., RedisBreakerStore]]:
    """Make stores on the shared Redis under this test's prefix; all closed afterwards."""
    made: list[RedisBreakerStore] = []

    def make(**options: Any) -> RedisBreakerStore:
        options.setdefault("timeout", 1.0)  # generous: the machine is shared
        made.append(RedisBreakerStore(shared_redis_url, prefix=redis_prefix, **options))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__[9:])
def test_semantics(
    scenario: Callable[[Rig], None], stores: Callable[..., RedisBreakerStore]
) -> None:
    # Each breaker gets a store of its own, as another process would: no shared replies.
    scenario(Rig(stores, lambda s: time.sleep(s + 0.02), open_s=0.3, probe_ttl_s=0.3))


async def test_async_twins(stores: Callable[..., RedisBreakerStore]) -> None:
    store = stores()
    events: list[Transition] = []
    policy = BreakerPolicy(window=2, min_calls=2, half_open_calls=1, open_s=0.2)
    b = CircuitBreaker("openai", policy, store, on_transition=events.append)
    try:
        for _ in range(2):
            permit = await b.apermit()
            assert permit is not None
            await b.arecord(permit, ok=False, duration_s=0.01)
        assert await b.astate() == "open"
        assert await b.apermit() is None
        await anyio.sleep(0.25)
        first = await b.apermit()
        assert first is not None and first.probe
        assert await b.arelease(first) == "half_open"
        second = await b.apermit()
        assert second is not None and second.token != first.token
        assert await b.arecord(second, ok=True, duration_s=0.01) == "closed"
        assert await b.areset() == "closed"
    finally:
        await store.aclose()
    assert [e.reason for e in events] == ["failure_rate", "wait_elapsed", "probes_ok"]


# ---------------------------------------------------------------- across processes
def _worker(spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.breaker_worker", json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait(10)
        for pipe in (worker.stdin, worker.stdout):
            if pipe is not None:
                pipe.close()


POLICY = {"window": 4, "min_calls": 2, "half_open_calls": 3, "open_s": 0.5}


def test_opened_by_another_process(
    stores: Callable[..., RedisBreakerStore], shared_redis_url: str, redis_prefix: str
) -> None:
    policy = BreakerPolicy(**POLICY)  # type: ignore[arg-type]
    early_events: list[Transition] = []
    early = CircuitBreaker("openai", policy, stores(), on_transition=early_events.append)
    assert early.permit() is not None
    spec = {"url": shared_redis_url, "prefix": redis_prefix, "name": "openai", "policy": POLICY}
    worker = _worker({**spec, "mode": "open"})
    try:
        report = json.loads(hear(worker))
        assert worker.wait(30) == 0
    finally:
        _finish([worker])
    assert report == {"state": "open", "transitions": [["closed", "open", "failure_rate"]]}
    late_events: list[Transition] = []
    late = CircuitBreaker("openai", policy, stores(), on_transition=late_events.append)
    assert late.permit() is None
    assert early.state() == "open"  # a state() always asks Redis
    assert early.permit() is None
    seen = Transition("openai", "closed", "open", "observed", 1.0, 0.0)
    assert late_events == early_events == [seen]


def test_probes_across_two_processes(
    stores: Callable[..., RedisBreakerStore], shared_redis_url: str, redis_prefix: str
) -> None:
    main = CircuitBreaker("openai", BreakerPolicy(**POLICY), stores())  # type: ignore[arg-type]
    fail(main, 2)
    opened_at = time.monotonic()
    spec = {"url": shared_redis_url, "prefix": redis_prefix, "name": "openai", "policy": POLICY}
    workers = [_worker({**spec, "mode": "probes", "threads": 8}) for _ in range(2)]
    try:
        for worker in workers:
            assert hear(worker) == "ready"
        time.sleep(max(0.0, opened_at + POLICY["open_s"] + 0.05 - time.monotonic()))
        tell(workers, "go")
        reports = [json.loads(hear(worker)) for worker in workers]
        tell(workers, "done")
        for worker in workers:
            assert worker.wait(30) == 0
    finally:
        _finish(workers)
    assert sum(r["probes"] for r in reports) == 3  # of 16 threads in 2 processes
    transitions = sorted(t for r in reports for t in r["transitions"])
    assert transitions == [  # one process moved it; the other saw it moved
        ["closed", "half_open", "observed"],
        ["closed", "open", "observed"],
        ["open", "half_open", "wait_elapsed"],
    ]
    assert main.state() == "half_open"


# ---------------------------------------------------------------- round trips and staleness
def test_one_round_trip_per_closed_call(private_redis: RedisServer) -> None:
    store = RedisBreakerStore(private_redis.url, timeout=1.0, clock=Clock())  # replies stay fresh
    b = CircuitBreaker("openai", BreakerPolicy(), store)
    succeed(b)
    admin = private_redis.client()
    admin.config_resetstat()
    succeed(b, 100)
    stats = admin.info("commandstats")
    calls = {name[8:]: stat["calls"] for name, stat in stats.items() if "config" not in name}
    assert calls.pop("evalsha") == 100  # the only command a client sent: one per call
    assert calls.pop("time") == 100  # each script asks the server's clock once
    assert set(calls) <= {"hmget", "hget", "hset", "pexpire"}  # what the record script does
    store.close()


def test_a_permit_trusts_a_reply_for_fresh_s(stores: Callable[..., RedisBreakerStore]) -> None:
    clock = Clock()
    policy = BreakerPolicy(window=2, min_calls=2)
    mine = CircuitBreaker("openai", policy, stores(clock=clock))
    other = CircuitBreaker("openai", policy, stores())
    assert mine.permit() is not None
    fail(other, 2)
    stale = mine.permit()
    assert stale is not None  # from the reply of 0 s ago: the documented staleness
    clock.advance(0.999)
    assert mine.permit() is not None
    clock.advance(0.001)
    assert mine.permit() is None  # a second old: Redis is asked
    assert mine.record(stale, ok=False, duration_s=0.01) == "open"  # of another epoch: dropped


def test_keys_expire(stores: Callable[..., RedisBreakerStore], shared_redis_url: str) -> None:
    store = stores(ttl_s=0.1)
    client = redis.Redis.from_url(shared_redis_url, socket_timeout=2)
    idle = CircuitBreaker("idle", BreakerPolicy(open_s=0.1, probe_ttl_s=0.1), store)
    succeed(idle)
    key = store.keys("idle")[0]
    assert 0 < client.pttl(key) <= 1200  # open_s + probe_ttl_s + 1 s, above ttl_s
    deadline = time.monotonic() + 10
    while client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not client.exists(key)
    assert idle.state() == "closed"  # forgotten is closed
    held = CircuitBreaker("held", BreakerPolicy(window=2, min_calls=2, open_s=30), store)
    fail(held, 2)
    assert client.pttl(store.keys("held")[0]) > 30_000  # lives through its wait
    client.close()


# ---------------------------------------------------------------- outages
def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_redis_killed_then_restarted(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()  # paces the retries and the replies' freshness
    events: list[Transition] = []
    policy = BreakerPolicy(window=2, min_calls=2)
    # fresh_s above the 1 s between retries: a reply from before the outage must not
    # pass for Redis answering again.
    store = RedisBreakerStore(private_redis.url, timeout=0.05, clock=clock, fresh_s=5.0)
    b = CircuitBreaker("openai", policy, store, on_transition=events.append, clock=clock)
    succeed(b)
    private_redis.kill()
    with caplog.at_level(logging.INFO, "graphops.resilience"):
        assert fail(b, 3) == ["closed", "closed", "open"]  # the first one found Redis gone
        assert [b.permit() for _ in range(20)] == [None] * 20  # this process is protected
        clock.advance(1.0)
        assert b.permit() is None  # tried again: still gone
        assert len(_warnings(caplog)) == 1
        private_redis.start()
        assert b.permit() is None  # not tried again within the second
        clock.advance(1.0)
        assert b.permit() is not None  # Redis again: a new, empty breaker there
        other = CircuitBreaker("openai", policy, RedisBreakerStore(private_redis.url, fresh_s=0))
        fail(other, 2)
        assert b.state() == "open"  # the shared state, opened by another
        private_redis.kill()
        assert b.state() == "open"  # the fallback starts from what it last saw
    assert len(_warnings(caplog)) == 2  # one per outage
    assert "its store did not answer (Redis at redis://127.0.0.1:" in _warnings(caplog)[0]
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert [(e.from_state, e.to_state, e.reason) for e in events] == [
        ("closed", "open", "failure_rate"),
        ("open", "closed", "observed"),
        ("closed", "open", "observed"),
    ]
    store.close()
    other.store.close()


def test_a_stalled_redis_costs_one_timeout(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisBreakerStore(private_redis.url, timeout=0.05, fresh_s=0)
    b = CircuitBreaker("openai", BreakerPolicy(), store)
    succeed(b)
    sleeper, _ = sleep_server(private_redis, 3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "graphops.resilience"):
        assert succeed(b, 40) == ["closed"] * 40
    elapsed = time.monotonic() - started
    assert elapsed < 1.5  # not the 3 s stall, nor a 50 ms timeout for each of the 40 calls
    assert len(_warnings(caplog)) == 1
    sleeper.join(10)
    store.close()
