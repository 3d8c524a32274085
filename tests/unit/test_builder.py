"""build_observed_graph returns the same graph, behaving exactly as before, with steps in it."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, Send
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.errors import UserError
from graphops.observe import Telemetry
from graphops.policies import NodeOps, Ops

pytestmark = pytest.mark.anyio


class State(TypedDict, total=False):
    items: list[int]
    log: Annotated[list[str], operator.add]
    total: int
    loops: int


class Item(TypedDict):
    item: int


def inner_graph() -> Any:
    def double(state: State) -> State:
        return {"log": ["inner"], "total": state.get("total", 0) * 2}

    sub = StateGraph(State)
    sub.add_node("double", double)
    sub.add_edge(START, "double")
    sub.add_edge("double", END)
    return sub.compile()


def tricky_graph() -> StateGraph[State]:
    """Conditional edges with a loop, an async node, Send fan-out, a subgraph and Command."""

    def plan(state: State) -> State:
        return {"log": ["plan"], "loops": state.get("loops", 0) + 1}

    def fan_out(state: State) -> list[Send]:
        return [Send("work", {"item": i}) for i in state["items"]]

    async def work(state: Item) -> State:
        await asyncio.sleep(0)
        return {"log": [f"work{state['item']}"]}

    def gather(state: State) -> State:
        return {"total": sum(int(x[4:]) for x in state["log"] if x.startswith("work"))}

    def again(state: State) -> str:
        return "plan" if state["loops"] < 2 else "finish"

    def finish(state: State) -> Command[Any]:
        return Command(goto=END, update={"log": ["finish"]})

    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("work", work)
    graph.add_node("gather", gather)
    graph.add_node("sub", inner_graph())
    graph.add_node("finish", finish, destinations=(END,))
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["work"])
    graph.add_edge("work", "gather")
    graph.add_edge("gather", "sub")
    graph.add_conditional_edges("sub", again, {"plan": "plan", "finish": "finish"})
    return graph


def user_view(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "graphops"}


@pytest.mark.parametrize("steps", [False, True], ids=["telemetry", "all-steps"])
async def test_wrapped_and_plain_graphs_end_in_the_same_state(
    telemetry: Telemetry, exporter: Any, steps: bool
) -> None:
    ops = Ops.all_steps(telemetry=telemetry) if steps else Ops(telemetry=telemetry)
    plain = await tricky_graph().compile().ainvoke({"items": [1, 2, 3]})
    observed = await build_observed_graph(tricky_graph(), ops=ops).ainvoke({"items": [1, 2, 3]})
    assert user_view(observed) == plain
    # the subgraph returns the whole log, which the parent's reducer appends again
    assert plain["log"][-1] == "finish" and plain["total"] == 36
    if steps:
        # the steps at close ran once, after Command(goto=END) ended the user's part, in
        # the run's span; the tail is for runs the head did not start: not this one
        spans = exporter.get_finished_spans()
        names = [s.name for s in spans]
        assert names.count("cache_store") == names.count("settle") == 1
        assert names.count("work") == 6 and "graphops_tail" not in names
        assert names.index("settle") > max(i for i, n in enumerate(names) if n == "finish")
        root = next(s for s in spans if s.parent is None)
        settle = next(s for s in spans if s.name == "settle")
        assert settle.parent is not None and settle.parent.span_id == root.context.span_id
        assert root.start_time <= settle.start_time <= settle.end_time <= root.end_time
        finish = max(s.attributes["graphops.langgraph_step"] for s in spans if s.name == "finish")
        assert settle.attributes["graphops.langgraph_step"] == finish + 1
        assert set(observed["graphops"]) == {"run", "guard", "cache"}


def test_sync_graphs_stay_sync(telemetry: Telemetry) -> None:
    def add(state: State) -> State:
        return {"total": state.get("total", 0) + 1}

    graph = StateGraph(State)
    graph.add_node("add", add)
    graph.add_edge(START, "add")
    graph.add_edge("add", END)
    observed = build_observed_graph(graph, ops=Ops.all_steps(telemetry=telemetry))
    assert user_view(observed.invoke({"total": 1})) == graph.compile().invoke({"total": 1})


async def test_conditional_entry_point_is_kept_after_the_head_steps(telemetry: Telemetry) -> None:
    def pick(state: State) -> str:
        return "big" if state["total"] > 10 else "small"

    graph = StateGraph(State)
    graph.add_node("big", lambda s: {"log": ["big"]})
    graph.add_node("small", lambda s: {"log": ["small"]})
    graph.add_conditional_edges(START, pick, {"big": "big", "small": "small"})
    graph.add_edge("big", END)
    graph.add_edge("small", END)
    app = build_observed_graph(graph, ops=Ops.all_steps(telemetry=telemetry))
    assert (await app.ainvoke({"total": 50}))["log"] == ["big"]
    assert (await app.ainvoke({"total": 5}))["log"] == ["small"]
    drawing = app.get_graph().draw_mermaid()
    assert "graphops_head -.-> big;" in drawing
    assert "graphops_head -.-> small;" in drawing


def test_the_drawing_shows_the_inserted_steps(telemetry: Telemetry) -> None:
    drawing = (
        build_observed_graph(tricky_graph(), ops=Ops.all_steps(telemetry=telemetry))
        .get_graph()
        .draw_mermaid()
    )
    for line in (
        "__start__ --> graphops_head;",
        "graphops_head -.-> plan;",
        "graphops_head -.-> __end__;",  # refused, or answered from the cache
        "finish -.-> __end__;",  # the user's own way out stays
        "finish -.-> graphops_tail;",  # … and a resumed run's record is written there
        "graphops_tail --> __end__;",
        "graphops_steps = guard, cache_lookup",  # which steps the head holds
    ):
        assert line in drawing
    # two inserted nodes, and only nodes after which a run can end reach the tail
    assert "plan -.-> graphops_tail;" not in drawing and "sub -.-> graphops_tail;" not in drawing
    observed = build_observed_graph(tricky_graph(), ops=Ops.all_steps(telemetry=telemetry))
    inserted = set(observed.get_graph().nodes) - set(tricky_graph().compile().get_graph().nodes)
    # and the degradation ladder, as LangGraph's default error handler node
    assert inserted == {"graphops_head", "graphops_tail", "__default_error_handler__"}
    plain = build_observed_graph(tricky_graph(), ops=Ops(telemetry=telemetry)).get_graph()
    assert set(plain.nodes) == set(tricky_graph().compile().get_graph().nodes)


async def test_threads_get_a_fresh_ops_record_each_turn(telemetry: Telemetry) -> None:
    graph = StateGraph(State)
    graph.add_node("add", lambda s: {"total": s.get("total", 0) + 1})
    graph.add_edge(START, "add")
    graph.add_edge("add", END)
    app = build_observed_graph(
        graph, ops=Ops.all_steps(telemetry=telemetry), checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "x"}}
    first = await app.ainvoke({"total": 0}, config)
    second = await app.ainvoke({}, config)
    assert second["total"] == 2
    assert first["graphops"]["run"]["trace_id"] != second["graphops"]["run"]["trace_id"]
    assert second["graphops"]["run"]["thread_id"] == "x"


async def test_nodes_and_edges_as_a_mapping(telemetry: Telemetry) -> None:
    def first(state: State) -> State:
        return {"log": ["first"]}

    def second(state: State) -> State:
        return {"log": ["second"]}

    pipeline = build_observed_graph(
        {"first": first, "second": second}, state_schema=State, ops=Ops(telemetry=telemetry)
    )
    assert (await pipeline.ainvoke({}))["log"] == ["first", "second"]
    routed = build_observed_graph(
        {"first": first, "second": second},
        state_schema=State,
        edges=[(START, "first"), ("first", lambda s: "second", ["second"]), ("second", END)],
        ops=Ops(telemetry=telemetry),
    )
    assert (await routed.ainvoke({}))["log"] == ["first", "second"]


def test_node_options_apply_to_the_node(telemetry: Telemetry) -> None:
    retry = RetryPolicy(max_attempts=5)
    ops = Ops(telemetry=telemetry, nodes={"work": NodeOps(timeout=5.0, retry=retry)})
    app = build_observed_graph(tricky_graph(), ops=ops)
    spec = app.builder.nodes["work"]
    # the stage limit is graphops' own (it shrinks to the run's time left), not a
    # TimeoutPolicy fixed at compile time; the retry policy is LangGraph's
    assert spec.timeout is None and spec.runnable.name == "work"
    assert "budgeted" in spec.runnable.afunc.__qualname__  # held to its limit by graphops
    assert spec.retry_policy == retry
    assert "budgeted" not in app.builder.nodes["plan"].runnable.func.__qualname__


async def test_a_timeout_on_a_sync_node_holds(telemetry: Telemetry) -> None:
    """LangGraph refuses timeouts on sync nodes; graphops' stage limit holds them too."""
    import time as clock

    from graphops.errors import BudgetExhausted

    def slow(state: State) -> State:
        clock.sleep(2.0)
        return {"log": ["slow"]}

    ops = Ops(telemetry=telemetry, nodes={"slow": NodeOps(timeout=0.1)})
    app = build_observed_graph({"slow": slow}, state_schema=State, ops=ops)
    started = clock.monotonic()
    with pytest.raises(BudgetExhausted, match="stage limit") as caught:
        app.invoke({})
    assert caught.value.node == "slow" and caught.value.kind == "stage"
    with pytest.raises(BudgetExhausted):
        await app.ainvoke({})
    assert clock.monotonic() - started < 2.0  # neither run waited for the sleeping thread


async def test_a_compiled_graph_is_accepted(telemetry: Telemetry) -> None:
    app = build_observed_graph(tricky_graph().compile(), ops=Ops(telemetry=telemetry))
    assert user_view(await app.ainvoke({"items": [1]}))["log"][-1] == "finish"


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: build_observed_graph({"a": lambda s: s}), "needs state_schema"),
        (lambda: build_observed_graph({"a": 3}, state_schema=State), "not a callable"),
        (lambda: build_observed_graph(42), "takes a StateGraph"),  # type: ignore[arg-type]
        (lambda: build_observed_graph(tricky_graph(), state_schema=State), "go with a mapping"),
        (
            lambda: build_observed_graph({"guard": lambda s: s}, state_schema=State),
            "reserved for graphops steps",
        ),
        (
            lambda: build_observed_graph({"a": lambda s: s}, state_schema=State, edges=[("a",)]),
            "an edge is",
        ),  # type: ignore[list-item]
        (
            lambda: build_observed_graph(tricky_graph(), ops=Ops(nodes={"nope": NodeOps()})),
            "unknown nodes",
        ),
    ],
)
def test_misuse_is_a_user_error_that_says_how_to_fix_it(call: Any, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        call()


def test_a_user_key_named_graphops_is_refused() -> None:
    class Clash(TypedDict):
        graphops: int

    graph = StateGraph(Clash)
    graph.add_node("a", lambda s: s)
    graph.add_edge(START, "a")
    with pytest.raises(UserError, match="reserved for graphops"):
        build_observed_graph(graph)
