"""The run scope opens for every run, however it starts, and closes once, however it ends."""

from __future__ import annotations

import asyncio
import operator
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Overwrite, Send, interrupt
from pydantic import BaseModel
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.observe import Telemetry
from graphops.policies import CacheAnswer, CachePolicy, GuardPolicy, Ops
from graphops.runtime import RunScope, ScopeHandler, run_scope

pytestmark = pytest.mark.anyio


class State(TypedDict, total=False):
    question: str
    items: list[int]
    log: Annotated[list[str], operator.add]
    answer: str


@dataclass
class Seen:
    """What the nodes saw of their run's scope, and how each scope closed."""

    observed: bool = True  # False: the plain graph's nodes, with no scope to see
    users: list[str | None] = field(default_factory=list)
    traces: list[str | None] = field(default_factory=list)
    closed: list[tuple[str, str | None]] = field(default_factory=list)

    def note(self, config: RunnableConfig) -> None:
        scope = run_scope(config)
        if not self.observed:
            assert scope is None
            return
        assert scope is not None, "a node of an observed graph always has a scope"
        self.users.append(scope.identity.user)
        self.traces.append(scope.trace_id)
        if not any(run == scope.run_id for run, _ in self.closed_ids):
            self.closed_ids.append((scope.run_id, None))
            scope.on_close(self._closed)

    closed_ids: list[tuple[str, None]] = field(default_factory=list)

    def _closed(self, scope: RunScope) -> None:
        self.closed.append((scope.run_id, scope.ended))
        self.outcomes.append(dict(scope.outcomes))  # the steps at close ran before this

    outcomes: list[dict[str, Any]] = field(default_factory=list)


def scope_handler(app: Any) -> ScopeHandler:
    return next(h for h in app.config["callbacks"] if isinstance(h, ScopeHandler))


def spans_named(exporter: Any, name: str) -> int:
    return sum(1 for s in exporter.get_finished_spans() if s.name == name)


def user_view(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "graphops"}


def as_user(user: str, thread: str | None = None, **config: Any) -> Any:
    out: dict[str, Any] = {"metadata": {"user": user}, **config}
    if thread is not None:
        out["configurable"] = {"thread_id": thread}
    return out


# ------------------------------------------------------------------ how runs start
async def test_resume_fork_and_command_resume_each_open_their_own_scope(
    telemetry: Telemetry,
) -> None:
    seen = Seen()

    def first(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        return {"log": ["first"]}

    def second(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        if state.get("question") == "ask me":
            return {"log": [f"told {interrupt('how many?')}"]}
        return {"log": ["second"]}

    graph = StateGraph(State)
    graph.add_sequence([first, second])
    graph.add_edge(START, "first")
    graph.add_edge("second", END)
    app = build_observed_graph(
        graph, ops=Ops.all_steps(telemetry=telemetry), checkpointer=InMemorySaver()
    )

    fresh = await app.ainvoke({"question": "hi"}, as_user("ann", "t1"))
    assert fresh["graphops"]["run"]["user"] == "ann"
    # a fork of ann's run, re-run by bob from before `second` (what replay --rerun does)
    history = [s async for s in app.aget_state_history({"configurable": {"thread_id": "t1"}})]
    before_second = next(s for s in history if s.next == ("second",))
    forked = await app.ainvoke(None, {**before_second.config, "metadata": {"user": "bob"}})
    assert forked["graphops"]["run"]["user"] == "bob"
    assert forked["graphops"]["run"]["trace_id"] not in (None, fresh["graphops"]["run"]["trace_id"])
    assert seen.users == ["ann", "ann", "bob"]

    # interrupt, then Command(resume=…) by someone else: a new run with its own scope
    paused = await app.ainvoke({"question": "ask me"}, as_user("cy", "t2"))
    assert "__interrupt__" in paused
    resumed = await app.ainvoke(Command(resume=3), as_user("dan", "t2"))
    assert resumed["log"][-1] == "told 3"
    assert resumed["graphops"]["run"]["user"] == "dan"
    assert seen.users[-3:] == ["cy", "cy", "dan"]
    assert len(set(seen.traces)) == 4  # ann, bob, cy, dan: one trace each
    assert [ended for _, ended in seen.closed] == ["ok", "ok", "interrupted", "ok"]
    assert scope_handler(app).open_runs() == 0


async def test_a_resumed_run_never_inherits_the_last_runs_outcomes(telemetry: Telemetry) -> None:
    graph = StateGraph(State)
    graph.add_node("slow", lambda s: {"log": [f"asked {interrupt('ok?')}"]})
    graph.add_edge(START, "slow")
    graph.add_edge("slow", END)
    app = build_observed_graph(
        graph, ops=Ops.all_steps(telemetry=telemetry), checkpointer=InMemorySaver()
    )
    paused = await app.ainvoke({"question": "q"}, as_user("ann", "t"))
    assert paused["graphops"]["guard"]["outcome"] == "allowed"
    resumed = await app.ainvoke(Command(resume="yes"), as_user("bob", "t"))
    ops = resumed["graphops"]
    assert "guard" not in ops and "cache" not in ops  # the head did not run in this run
    assert ops["run"]["user"] == "bob"
    assert ops["run"]["trace_id"] != paused["graphops"]["run"]["trace_id"]
    # and the channel is never checkpointed
    assert "graphops" not in (await app.aget_state({"configurable": {"thread_id": "t"}})).values


# ------------------------------------------------------------------ how runs end
def _shape(name: str, seen: Seen) -> StateGraph[State]:
    def note(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        return {"log": ["note"]}

    graph = StateGraph(State)
    graph.add_node("note", note)
    graph.add_edge(START, "note")
    if name == "normal":
        graph.add_node("done", lambda s: {"log": ["done"]})
        graph.add_edge("note", "done")
        graph.add_edge("done", END)
    elif name == "command_end":

        def decide(state: State) -> Command[Any]:
            return Command(goto=END, update={"log": ["decided"]})

        graph.add_node("decide", decide, destinations=(END,))
        graph.add_edge("note", "decide")
    elif name in ("send_with_path_map", "send_without_path_map"):

        def fan_out(state: State) -> list[Send]:
            return [Send("work", {"items": [i]}) for i in (1, 2, 3)]

        graph.add_node("work", lambda s: {"log": [f"work{s['items'][0]}"]})
        graph.add_node("gather", lambda s: {"answer": str(len(s["log"]))})
        path_map = ["work"] if name == "send_with_path_map" else None
        graph.add_conditional_edges("note", fan_out, path_map)
        graph.add_edge("work", "gather")
        graph.add_edge("gather", END)
    elif name == "send_workers_end":

        def fan(state: State) -> list[Send]:
            return [Send("work", {"items": [i]}) for i in (1, 2)]

        graph.add_node("work", lambda s: {"log": [f"work{s['items'][0]}"]})
        graph.add_conditional_edges("note", fan)
        graph.add_edge("work", END)
    elif name == "router_end":
        graph.add_node("again", lambda s: {"log": ["again"]})
        graph.add_conditional_edges(
            "note", lambda s: "again" if s["log"].count("note") < 2 else END, ["again", END]
        )
        graph.add_edge("again", "note")
    else:
        raise AssertionError(name)
    return graph


SHAPES = [
    "normal",
    "command_end",
    "send_with_path_map",
    "send_without_path_map",
    "send_workers_end",
    "router_end",
]


@pytest.mark.parametrize("shape", SHAPES)
async def test_the_tail_and_the_close_run_once_and_the_state_is_the_plain_graphs(
    telemetry: Telemetry, exporter: Any, shape: str
) -> None:
    seen = Seen()
    plain = await _shape(shape, Seen(observed=False)).compile().ainvoke({"question": "q"})
    app = build_observed_graph(_shape(shape, seen), ops=Ops.all_steps(telemetry=telemetry))
    observed = await app.ainvoke({"question": "q"}, as_user("ann"))
    assert user_view(observed) == plain
    assert spans_named(exporter, "cache_store") == spans_named(exporter, "settle") == 1
    names = [s.name for s in sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)]
    user_nodes = [n for n in names if n in ("note", "done", "decide", "work", "gather", "again")]
    assert names.index("settle") > names.index(user_nodes[-1]), names  # after every node
    assert len({run for run, _ in seen.closed}) == 1 and [e for _, e in seen.closed] == ["ok"]
    assert seen.outcomes[-1]["settled"]["llm_calls"] == 0
    # stored once, at close, when the shape's graph gave an answer
    stored = {"stored": True, "reason": None}
    assert seen.outcomes[-1]["cache_store"] == (
        stored if observed.get("answer") else {"stored": False, "reason": "no_answer"}
    )
    assert "graphops_tail" not in names  # the head started this run: its output has the record
    assert observed["graphops"]["run"]["user"] == "ann"
    assert scope_handler(app).open_runs() == 0 and telemetry.handler.open_runs() == 0


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_run_the_head_did_not_start_ends_at_the_tail_once(
    telemetry: Telemetry, exporter: Any, shape: str
) -> None:
    seen = Seen()
    plain = await _shape(shape, Seen(observed=False)).compile().ainvoke({"question": "q"})
    app = build_observed_graph(
        _shape(shape, seen), ops=Ops.all_steps(telemetry=telemetry), checkpointer=InMemorySaver()
    )
    await app.ainvoke({"question": "q"}, as_user("ann", "t"))
    history = [s async for s in app.aget_state_history({"configurable": {"thread_id": "t"}})]
    after_head = next(s for s in history if s.next == ("note",))
    exporter.clear()
    # a fork re-run by bob from after the head: the head does not run, the tail does
    forked = await app.ainvoke(None, {**after_head.config, "metadata": {"user": "bob"}})
    assert user_view(forked) == plain
    assert forked["graphops"]["run"]["user"] == "bob" and "guard" not in forked["graphops"]
    names = [s.name for s in sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)]
    assert names.count("graphops_tail") == 1 and "guard" not in names
    assert names.count("cache_store") == names.count("settle") == 1
    assert names.index("settle") > names.index("graphops_tail"), names
    assert [e for _, e in seen.closed][-1] == "ok" and len(seen.closed) == 2
    assert scope_handler(app).open_runs() == 0 and telemetry.handler.open_runs() == 0


def _failing(telemetry: Telemetry) -> Ops:
    """Every step but the degradation ladder, so a node's exception reaches the caller."""
    return replace(Ops.all_steps(telemetry=telemetry), degrade=None)


async def test_a_degraded_run_closes_the_scope_once_and_is_not_stored(
    telemetry: Telemetry, exporter: Any
) -> None:
    seen = Seen()

    def fails(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        raise ValueError("boom")

    graph = StateGraph(State)
    graph.add_node("fails", fails)
    graph.add_edge(START, "fails")
    graph.add_edge("fails", END)
    app = build_observed_graph(graph, ops=Ops.all_steps(telemetry=telemetry))
    out = await app.ainvoke({"question": "q"}, as_user("ann"))
    assert out["graphops"]["degraded"] == {
        "level": "refusal",
        "reason": "error",
        "node": "fails",
        "error": "ValueError",
    }
    assert [e for _, e in seen.closed] == ["ok"]
    assert seen.outcomes[-1]["cache_store"] == {"stored": False, "reason": "degraded"}
    assert spans_named(exporter, "settle") == 1
    assert scope_handler(app).open_runs() == 0


async def test_a_node_exception_closes_the_scope_once(telemetry: Telemetry, exporter: Any) -> None:
    seen = Seen()

    def fails(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        raise ValueError("boom")

    graph = StateGraph(State)
    graph.add_node("fails", fails)
    graph.add_edge(START, "fails")
    graph.add_edge("fails", END)
    app = build_observed_graph(graph, ops=_failing(telemetry))
    with pytest.raises(ValueError, match="boom"):
        await app.ainvoke({"question": "q"}, as_user("ann"))
    assert [e for _, e in seen.closed] == ["error"]
    assert spans_named(exporter, "settle") == 1  # the close settles a failed run too, once
    assert seen.outcomes[-1]["cache_store"] == {"stored": False, "reason": "error"}
    (settle,) = [s for s in exporter.get_finished_spans() if s.name == "settle"]
    (root,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert settle.parent is not None and settle.parent.span_id == root.context.span_id
    assert scope_handler(app).open_runs() == 0


async def test_an_error_handler_ending_the_run_closes_the_scope_once(
    telemetry: Telemetry, exporter: Any
) -> None:
    seen = Seen()

    def fails(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        raise ValueError("boom")

    def handled(state: State) -> State:
        return {"log": ["handled"]}

    for compiled_first in (False, True):
        graph = StateGraph(State)
        graph.set_node_defaults(error_handler=handled)
        graph.add_node("fails", fails)
        graph.add_edge(START, "fails")
        graph.add_edge("fails", END)
        plain = graph.compile()  # a compiled graph's builder was changed by compile
        expected = await plain.ainvoke({"question": "q"})
        source: Any = plain if compiled_first else graph
        app = build_observed_graph(source, ops=Ops.all_steps(telemetry=telemetry))
        observed = await app.ainvoke({"question": "q"}, as_user("ann"))
        assert user_view(observed) == expected
        assert "handled" in observed["log"]
    assert [e for _, e in seen.closed] == ["ok", "ok"]
    assert spans_named(exporter, "settle") == 2  # once per run


async def test_a_cancelled_run_closes_its_scope(telemetry: Telemetry) -> None:
    seen = Seen()
    started = asyncio.Event()

    async def slow(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        started.set()
        await asyncio.sleep(30)
        return {}

    graph = StateGraph(State)
    graph.add_node("slow", slow)
    graph.add_edge(START, "slow")
    graph.add_edge("slow", END)
    app = build_observed_graph(graph, ops=Ops.all_steps(telemetry=telemetry))
    task = asyncio.create_task(app.ainvoke({"question": "q"}, as_user("ann")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e for _, e in seen.closed] == ["cancelled"]
    assert scope_handler(app).open_runs() == 0


def test_sync_graphs_open_and_close_scopes_too(telemetry: Telemetry) -> None:
    seen = Seen()
    app = build_observed_graph(_shape("normal", seen), ops=Ops.all_steps(telemetry=telemetry))
    out = app.invoke({"question": "q"}, as_user("ann"))
    assert out["log"] == ["note", "done"] and seen.users == ["ann"]
    assert [e for _, e in seen.closed] == ["ok"]


# ------------------------------------------------------------------ outcomes and routes
def _answering_graph() -> StateGraph[State]:
    graph = StateGraph(State)
    graph.add_node("answer", lambda s: {"answer": "from the graph", "log": ["answer"]})
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph


async def test_a_refused_run_ends_before_any_node(telemetry: Telemetry, exporter: Any) -> None:
    app = build_observed_graph(
        _answering_graph(),
        ops=Ops(guard=GuardPolicy(max_input_bytes=5), cache=CachePolicy(), telemetry=telemetry),
    )
    out = await app.ainvoke({"question": "far too long"}, as_user("ann"))
    guard = out["graphops"]["guard"]
    assert guard["outcome"] == "refused" and guard["reason"] == "invalid_input"
    assert guard["message"].startswith("the question is 12 bytes long")
    assert "answer" not in out and "cache" not in out["graphops"]  # nothing else ran
    names = [s.name for s in exporter.get_finished_spans()]
    assert "guard" in names and not set(names) & {"answer", "cache_lookup", "graphops_tail"}
    (store,) = [s for s in exporter.get_finished_spans() if s.name == "cache_store"]
    assert store.attributes is not None
    assert store.attributes["graphops.cache.store_skipped"] == "refused"
    assert names.count("settle") == 1  # a refused run is settled as it closes
    (guard_span,) = [s for s in exporter.get_finished_spans() if s.name == "guard"]
    refusal, route = guard_span.events  # the refusal, then the head's routing decision
    assert refusal.name == "graphops.guard.refused"
    assert refusal.attributes is not None
    assert refusal.attributes["graphops.guard.reason"] == "invalid_input"
    assert route.attributes is not None and list(route.attributes["graphops.route.to"]) == [END]


@dataclass(frozen=True)
class Scripted(CachePolicy):
    def lookup(self, state: Any, scope: RunScope) -> CacheAnswer | None:
        return CacheAnswer({"answer": "from the cache"})


async def test_a_cache_hit_skips_the_nodes_and_is_not_stored_again(
    telemetry: Telemetry, exporter: Any
) -> None:
    app = build_observed_graph(
        _answering_graph(),
        ops=Ops(guard=GuardPolicy(), cache=Scripted(), telemetry=telemetry),
    )
    out = await app.ainvoke({"question": "q"}, as_user("ann"))
    assert out["answer"] == "from the cache" and not out.get("log")  # no node ran
    ops = out["graphops"]
    assert ops["cache"] == {
        "hit": True,
        "tier": "exact",
        "similarity": 1.0,
        "age_s": 0.0,
        "key": None,
    }
    assert set(ops) == {"run", "guard", "cache"}
    names = [s.name for s in exporter.get_finished_spans()]
    assert "answer" not in names and names.count("settle") == 1
    (store,) = [s for s in exporter.get_finished_spans() if s.name == "cache_store"]
    assert store.attributes is not None
    assert store.attributes["graphops.cache.stored"] is False
    assert store.attributes["graphops.cache.store_skipped"] == "cache_hit"
    (lookup,) = [s for s in exporter.get_finished_spans() if s.name == "cache_lookup"]
    assert lookup.events[0].attributes is not None
    assert list(lookup.events[0].attributes["graphops.route.to"]) == [END]


class Question(BaseModel):
    question: str
    route: str = ""


@dataclass
class Asked:
    question: str
    route: str = ""


@pytest.mark.parametrize("schema", [Question, Asked], ids=["pydantic", "dataclass"])
async def test_object_states_with_a_conditional_entry_point(
    telemetry: Telemetry, schema: type[Any]
) -> None:
    def pick(state: Any) -> str:
        return "long" if len(state.question) > 3 else "short"  # attribute access: the object

    graph = StateGraph(schema)
    graph.add_node("long", lambda s: {"route": "long"})
    graph.add_node("short", lambda s: {"route": "short"})
    graph.add_conditional_edges(START, pick, ["long", "short"])
    graph.add_edge("long", END)
    graph.add_edge("short", END)
    plain = graph.compile()
    app = build_observed_graph(graph, ops=Ops.all_steps(telemetry=telemetry))
    for question in ("hi", "hello there"):
        observed = await app.ainvoke({"question": question})
        assert user_view(observed) == await plain.ainvoke({"question": question})
        assert observed["graphops"]["guard"]["outcome"] == "allowed"
    refused = await app.ainvoke({"question": " "})
    assert refused["graphops"]["guard"]["outcome"] == "refused"
    assert not refused.get("route")  # neither entry node ran


async def test_streams_show_no_internal_objects(telemetry: Telemetry) -> None:
    app = build_observed_graph(_answering_graph(), ops=Ops.all_steps(telemetry=telemetry))

    def objects(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [value, *(o for v in value.values() for o in objects(v))]
        if isinstance(value, list | tuple):
            return [value, *(o for v in value for o in objects(v))]
        return [value]

    updates = [u async for u in app.astream({"question": "q"}, stream_mode="updates")]
    assert [next(iter(u)) for u in updates] == ["graphops_head", "answer"]
    assert not any(isinstance(o, Overwrite) for u in updates for o in objects(u))
    head = updates[0]["graphops_head"]["graphops"]
    assert set(head) == {"run", "guard", "cache"}


async def test_a_failed_run_resumed_by_another_user_is_that_users_run(
    telemetry: Telemetry,
) -> None:
    seen = Seen()
    attempts: list[int] = []

    def flaky(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("provider down")
        return {"answer": "ok"}

    graph = StateGraph(State)
    graph.add_node("flaky", flaky)
    graph.add_edge(START, "flaky")
    graph.add_edge("flaky", END)
    app = build_observed_graph(graph, ops=_failing(telemetry), checkpointer=InMemorySaver())
    with pytest.raises(RuntimeError):
        await app.ainvoke({"question": "q"}, as_user("ann", "r"))
    # what `graphops ask --thread r --resume` does: continue from the last checkpoint
    resumed = await app.ainvoke(None, as_user("bob", "r"))
    assert resumed["answer"] == "ok" and resumed["graphops"]["run"]["user"] == "bob"
    assert seen.users == ["ann", "bob"] and len(set(seen.traces)) == 2
    assert [e for _, e in seen.closed] == ["error", "ok"]


async def test_a_hand_built_graph_uses_a_step_alone() -> None:
    from graphops.steps import OpsChannel, guard_step, refused, step_node

    class Hand(OpsChannel, total=False):
        question: str
        answer: str

    graph = StateGraph(Hand)
    graph.add_node("guard", step_node(guard_step(GuardPolicy(max_input_bytes=8))))
    graph.add_node("answer", lambda s: {"answer": "yes"})
    graph.add_edge(START, "guard")
    graph.add_conditional_edges("guard", lambda s: END if refused(s) else "answer")
    graph.add_edge("answer", END)
    app = graph.compile()  # no graphops builder, no scope handler: a scope per call
    allowed = await app.ainvoke({"question": "short"})
    assert allowed["answer"] == "yes" and allowed["graphops"]["guard"]["outcome"] == "allowed"
    refused_run = await app.ainvoke({"question": "much too long"})
    assert "answer" not in refused_run
    assert refused_run["graphops"]["guard"]["reason"] == "invalid_input"


async def test_runs_inside_tools_and_retrievers_belong_to_the_run(telemetry: Telemetry) -> None:
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool

    seen = Seen()
    inner = RunnableLambda(lambda text, config: (seen.note(config), text.upper())[1])

    @tool
    def shout(text: str) -> str:
        """Shout ``text`` back."""
        return str(inner.invoke(text))

    def use_tool(state: State, config: RunnableConfig) -> State:
        seen.note(config)
        return {"answer": shout.invoke({"text": state["question"]}, config)}

    graph = StateGraph(State)
    graph.add_node("use_tool", use_tool)
    graph.add_edge(START, "use_tool")
    graph.add_edge("use_tool", END)
    app = build_observed_graph(graph, ops=Ops.all_steps(telemetry=telemetry))
    out = await app.ainvoke({"question": "hey"}, as_user("ann"))
    assert out["answer"] == "HEY"
    assert seen.users == ["ann", "ann"] and len(set(seen.traces)) == 1  # one run, one scope
    assert len(seen.closed) == 1
    assert scope_handler(app).open_runs() == 0


@dataclass(frozen=True)
class Storing(CachePolicy):
    stored: list[Any] = field(default_factory=list)

    def store(self, state: Any, scope: RunScope) -> bool:
        self.stored.append((state, scope.ended))
        return True


async def test_the_store_gets_the_runs_output_once_and_only_after_a_normal_end(
    telemetry: Telemetry, exporter: Any
) -> None:
    policy = Storing()
    app = build_observed_graph(
        _answering_graph(), ops=Ops(guard=GuardPolicy(), cache=policy, telemetry=telemetry)
    )
    out = await app.ainvoke({"question": "q"}, as_user("ann"))
    ((state, ended),) = policy.stored
    assert ended == "ok" and state["answer"] == out["answer"] == "from the graph"
    (store,) = [s for s in exporter.get_finished_spans() if s.name == "cache_store"]
    assert store.attributes is not None and store.attributes["graphops.cache.stored"] is True
    # a refused run, and a run that fails, store nothing
    await app.ainvoke({"question": " "}, as_user("ann"))
    failing = StateGraph(State)
    failing.add_node("boom", lambda s: (_ for _ in ()).throw(ValueError("boom")))
    failing.add_edge(START, "boom")
    failing.add_edge("boom", END)
    broken = build_observed_graph(failing, ops=Ops(guard=GuardPolicy(), cache=policy))
    with pytest.raises(ValueError, match="boom"):
        await broken.ainvoke({"question": "q"})
    assert len(policy.stored) == 1
