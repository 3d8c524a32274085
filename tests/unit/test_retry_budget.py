"""The retry budget: a bounded share of calls retried, deposits that expire, a reserve."""

from __future__ import annotations

import threading

import openai
import pytest
from langchain_openai import ChatOpenAI

from graphops.errors import ConfigurationError
from graphops.resilience.retry import RetryEvent, RetryPolicy, retrying
from graphops.resilience.retry_budget import RetryBudget
from tests.fault_server import fault_server


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def withdraw_all(budget: RetryBudget) -> int:
    taken = 0
    while budget.try_withdraw():
        taken += 1
    return taken


def test_without_a_reserve_a_hundred_calls_pay_for_exactly_twenty_retries() -> None:
    budget = RetryBudget(percent=0.2, min_per_s=0, clock=Clock())
    assert budget.balance() == 0 and not budget.try_withdraw()
    for _ in range(100):
        budget.deposit()
    assert budget.balance() == 20
    assert withdraw_all(budget) == 20
    assert budget.balance() == 0
    for _ in range(4):
        budget.deposit()
    assert budget.balance() == 0  # four calls are not yet worth a retry
    budget.deposit()
    assert budget.balance() == 1


def test_deposits_expire_after_the_ttl() -> None:
    clock = Clock()
    budget = RetryBudget(percent=0.2, min_per_s=0, ttl_s=10, clock=clock)
    for _ in range(50):
        budget.deposit()
    clock.now += 5
    for _ in range(50):
        budget.deposit()
    assert budget.balance() == 20
    clock.now += 4.99  # 9.99 s after the first deposits: all still count
    assert budget.balance() == 20
    clock.now += 0.01  # 10 s: the first fifty are gone
    assert budget.balance() == 10
    clock.now += 5  # and the rest
    assert budget.balance() == 0


def test_withdrawals_expire_too_so_spent_retries_come_back_with_new_traffic() -> None:
    clock = Clock()
    budget = RetryBudget(percent=0.5, min_per_s=0, ttl_s=10, clock=clock)
    for _ in range(10):
        budget.deposit()
    assert withdraw_all(budget) == 5
    clock.now += 10  # deposits and withdrawals both age out
    assert budget.balance() == 0
    for _ in range(4):
        budget.deposit()
    assert budget.balance() == 2


def test_the_reserve_lets_a_quiet_client_retry_and_refills_over_time() -> None:
    clock = Clock()
    budget = RetryBudget(percent=0.2, min_per_s=1, ttl_s=10, clock=clock)
    assert budget.balance() == 10  # min_per_s * ttl_s, with no traffic at all
    for _ in range(50):
        budget.deposit()
    assert budget.balance() == 20  # the reserve plus a fifth of fifty
    assert withdraw_all(budget) == 20
    clock.now += 10  # the withdrawals expired with the deposits: the reserve is whole again
    assert budget.balance() == 10


def test_percent_zero_means_only_the_reserve_and_above_one_more_than_a_retry_per_call() -> None:
    reserve_only = RetryBudget(percent=0, min_per_s=0.5, ttl_s=10, clock=Clock())
    for _ in range(100):
        reserve_only.deposit()
    assert reserve_only.balance() == 5
    generous = RetryBudget(percent=2.0, min_per_s=0, clock=Clock())
    for _ in range(3):
        generous.deposit()
    assert generous.balance() == 6
    assert RetryBudget(percent=0, min_per_s=0, clock=Clock()).try_withdraw() is False


def test_a_clock_that_steps_back_neither_refunds_nor_breaks() -> None:
    clock = Clock(500.0)
    budget = RetryBudget(percent=1.0, min_per_s=0, clock=clock)
    budget.deposit()
    clock.now = 400.0
    budget.deposit()
    assert budget.balance() == 2
    clock.now = 520.0
    assert budget.balance() == 0


def test_sixteen_threads_never_withdraw_more_than_the_balance() -> None:
    budget = RetryBudget(percent=0.2, min_per_s=0, clock=Clock())
    for _ in range(1000):
        budget.deposit()
    start = threading.Barrier(16)
    taken = [0] * 16

    def worker(index: int) -> None:
        start.wait()
        for _ in range(50):
            if budget.try_withdraw():
                taken[index] += 1
            budget.balance()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(taken) == 200
    assert budget.balance() == 0


def test_concurrent_deposits_are_all_counted() -> None:
    budget = RetryBudget(percent=0.2, min_per_s=0, clock=Clock())

    def worker() -> None:
        for _ in range(500):
            budget.deposit()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.balance() == 16 * 500 // 5


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("percent", -0.1),
        ("percent", 1001),
        ("percent", float("nan")),
        ("percent", "0.2"),
        ("percent", True),
        ("min_per_s", -1),
        ("min_per_s", float("inf")),
        ("ttl_s", 0),
        ("ttl_s", -10),
        ("ttl_s", float("inf")),
    ],
)
def test_bad_arguments_are_refused_naming_them(argument: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"RetryBudget {argument} is"):
        RetryBudget(**{argument: value})  # type: ignore[arg-type]


def test_defaults_are_finagles_and_the_repr_shows_the_balance() -> None:
    budget = RetryBudget(clock=Clock())
    assert (budget.percent, budget.min_per_s, budget.ttl_s) == (0.2, 10.0, 10.0)
    assert repr(budget) == "RetryBudget(percent=0.2, min_per_s=10, ttl_s=10, balance=100)"


def test_a_shared_budget_bounds_retries_against_a_half_failing_provider() -> None:
    """400 calls, half of the first attempts failing: retries stay at a fifth of the calls."""
    calls = 400
    budget = RetryBudget(percent=0.2, min_per_s=0, clock=Clock())
    retries: list[RetryEvent] = []
    with fault_server(seed=11) as server:
        server.fail("500", rate=0.5)
        chat = ChatOpenAI(
            model="m",
            api_key="x",
            base_url=server.url,
            max_retries=0,
            timeout=5.0,
        )
        failed = 0
        for _ in range(calls):
            loop = retrying(RetryPolicy(), budget=budget, on_retry=retries.append, sleep=_no_sleep)
            try:
                loop(chat.invoke, "q")
            except openai.InternalServerError:
                failed += 1
        requests = server.requests
    assert len(retries) <= calls * 0.2 + 1
    assert requests <= calls * 1.2
    assert requests == calls + len(retries)
    # the budget was the limit: about half the calls failed once, far more than a fifth
    assert len(retries) >= calls * 0.2 - 5 and failed > 0


def _no_sleep(seconds: float) -> None:
    """Backoff waits are not what this test is about."""
