"""The span tree says when a node's children ran concurrently (their times overlap)."""

from __future__ import annotations

from typing import Any

from graphops.observe import semconv as sc
from graphops.observe.tree import TreeSpan, build_tree, render_tree

MS = 1_000_000


def span(
    span_id: str, parent: str | None, name: str, start: int, end: int, **attrs: Any
) -> TreeSpan:
    return TreeSpan(span_id, parent, name, start * MS, end * MS, attrs, False)


def chat(span_id: str, start: int, end: int) -> TreeSpan:
    return span(span_id, "grade", "chat local", start, end, **{sc.OPERATION: sc.OP_CHAT})


def test_concurrent_llm_calls_are_marked_on_their_node() -> None:
    spans = [
        span("root", None, "invoke_agent rag", 0, 1000),
        span("grade", "root", "grade_documents", 0, 400),
        chat("a", 0, 300),
        chat("b", 10, 390),
        span("answer", "root", "generate_answer", 400, 1000),
        span("c", "answer", "chat local", 400, 700),
        span("d", "answer", "chat local", 700, 990),
    ]
    lines = render_tree(build_tree(spans)).splitlines()
    assert lines[1].startswith("├─ grade_documents")
    assert lines[2] == (
        "│  │  · children ran concurrently: 680.0 ms summed, LLM calls include waits for the model"
    )
    assert lines[3].startswith("│  ├─ chat local")
    assert lines[5].startswith("└─ generate_answer")  # sequential calls: no note
    assert [line for line in lines if "·" in line] == [lines[2]]


def test_overlap_without_llm_calls_and_at_the_root() -> None:
    spans = [
        span("root", None, "invoke_agent g", 0, 100),
        span("x", "root", "fan_a", 0, 90),
        span("y", "root", "fan_b", 5, 95),
    ]
    lines = render_tree(build_tree(spans)).splitlines()
    assert lines[1] == "│  · children ran concurrently: 180.0 ms summed"
    assert lines[2].startswith("├─ fan_a")
