"""One deadline per run: every node attempt gets min(stage limit, time left), sync nodes too."""

from __future__ import annotations

import asyncio
import itertools
import operator
import threading
import time
from typing import Annotated, Any, TypedDict

import anyio.to_thread
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from prometheus_client import CollectorRegistry

from graphops import build_observed_graph, run_scope
from graphops.errors import BudgetExhausted, ConfigurationError, InvalidInputError
from graphops.observe.metrics import Metrics
from graphops.observe.telemetry import Telemetry
from graphops.policies import BudgetPolicy, NodeOps, Ops
from graphops.resilience.budget import attempt_limit
from graphops.runtime import Identity, RunScope

pytestmark = pytest.mark.anyio


class State(TypedDict, total=False):
    question: str
    log: Annotated[list[str], operator.add]
    budget: float


def _graph(*nodes: tuple[str, Any]) -> StateGraph[State]:
    graph = StateGraph(State)
    for name, node in nodes:
        graph.add_node(name, node)
    names = [START, *(name for name, _ in nodes), END]
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    return graph


@pytest.mark.parametrize(
    "changes",
    [
        {"total_s": 0},
        {"total_s": -1.0},
        {"total_s": float("nan")},
        {"total_s": True},
        {"reserve_s": -0.1},
        {"total_s": 10.0, "max_total_s": 5.0},
        {"override_key": ""},
        {"sync_nodes": "fork"},
    ],
)
def test_bad_budget_values_are_configuration_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="BudgetPolicy"):
        BudgetPolicy(**changes)


def test_bad_node_timeouts_are_configuration_errors() -> None:
    for bad in (0, -1.0, float("inf"), True, "5"):
        with pytest.raises(ConfigurationError, match=r"NodeOps\.timeout"):
            NodeOps(timeout=bad)  # type: ignore[arg-type]


def test_a_node_attempt_gets_the_smaller_of_its_stage_limit_and_the_time_left() -> None:
    scope = RunScope("r", "g", Identity())
    assert attempt_limit(scope, None) is None and attempt_limit(None, 3.0) == (3.0, "stage")
    scope.deadline = time.monotonic() + 10.0
    limit, kind = attempt_limit(scope, 2.0)  # type: ignore[misc]
    assert (limit, kind) == (2.0, "stage")
    limit, kind = attempt_limit(scope, 30.0)  # type: ignore[misc]
    assert kind == "run" and 9.0 < limit <= 10.0


def _slow_async(seconds: float) -> Any:
    async def slow(state: State) -> State:
        await asyncio.sleep(seconds)
        return {"log": ["slow"]}

    return slow


def _slow_sync(seconds: float, finished: threading.Event | None = None) -> Any:
    def slow(state: State) -> State:
        time.sleep(seconds)
        if finished is not None:
            finished.set()
        return {"log": ["slow"]}

    return slow


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_node_past_the_deadline_is_stopped_there(kind: str) -> None:
    registry = CollectorRegistry()
    telemetry = Telemetry(metrics=Metrics(registry), exporters=[])
    slow = _slow_async(5.0) if kind == "async" else _slow_sync(5.0)
    app = build_observed_graph(
        _graph(("slow", slow)),
        ops=Ops(budget=BudgetPolicy(total_s=0.6, reserve_s=0.1), telemetry=telemetry),
    )
    started = time.monotonic()
    with pytest.raises(BudgetExhausted, match="deadline") as caught:
        await app.ainvoke({"question": "q"})
    assert caught.value.node == "slow" and caught.value.kind == "run"
    assert time.monotonic() - started < 4.0  # it did not wait for the five-second node
    assert (
        registry.get_sample_value(
            "graphops_budget_exhausted_total", {"graph": "graph", "node": "slow"}
        )
        == 1.0
    )


def test_a_sync_run_ends_on_time_while_its_thread_runs_on() -> None:
    finished = threading.Event()
    app = build_observed_graph(
        _graph(("slow", _slow_sync(1.5, finished))),
        ops=Ops(budget=BudgetPolicy(total_s=0.3, reserve_s=0.05), telemetry=None),
    )
    with pytest.raises(BudgetExhausted):
        app.invoke({"question": "q"})
    assert not finished.is_set()  # the run returned while the node still slept
    assert finished.wait(10)  # Python cannot kill it: it finishes on its own, unheeded


def test_inline_sync_nodes_are_checked_before_each_attempt_but_not_cut_off() -> None:
    calls: list[str] = []

    def slow(state: State) -> State:
        calls.append(threading.current_thread().name)
        time.sleep(0.5)
        return {"log": ["slow"]}

    app = build_observed_graph(
        _graph(("slow", slow), ("after", lambda s: {"log": ["after"]})),
        ops=Ops(budget=BudgetPolicy(total_s=0.3, reserve_s=0.05, sync_nodes="inline")),
    )
    with pytest.raises(BudgetExhausted) as caught:
        app.invoke({"question": "q"})
    # the slow node ran to its end in the caller's thread; the next found no time left
    assert calls == [threading.current_thread().name] and caught.value.node == "after"


def test_each_run_has_its_own_deadline_and_may_ask_for_its_own_budget() -> None:
    def budget(state: State, config: RunnableConfig) -> State:
        scope = run_scope(config)
        assert scope is not None and scope.deadline is not None
        return {"budget": round(scope.deadline - scope.started, 3)}

    app = build_observed_graph(
        _graph(("budget", budget)),
        ops=Ops(budget=BudgetPolicy(total_s=60.0, reserve_s=0.5), telemetry=None),
    )
    assert app.invoke({"question": "q"})["budget"] == 59.5
    own = {"configurable": {"timeout_s": 10}}
    assert app.invoke({"question": "q"}, own)["budget"] == 9.5
    assert app.invoke({"question": "q"}, {"configurable": {"timeout_s": "4"}})["budget"] == 3.5
    assert app.invoke({"question": "q"}, {"metadata": {"timeout_s": 8}})["budget"] == 7.5


@pytest.mark.parametrize("bad", [0, -3, "soon", 99999, True])
def test_a_bad_per_run_budget_fails_the_run_with_the_reason(bad: Any) -> None:
    app = build_observed_graph(
        _graph(("n", lambda s: {"log": ["n"]})),
        ops=Ops(budget=BudgetPolicy(), telemetry=None),
    )
    with pytest.raises(InvalidInputError, match="timeout_s"):
        app.invoke({"question": "q"}, {"configurable": {"timeout_s": bad}})


async def test_a_stage_limit_holds_inside_a_longer_budget() -> None:
    app = build_observed_graph(
        _graph(("slow", _slow_async(5.0))),
        ops=Ops(budget=BudgetPolicy(total_s=30.0), nodes={"slow": NodeOps(timeout=0.2)}),
    )
    with pytest.raises(BudgetExhausted, match="stage limit") as caught:
        await app.ainvoke({"question": "q"})
    assert caught.value.kind == "stage" and caught.value.limit_s == 0.2


def test_no_retry_is_made_past_the_deadline() -> None:
    calls: list[int] = []

    def slow(state: State) -> State:
        calls.append(1)
        time.sleep(1.0)
        return {"log": ["slow"]}

    ops = Ops(
        budget=BudgetPolicy(total_s=0.3, reserve_s=0.05),
        nodes={"slow": NodeOps(retry=RetryPolicy(max_attempts=3, initial_interval=0.01))},
        telemetry=None,
    )
    app = build_observed_graph(_graph(("slow", slow)), ops=ops)
    with pytest.raises(BudgetExhausted):
        app.invoke({"question": "q"})
    assert calls == [1]  # LangGraph's retry policy was told not to try again


def test_a_stage_timeout_is_retried_by_the_nodes_retry_policy() -> None:
    calls: list[int] = []

    def flaky(state: State) -> State:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.0)
        return {"log": ["flaky"]}

    ops = Ops(
        budget=BudgetPolicy(total_s=30.0),
        nodes={
            "flaky": NodeOps(timeout=0.2, retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
        },
        telemetry=None,
    )
    out = build_observed_graph(_graph(("flaky", flaky)), ops=ops).invoke({"question": "q"})
    assert out["log"] == ["flaky"] and len(calls) == 2


def test_a_resumed_run_has_a_fresh_deadline() -> None:
    attempts: list[int] = []

    def slow_once(state: State) -> State:
        attempts.append(1)
        if len(attempts) == 1:
            time.sleep(1.0)
        return {"log": ["done"]}

    app = build_observed_graph(
        _graph(("first", lambda s: {"log": ["first"]}), ("slow", slow_once)),
        ops=Ops(budget=BudgetPolicy(total_s=0.4, reserve_s=0.05), telemetry=None),
        checkpointer=InMemorySaver(),
    )
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    with pytest.raises(BudgetExhausted):
        app.invoke({"question": "q"}, config)
    resumed = app.invoke(None, config)  # a new run: its own 0.4 s, from now
    assert resumed["log"] == ["first", "done"]


def test_a_subgraph_node_runs_unwrapped() -> None:
    inner = _graph(("inner", lambda s: {"log": ["inner"]})).compile()
    app = build_observed_graph(
        _graph(("sub", inner), ("after", lambda s: {"log": ["after"]})),
        ops=Ops(budget=BudgetPolicy(), telemetry=None),
    )
    assert app.invoke({"question": "q"})["log"] == ["inner", "after"]
    assert app.builder.nodes["sub"].runnable is inner  # LangGraph still finds the subgraph


async def test_a_node_that_is_a_runnable_is_held_to_its_limit_too() -> None:
    from langchain_core.runnables import RunnableLambda

    async def aslow(state: State) -> State:
        await asyncio.sleep(5.0)
        return {"log": ["slow"]}

    node = RunnableLambda(_slow_sync(5.0), afunc=aslow, name="slow")
    app = build_observed_graph(
        _graph(("slow", node)),
        ops=Ops(budget=BudgetPolicy(total_s=0.4, reserve_s=0.05), telemetry=None),
    )
    started = time.monotonic()
    with pytest.raises(BudgetExhausted):
        await anyio.to_thread.run_sync(app.invoke, {"question": "q"})
    with pytest.raises(BudgetExhausted):
        await app.ainvoke({"question": "q"})
    assert time.monotonic() - started < 4.0  # neither run waited for the node
