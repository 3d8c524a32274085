"""The contract with LangGraph's private shapes: each test names the shape it checks.

graphops touches LangGraph internals only through ``graphops._compat.langgraph``;
when an upgrade changes one of them, the test here that checks it fails with the
shape's name, before any graph is built on it.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
from typing import Annotated, Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict

from graphops._compat import langgraph as compat


class State(TypedDict, total=False):
    x: int
    log: Annotated[list[str], operator.add]


def _graph() -> StateGraph[State]:
    graph = StateGraph(State)
    graph.add_node("a", lambda s: {"x": s.get("x", 0) + 1, "log": ["a"]})
    graph.add_node("b", lambda s: {"log": ["b"]})
    graph.add_edge(START, "a")
    graph.add_conditional_edges("a", lambda s: "b" if s["x"] < 2 else END, ["b", END])
    graph.add_edge("b", END)
    return graph


def test_shape_state_node_spec_is_a_dataclass_with_the_fields_graphops_copies() -> None:
    fields = {f.name for f in dataclasses.fields(compat.StateNodeSpec)}
    wanted = {"runnable", "input_schema", "retry_policy", "ends", "defer", "timeout"}
    assert wanted | {"is_error_handler", "error_handler_node", "metadata"} <= fields
    spec = _graph().nodes["a"]
    copied = compat.copy_spec(spec, timeout=None)
    assert copied is not spec and copied.runnable is spec.runnable


def test_shape_branch_spec_takes_path_ends_and_input_schema() -> None:
    assert list(inspect.signature(compat.BranchSpec).parameters) == [
        "path",
        "ends",
        "input_schema",
    ]
    spec = next(iter(_graph().branches["a"].values()))
    assert isinstance(spec, compat.BranchSpec)
    remade = compat.branch(spec.path, spec.ends, State)
    assert remade.ends == {"b": "b", END: END}


def test_shape_builder_node_defaults_and_schema_registration() -> None:
    graph = _graph()
    graph.set_node_defaults(error_handler=lambda s: {"log": ["handled"]})
    graph.compile()  # compile adds the default handler node to the builder
    assert compat.DEFAULT_ERROR_HANDLER_NODE in graph.nodes
    copy: StateGraph[State] = StateGraph(State)
    compat.copy_defaults(graph, copy)
    assert copy._node_defaults is not graph._node_defaults
    assert copy._node_defaults.error_handler is None  # the node itself is copied instead

    class Extra(TypedDict, total=False):
        extra: int

    compat.add_schema(copy, Extra)
    assert "extra" in copy.channels


def test_shape_plain_node_runs_sync_and_async_bodies_untraced() -> None:
    async def abody(state: State) -> State:
        return {"x": 2}

    node = compat.plain_node("n", lambda state: {"x": 1}, abody)
    assert node.invoke({}) == {"x": 1}
    assert getattr(node, "trace", None) is False


def test_shape_conditional_edge_runs_are_tagged_after_the_node_body() -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    seen: list[tuple[str, list[str]]] = []

    class Tags(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            seen.append((str(kwargs.get("name")), list(kwargs.get("tags") or [])))

    _graph().compile().invoke({"x": 0}, {"callbacks": [Tags()]})
    routes = [tags for name, tags in seen if compat.is_conditional_edge_run(tags)]
    bodies = [tags for name, tags in seen if name == "a"]
    assert routes, f"no conditional-edge run tagged seq:step:2+ among {seen}"
    assert bodies and not any(compat.is_conditional_edge_run(t) for t in bodies)


def test_shape_update_state_run_name_and_channel_names() -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    roots: list[str] = []

    class Roots(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            if kwargs.get("parent_run_id") is None:
                roots.append(str(kwargs.get("name")))

    app = (
        _graph()
        .compile(checkpointer=InMemorySaver(), name="notes")
        .with_config({"callbacks": [Roots()]})
    )
    config: Any = {"configurable": {"thread_id": "t"}}
    app.invoke({"x": 0}, config)
    app.update_state(config, {"x": 5}, as_node="a")  # runs a's conditional edge
    assert roots[0] == "notes" and not compat.is_update_state_run(roots[0])
    assert compat.is_update_state_run(roots[-1]), roots
    saved = app.checkpointer.get_tuple(config)  # type: ignore[union-attr]
    names = list(saved.checkpoint["channel_values"])
    assert "x" in names and all(compat.is_state_channel(n) for n in ("x", "log"))
    assert not compat.is_state_channel("branch:to:b") and not compat.is_state_channel("__start__")


def test_shape_an_interrupted_run_returns_its_interrupts_under_the_key() -> None:
    graph = StateGraph(State)

    def ask(state: State) -> State:
        return {"x": interrupt("how many?")}

    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    app = graph.compile(checkpointer=InMemorySaver())
    out = app.invoke({"x": 0}, {"configurable": {"thread_id": "i"}})
    assert compat.INTERRUPT_KEY in out


@pytest.mark.parametrize("name", ["GraphInterrupt"])
def test_shape_interrupt_errors(name: str) -> None:
    import langgraph.errors as errors

    error = getattr(errors, name)([])
    assert compat.is_interrupt(error) and compat.is_bubble_up(error)
    assert not compat.is_interrupt(ValueError()) and not compat.is_bubble_up(ValueError())


def test_shape_compiled_graphs_attach_a_branch_without_a_reader() -> None:
    params = inspect.signature(compat.attach_stateless_branch).parameters
    assert list(params) == ["compiled", "source", "name", "spec"]
    graph = StateGraph(State)
    graph.add_node("a", lambda s: {"log": ["a"]})
    graph.add_node("z", lambda s: {"log": ["z"]})
    graph.add_edge(START, "a")
    graph.add_edge("a", END)
    graph.add_edge("z", END)
    compiled = graph.compile()
    seen: list[Any] = []
    take = [False]

    def path(value: Any) -> list[str]:
        seen.append(value)
        return ["z"] if take[0] else []

    spec = compat.branch(compat.plain_node("p", path), {"z": "z"}, None)
    compat.attach_stateless_branch(compiled, "a", "extra", spec)
    assert compiled.invoke({"x": 0})["log"] == ["a"]  # [] leads nowhere
    take[0] = True
    assert compiled.invoke({"x": 1})["log"] == ["a", "z"]
    assert seen == [{"log": ["a"]}] * 2  # what the node returned: no state was read
    assert "a -.-> z;" in compiled.get_graph().draw_mermaid()  # and the drawing has the edge


def test_shape_plain_node_bodies_can_be_swapped_keeping_their_injected_arguments() -> None:
    def body(state: State) -> State:
        return {"log": ["body"]}

    async def abody(state: State, config: RunnableConfig) -> State:
        return {"log": ["abody"]}

    graph = StateGraph(State)
    graph.add_node("sync", body)
    graph.add_node("async", abody)
    func, afunc, takes_config = compat.node_body(graph.nodes["sync"].runnable)  # type: ignore[misc]
    assert func is body and afunc is not None and takes_config is False
    func, afunc, takes_config = compat.node_body(graph.nodes["async"].runnable)  # type: ignore[misc]
    assert func is None and afunc is abody and takes_config is True
    assert compat.node_body(_graph().compile()) is None  # a subgraph is no plain node
    seen: list[Any] = []

    def swapped(state: State, **kwargs: Any) -> State:
        seen.append(kwargs.get("config"))
        return body(state)

    node = compat.with_body(graph.nodes["sync"].runnable, swapped, None)
    assert node.invoke({}, {"tags": ["t"]}) == {"log": ["body"]}
    assert seen and seen[0]["tags"] == ["t"]  # the config is passed in, though body takes none
    assert graph.nodes["sync"].runnable.func is body  # the original is not changed


def test_shape_default_error_handlers_and_subgraphs_are_recognised() -> None:
    graph = _graph()
    assert not compat.has_default_error_handler(graph)
    graph.set_node_defaults(error_handler=lambda state: {"log": ["handled"]})
    assert compat.has_default_error_handler(graph)
    compiled = graph.compile()
    assert compat.has_default_error_handler(compiled.builder)
    assert compat.is_subgraph(compiled) and not compat.is_subgraph(graph.nodes["a"].runnable)
