"""A run's spans as a tree, for people: the seed's "User Request (total 5.2 s)" view.

::

    invoke_agent agentic_rag                 5.20 s   1234 tok  $0.000000
    ├─ guard                                 0.1 ms
    ├─ generate_query_or_respond           512.0 ms    120 tok
    │  └─ chat SmolLM2-135M-Instruct.Q4_1  510.3 ms    120 tok
    …

Tokens and cost of a span include its descendants', so each line answers "what did
this part of the run cost".

Durations are wall time, so children that ran concurrently (a node grading four
documents at once) add up to more than their node; and each concurrent LLM call's
time includes its wait for the model (a local model answers one call at a time).
The tree says so under such a node rather than let the sum mislead::

    ├─ grade_documents                              3.40 s    1468 tok
    │  │  · children ran concurrently: 9.23 s summed, LLM calls include waits for the model
    │  ├─ chat SmolLM2-135M-Instruct.Q4_1           2.07 s     379 tok
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from graphops.observe import semconv as sc

__all__ = ["SpanNode", "TreeSpan", "build_tree", "render_tree"]


@dataclass(frozen=True)
class TreeSpan:
    """What the tree needs of a span, live (``ReadableSpan``) or stored (``SpanRow``)."""

    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    error: bool

    @classmethod
    def of(cls, span: ReadableSpan) -> TreeSpan:
        """A live span."""
        assert span.context is not None
        return cls(
            span_id=f"{span.context.span_id:016x}",
            parent_id=f"{span.parent.span_id:016x}" if span.parent else None,
            name=span.name,
            start_ns=span.start_time or 0,
            end_ns=span.end_time or 0,
            attributes=dict(span.attributes or {}),
            error=span.status is not None and not span.status.is_ok,
        )


@dataclass
class SpanNode:
    """A span with its children and the totals of its subtree."""

    span: TreeSpan
    children: list[SpanNode] = field(default_factory=list)
    tokens: int = 0
    cost: float = 0.0

    @property
    def seconds(self) -> float:
        """Wall time of the span."""
        return max(self.span.end_ns - self.span.start_ns, 0) / 1e9

    @property
    def overlapping(self) -> bool:
        """Whether its children ran concurrently: their wall times sum to more than its own."""
        return len(self.children) > 1 and sum(c.seconds for c in self.children) > self.seconds


def build_tree(spans: Iterable[ReadableSpan | TreeSpan]) -> list[SpanNode]:
    """Roots of the span forest, children in start order, totals summed bottom-up."""
    items = [s if isinstance(s, TreeSpan) else TreeSpan.of(s) for s in spans]
    nodes = {s.span_id: SpanNode(s) for s in items}
    roots: list[SpanNode] = []
    for node in sorted(nodes.values(), key=lambda n: n.span.start_ns):
        parent = node.span.parent_id
        if parent is not None and parent in nodes:
            nodes[parent].children.append(node)
        else:
            roots.append(node)

    def total(node: SpanNode) -> None:
        attrs = node.span.attributes
        values = [attrs.get(k) for k in (sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS)]
        node.tokens = sum(int(v) for v in values if isinstance(v, int))
        cost = attrs.get(sc.COST_USD)
        node.cost = float(cost) if isinstance(cost, int | float) else 0.0
        for child in node.children:
            total(child)
            node.tokens += child.tokens
            node.cost += child.cost

    for root in roots:
        total(root)
    return roots


_OUTCOMES = (
    (sc.GUARD_OUTCOME, "guard"),
    (sc.CACHE_HIT, "cache hit"),
    (sc.BUDGET_LEFT, "budget left s"),
    (sc.BREAKER_STATE, "breaker"),
    (sc.DEGRADED, "degraded"),
    (sc.NODE_PROMPTS, "prompt"),
)


def _outcomes(span: TreeSpan) -> str:
    """Step outcomes and prompt versions of a span: ``[guard: allowed, cache hit: False]``."""
    found = [
        f"{label}: {_shown(span.attributes[key])}"
        for key, label in _OUTCOMES
        if key in span.attributes
    ]
    return f" [{', '.join(found)}]" if found else ""


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def _overlap_note(node: SpanNode) -> str:
    total = sum(c.seconds for c in node.children)
    note = f"children ran concurrently: {_duration(total)} summed"
    if any(c.span.attributes.get(sc.OPERATION) == sc.OP_CHAT for c in node.children):
        note += ", LLM calls include waits for the model"
    return note


def render_tree(roots: Sequence[SpanNode], width: int = 44) -> str:
    """The forest as text, one line per span."""
    lines: list[str] = []

    def emit(node: SpanNode, prefix: str, connector: str, child_prefix: str) -> None:
        label = f"{prefix}{connector}{node.span.name}" + (" [error]" if node.span.error else "")
        outcomes = _outcomes(node.span)
        line = f"{label:<{width}}{_duration(node.seconds):>10}"
        if node.tokens:
            line += f"{node.tokens:>8} tok"
        if node.cost:
            line += f"  ${node.cost:.6f}"
        line += outcomes
        lines.append(line.rstrip())
        if node.overlapping:
            lines.append(f"{prefix}{child_prefix}│  · {_overlap_note(node)}")
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            emit(child, prefix + child_prefix, "└─ " if last else "├─ ", "   " if last else "│  ")

    for root in roots:
        emit(root, "", "", "")
    return "\n".join(lines)
