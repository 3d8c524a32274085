"""Circuit breakers on the memory store, with an injected clock: no test waits.

The ``scenario_*`` functions state the semantics once, against a :class:`Rig`
(how to make breakers on a store and let time pass); they run here on
:class:`MemoryBreakerStore` and, in ``tests/integration/test_breaker_redis.py``,
unchanged on the real Redis.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from graphops.errors import ConfigurationError
from graphops.limits.store import StoreUnavailable
from graphops.resilience.breaker import BreakerPolicy, CircuitBreaker, Permit, Transition
from graphops.resilience.breaker_memory import MemoryBreakerStore
from graphops.resilience.breaker_redis import RedisBreakerStore
from graphops.resilience.breaker_store import BreakerStore, Caller, Reply

pytestmark = pytest.mark.anyio


class Clock:
    """Fake monotonic time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Rig:
    """Breakers on one kind of store, and a way to let ``seconds`` of the store's time pass.

    ``make`` builds a breaker (events go to the list it returns); ``peer`` another
    breaker of the same name, as another process would have it.
    """

    store: Callable[[], BreakerStore]
    wait: Callable[[float], None]
    open_s: float
    probe_ttl_s: float

    def policy(self, **fields: Any) -> BreakerPolicy:
        fields.setdefault("open_s", self.open_s)
        fields.setdefault("probe_ttl_s", self.probe_ttl_s)
        return BreakerPolicy(**fields)

    def make(
        self, policy: BreakerPolicy, name: str | None = None
    ) -> tuple[CircuitBreaker, list[Transition]]:
        events: list[Transition] = []
        name = name or f"provider-{uuid.uuid4().hex[:8]}"
        return CircuitBreaker(name, policy, self.store(), on_transition=events.append), events

    def peer(self, breaker: CircuitBreaker) -> tuple[CircuitBreaker, list[Transition]]:
        return self.make(breaker.policy, breaker.name)


def fail(breaker: CircuitBreaker, times: int = 1, duration_s: float = 0.01) -> list[str]:
    """Record ``times`` failed calls; the state after each."""
    return [_call(breaker, ok=False, duration_s=duration_s) for _ in range(times)]


def succeed(breaker: CircuitBreaker, times: int = 1, duration_s: float = 0.01) -> list[str]:
    return [_call(breaker, ok=True, duration_s=duration_s) for _ in range(times)]


def _call(breaker: CircuitBreaker, *, ok: bool, duration_s: float) -> str:
    permit = breaker.permit()
    assert permit is not None, f"{breaker.name} refused a call in state {breaker.state()}"
    return breaker.record(permit, ok=ok, duration_s=duration_s)


def opened(name: str, rate: float = 1.0, slow: float = 0.0) -> Transition:
    return Transition(name, "closed", "open", "failure_rate", rate, slow)


def probe(breaker: CircuitBreaker) -> Permit:
    permit = breaker.permit()
    assert permit is not None and permit.probe, f"no probe: {permit!r}"
    return permit


def permits_in_threads(breaker: CircuitBreaker, threads: int = 16) -> list[Permit | None]:
    """One ``permit()`` per thread, all released at once by a barrier."""
    barrier = threading.Barrier(threads)
    results: list[Permit | None] = [None] * threads

    def one(index: int) -> None:
        barrier.wait(30)
        results[index] = breaker.permit()

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return results


# ---------------------------------------------------------------- the scenarios
def scenario_min_calls_then_failure_rate(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=10, min_calls=4, failure_rate=0.5))
    assert fail(b, 3) == ["closed"] * 3  # 100% failed, but fewer than min_calls
    assert fail(b) == ["open"]
    assert b.permit() is None
    assert events == [opened(b.name)]


def scenario_threshold_is_inclusive(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=4, min_calls=4, failure_rate=0.5))
    assert succeed(b, 3) == ["closed"] * 3
    assert fail(b) == ["closed"]  # 1 of 4
    c, c_events = rig.make(rig.policy(window=4, min_calls=4, failure_rate=0.5))
    assert [*succeed(c), *fail(c), *succeed(c), *fail(c)] == ["closed"] * 3 + ["open"]  # 2 of 4
    assert (events, c_events) == ([], [opened(c.name, 0.5)])


def scenario_window_slides(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=4, min_calls=4, failure_rate=0.75))
    fail(b, 2)
    succeed(b, 4)  # the two failures fall out of the window
    assert fail(b, 2) == ["closed", "closed"]  # [ok ok F F]: 0.5 (over all calls: 4 of 8)
    assert fail(b) == ["open"]  # [ok F F F]: 0.75 (over all calls only 5 of 9)
    assert events == [opened(b.name, 0.75)]


def scenario_slow_calls(rig: Rig) -> None:
    policy = rig.policy(window=4, min_calls=4, failure_rate=1.0, slow_call_s=1.0, slow_rate=0.5)
    b, events = rig.make(policy)
    assert succeed(b, 2, duration_s=0.99) == ["closed"] * 2
    assert succeed(b, 1, duration_s=1.0) == ["closed"]  # slow: it took slow_call_s
    assert succeed(b, 1, duration_s=5.0) == ["open"]  # 2 slow of 4
    assert events == [Transition(b.name, "closed", "open", "slow_rate", 0.0, 0.5)]
    both = rig.policy(window=2, min_calls=2, slow_call_s=1.0)
    c, c_events = rig.make(both)
    assert fail(c, 2, duration_s=2.0) == ["closed", "open"]  # a slow failure is both
    assert c_events == [Transition(c.name, "closed", "open", "failure_rate", 1.0, 1.0)]


def scenario_open_waits_then_probes_close(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=2))
    fail(b, 2)
    assert b.permit() is None
    rig.wait(rig.open_s)
    assert b.state() == "open"  # lazy: nobody asked yet
    first, second = probe(b), probe(b)
    assert b.permit() is None  # both probes are out
    assert b.record(first, ok=True, duration_s=0.01) == "half_open"
    assert b.permit() is None  # a probe that reported still uses its slot
    assert b.record(second, ok=True, duration_s=0.01) == "closed"
    assert events == [
        opened(b.name),
        Transition(b.name, "open", "half_open", "wait_elapsed", 1.0, 0.0),
        Transition(b.name, "half_open", "closed", "probes_ok", 0.0, 0.0),
    ]
    assert fail(b) == ["closed"]  # the window started empty


def scenario_probes_fail(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=3, failure_rate=0.5))
    fail(b, 2)
    rig.wait(rig.open_s)
    probes = [probe(b) for _ in range(3)]
    assert b.record(probes[0], ok=False, duration_s=0.01) == "half_open"  # waits for all three
    assert b.record(probes[1], ok=True, duration_s=0.01) == "half_open"
    assert b.record(probes[2], ok=False, duration_s=0.01) == "open"
    assert b.permit() is None  # a new wait
    assert events[-1] == Transition(b.name, "half_open", "open", "probes_failed", 2 / 3, 0.0)
    slow = rig.policy(window=2, min_calls=2, half_open_calls=2, slow_call_s=1.0, slow_rate=1.0)
    c, c_events = rig.make(slow)
    fail(c, 2)
    rig.wait(rig.open_s)
    slow_probes = [probe(c), probe(c)]
    assert [c.record(p, ok=True, duration_s=3.0) for p in slow_probes] == ["half_open", "open"]
    assert c_events[-1] == Transition(c.name, "half_open", "open", "probes_failed", 0.0, 1.0)


def scenario_release_frees_a_probe(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=2))
    fail(b, 2)
    rig.wait(rig.open_s)
    first, second = probe(b), probe(b)
    assert b.permit() is None
    assert b.release(first) == "half_open"
    assert b.record(first, ok=False, duration_s=0.01) == "half_open"  # released: not counted
    third = probe(b)  # would be refused had the released probe counted
    assert b.permit() is None
    assert b.record(second, ok=True, duration_s=0.01) == "half_open"
    assert b.record(third, ok=True, duration_s=0.01) == "closed"
    assert events[-1] == Transition(b.name, "half_open", "closed", "probes_ok", 0.0, 0.0)


def scenario_release_in_closed_counts_nothing(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=4, min_calls=2))
    for _ in range(5):
        permit = b.permit()
        assert permit is not None and not permit.probe
        assert b.release(permit) == "closed"
    assert fail(b) == ["closed"]  # the first call counted
    assert fail(b) == ["open"]
    assert events == [opened(b.name, 1.0)]


def scenario_lapsed_probe(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=1))
    fail(b, 2)
    rig.wait(rig.open_s)
    lost = probe(b)  # its process "dies": it never reports in time
    assert b.permit() is None
    rig.wait(rig.probe_ttl_s)
    fresh = probe(b)
    assert b.record(lost, ok=False, duration_s=0.01) == "half_open"  # lapsed: not counted
    assert b.record(fresh, ok=True, duration_s=0.01) == "closed"
    assert events[-1] == Transition(b.name, "half_open", "closed", "probes_ok", 0.0, 0.0)


def scenario_a_probe_reporting_after_it_lapsed(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=1))
    fail(b, 2)
    rig.wait(rig.open_s)
    late = probe(b)
    rig.wait(rig.probe_ttl_s)  # nobody asked for its slot meanwhile
    assert b.record(late, ok=True, duration_s=0.01) == "half_open"  # too late to count
    assert b.record(probe(b), ok=True, duration_s=0.01) == "closed"
    assert [e.reason for e in events] == ["failure_rate", "wait_elapsed", "probes_ok"]


def scenario_reset(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=4, min_calls=2))
    assert b.reset() == "closed"
    assert events == []  # closed to closed is no transition
    fail(b, 2)
    assert b.reset() == "closed"
    assert events == [opened(b.name), Transition(b.name, "open", "closed", "reset", 1.0, 0.0)]
    assert fail(b) == ["closed"]  # an empty window again


def scenario_outcomes_of_an_older_epoch_are_dropped(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=1))
    late = b.permit()
    assert late is not None
    fail(b, 2)
    rig.wait(rig.open_s)
    assert b.record(probe(b), ok=True, duration_s=0.01) == "closed"
    assert b.record(late, ok=False, duration_s=0.01) == "closed"  # from before the opening
    assert fail(b) == ["closed"]  # had ``late`` counted, this second failure would open it
    assert [e.reason for e in events] == ["failure_rate", "wait_elapsed", "probes_ok"]


def scenario_a_peer_observes(rig: Rig) -> None:
    a, a_events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=1))
    b, b_events = rig.peer(a)
    assert b.state() == "closed"
    fail(a, 2)
    assert b.state() == "open"
    assert b.permit() is None
    assert b.state() == "open"
    assert b_events == [Transition(a.name, "closed", "open", "observed", 1.0, 0.0)]
    rig.wait(rig.open_s)
    assert a.record(probe(a), ok=True, duration_s=0.01) == "closed"
    assert b.state() == "closed"
    assert b_events[1:] == [Transition(a.name, "open", "closed", "observed", 0.0, 0.0)]
    assert [e.reason for e in a_events] == ["failure_rate", "wait_elapsed", "probes_ok"]


def scenario_probes_from_16_threads(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=3))
    fail(b, 2)
    rig.wait(rig.open_s)
    granted = [p for p in permits_in_threads(b) if p is not None]
    assert len(granted) == 3
    assert all(p.probe for p in granted) and len({p.token for p in granted}) == 3
    assert [e.reason for e in events] == ["failure_rate", "wait_elapsed"]


def scenario_one_transition_from_16_threads(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=16, min_calls=4))
    permits = [b.permit() for _ in range(16)]
    barrier = threading.Barrier(16)

    def report(permit: Permit | None) -> None:
        assert permit is not None
        barrier.wait(30)
        b.record(permit, ok=False, duration_s=0.01)

    workers = [threading.Thread(target=report, args=(p,)) for p in permits]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert b.state() == "open"
    assert events == [opened(b.name)]


SCENARIOS = [value for key, value in sorted(globals().items()) if key.startswith("scenario_")]


# ---------------------------------------------------------------- on the memory store
@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rig(clock: Clock) -> Rig:
    shared = MemoryBreakerStore(clock)
    return Rig(lambda: shared, clock.advance, open_s=30.0, probe_ttl_s=60.0)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__[9:])
def test_semantics(scenario: Callable[[Rig], None], rig: Rig) -> None:
    scenario(rig)


def test_open_lasts_exactly_open_s(rig: Rig, clock: Clock) -> None:
    b, _ = rig.make(rig.policy(window=2, min_calls=2))
    fail(b, 2)
    clock.advance(29.999)
    assert b.permit() is None
    clock.advance(0.001)
    assert probe(b).probe


def test_probes_from_16_threads_repeatedly(rig: Rig) -> None:
    for _ in range(20):
        scenario_probes_from_16_threads(rig)


def test_defaults_are_resilience4j_like() -> None:
    policy = BreakerPolicy()
    assert (policy.window, policy.min_calls, policy.failure_rate) == (20, 10, 0.5)
    assert (policy.slow_call_s, policy.slow_rate, policy.open_s) == (10.0, 1.0, 30.0)
    assert (policy.half_open_calls, policy.probe_ttl_s) == (3, 60.0)
    assert CircuitBreaker("openai").store.remote is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window", 0),
        ("window", 2.5),
        ("window", True),
        ("min_calls", 0),
        ("min_calls", 21),  # more than the window holds
        ("failure_rate", 0),
        ("failure_rate", 1.5),
        ("failure_rate", "half"),
        ("slow_rate", -0.1),
        ("slow_call_s", 0),
        ("slow_call_s", float("inf")),
        ("open_s", -1),
        ("open_s", float("nan")),
        ("half_open_calls", 0),
        ("probe_ttl_s", 0),
    ],
)
def test_bad_policy_values(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=rf"BreakerPolicy\.{field} is"):
        BreakerPolicy(**{field: value})  # type: ignore[arg-type]


def test_bad_breaker_arguments() -> None:
    with pytest.raises(ConfigurationError, match="breaker name"):
        CircuitBreaker(" ")
    with pytest.raises(ConfigurationError, match="BreakerPolicy"):
        CircuitBreaker("openai", {"window": 5})  # type: ignore[arg-type]


def test_a_raising_callback_does_not_fail_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Transition) -> None:
        raise RuntimeError("metrics are down")

    b = CircuitBreaker("openai", BreakerPolicy(window=2, min_calls=2), on_transition=broken)
    with caplog.at_level(logging.ERROR, "graphops.resilience"):
        assert fail(b, 2) == ["closed", "open"]
    assert [r.getMessage() for r in caplog.records] == [
        "circuit breaker 'openai': on_transition raised"
    ]


def test_closed_answers_allocate_nothing_new(clock: Clock) -> None:
    store, caller = MemoryBreakerStore(clock), Caller("p", BreakerPolicy(), "me")
    replies = {id(store.permit(caller)) for _ in range(3)}
    replies |= {id(store.record(caller, 0, None, 0)) for _ in range(3)}
    assert len(replies) == 1  # one Reply per state, handed out again


async def test_async_twins(rig: Rig) -> None:
    b, events = rig.make(rig.policy(window=2, min_calls=2, half_open_calls=1))
    for _ in range(2):
        permit = await b.apermit()
        assert permit is not None
        await b.arecord(permit, ok=False, duration_s=0.01)
    assert await b.astate() == "open"
    assert await b.apermit() is None
    rig.wait(rig.open_s)
    first = await b.apermit()
    assert first is not None and first.probe
    assert await b.arelease(first) == "half_open"
    second = await b.apermit()
    assert second is not None
    assert await b.arecord(second, ok=True, duration_s=0.01) == "closed"
    fail(b, 2)
    assert await b.areset() == "closed"
    reasons = [e.reason for e in events]
    assert reasons == ["failure_rate", "wait_elapsed", "probes_ok", "failure_rate", "reset"]


# ---------------------------------------------------------------- an unanswering store
class FlakyStore(MemoryBreakerStore):
    """A shared store that can stop answering; counts how often it is asked."""

    remote = True

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.down = False
        self.asked = 0
        self.while_asked: Callable[[], object] = lambda: None

    def _answer(self, reply: Callable[[], Reply]) -> Reply:
        self.asked += 1
        self.while_asked()
        if self.down:
            raise StoreUnavailable("Redis at redis://nowhere: timed out")
        return reply()

    def permit(self, *args: Any) -> Reply:
        return self._answer(lambda: super(FlakyStore, self).permit(*args))

    def record(self, *args: Any) -> Reply:
        return self._answer(lambda: super(FlakyStore, self).record(*args))

    def release(self, *args: Any) -> Reply:
        return self._answer(lambda: super(FlakyStore, self).release(*args))

    def state(self, *args: Any) -> Reply:
        return self._answer(lambda: super(FlakyStore, self).state(*args))

    def reset(self, *args: Any) -> Reply:
        return self._answer(lambda: super(FlakyStore, self).reset(*args))


@pytest.fixture
def flaky(clock: Clock) -> Iterator[tuple[FlakyStore, CircuitBreaker, list[Transition]]]:
    store = FlakyStore(clock)
    events: list[Transition] = []
    policy = BreakerPolicy(window=2, min_calls=2)
    yield (
        store,
        CircuitBreaker("openai", policy, store, on_transition=events.append, clock=clock),
        events,
    )


def test_fallback_protects_warns_once_and_comes_back(
    flaky: tuple[FlakyStore, CircuitBreaker, list[Transition]],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, b, events = flaky
    succeed(b)
    store.down = True
    asked = store.asked
    with caplog.at_level(logging.INFO, "graphops.resilience"):
        assert fail(b, 2) == ["closed", "open"]  # counted by this process's own breaker
        assert [b.permit() for _ in range(50)] == [None] * 50
        assert store.asked == asked + 1  # one try, then none for a second
        clock.advance(0.999)
        assert b.permit() is None and store.asked == asked + 1
        clock.advance(0.001)
        assert b.permit() is None and store.asked == asked + 2  # tried again: still down
        store.down = False
        assert b.permit() is None  # not yet due
        clock.advance(1.0)
        assert b.permit() is not None  # the shared state, never opened
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "did not answer (Redis at redis://nowhere: timed out)" in warnings[0].getMessage()
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert events == [opened("openai"), Transition("openai", "open", "closed", "observed", 0, 0)]


def test_one_caller_a_second_tries_the_store_again(
    flaky: tuple[FlakyStore, CircuitBreaker, list[Transition]], clock: Clock
) -> None:
    store, b, _ = flaky
    store.down = True
    assert b.permit() is not None
    clock.advance(1.0)
    others: list[Permit | None] = []

    def meanwhile() -> None:  # other threads call while this try is still waiting on the store
        store.while_asked = lambda: None
        callers = [threading.Thread(target=lambda: others.append(b.permit())) for _ in range(8)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(30)

    store.while_asked = meanwhile
    asked = store.asked
    assert b.permit() is not None
    assert store.asked == asked + 1  # the 8 others used the fallback without asking
    assert len(others) == 8 and all(p is not None and p.source == 1 for p in others)


def test_fallback_starts_from_the_state_last_seen(
    flaky: tuple[FlakyStore, CircuitBreaker, list[Transition]], clock: Clock
) -> None:
    store, b, events = flaky
    fail(b, 2)
    store.down = True
    assert b.permit() is None  # still open, though the store cannot say so
    assert b.state() == "open"
    clock.advance(30.0)
    assert probe(b).probe  # the fallback probes on its own clock
    assert [e.reason for e in events] == ["failure_rate", "wait_elapsed"]


def test_outcomes_cross_no_store(
    flaky: tuple[FlakyStore, CircuitBreaker, list[Transition]], clock: Clock
) -> None:
    store, b, events = flaky
    shared_permit = b.permit()
    assert shared_permit is not None
    store.down = True
    local_permit = b.permit()
    assert local_permit is not None and local_permit.source == 1
    assert b.record(shared_permit, ok=False, duration_s=0.01) == "closed"  # dropped
    assert fail(b) == ["closed"]  # alone in the local window
    store.down = False
    clock.advance(1.0)
    assert b.state() == "closed"  # the shared store again
    assert b.record(local_permit, ok=False, duration_s=0.01) == "closed"  # dropped as well
    assert fail(b) == ["closed"]  # one failure in the shared window
    assert fail(b) == ["open"]
    assert events == [opened("openai")]


async def test_async_fallback(
    flaky: tuple[FlakyStore, CircuitBreaker, list[Transition]], clock: Clock
) -> None:
    store, b, events = flaky
    store.down = True
    for _ in range(2):
        permit = await b.apermit()
        assert permit is not None and permit.source == 1
        await b.arecord(permit, ok=False, duration_s=0.01)
    assert await b.astate() == "open"
    store.down = False
    clock.advance(1.0)
    assert await b.astate() == "closed"
    assert [e.reason for e in events] == ["failure_rate", "observed"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"timeout": 0}, "timeout is 0: give seconds, above 0"),
        ({"timeout": "0.05"}, "timeout is '0.05'"),
        ({"ttl_s": float("inf")}, "ttl_s is inf"),
        ({"fresh_s": -0.5}, "fresh_s is -0.5: give seconds, 0 or more"),
    ],
)
def test_redis_store_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisBreakerStore("redis://127.0.0.1:6379/0", **options)


def test_redis_store_url() -> None:
    with pytest.raises(ConfigurationError, match=r"'http://x' is not a Redis URL"):
        RedisBreakerStore.from_url("http://x")
    store = RedisBreakerStore.from_url("redis://:secret@nowhere.invalid:6379/0", prefix="app:")
    assert store.label == "redis://:***@nowhere.invalid:6379/0"  # nothing connected yet
    assert store.keys("openai") == ["app:breaker:{openai}", "app:breaker:{openai}:probes"]
