"""The graphs the benchmarks share: no-op nodes in a line, LangGraph's cheapest run."""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    x: int
    question: str  # read by the guard only (benchmarks/limiter.py's refusal path)


def noop(state: State) -> State:
    return {"x": state.get("x", 0) + 1}


def line_of(count: int) -> StateGraph[State]:
    """``count`` no-op nodes ``n0`` … in a line from START to END."""
    builder: StateGraph[State] = StateGraph(State)
    previous = START
    for i in range(count):
        builder.add_node(f"n{i}", noop)
        builder.add_edge(previous, f"n{i}")
        previous = f"n{i}"
    builder.add_edge(previous, END)
    return builder


def five_nodes() -> StateGraph[State]:
    return line_of(5)
