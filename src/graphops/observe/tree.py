"""A run's spans as a tree, for people: the seed's "User Request (total 5.2 s)" view.

::

    invoke_agent agentic_rag                 5.20 s   1234 tok  $0.000000
    ├─ guard                                 0.1 ms
    ├─ generate_query_or_respond           512.0 ms    120 tok
    │  └─ chat SmolLM2-135M-Instruct.Q4_1  510.3 ms    120 tok
    …

Tokens and cost of a span include its descendants', so each line answers "what did
this part of the run cost".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan

from graphops.observe import semconv as sc

__all__ = ["SpanNode", "build_tree", "render_tree"]


@dataclass
class SpanNode:
    """A span with its children and the totals of its subtree."""

    span: ReadableSpan
    children: list[SpanNode] = field(default_factory=list)
    tokens: int = 0
    cost: float = 0.0

    @property
    def seconds(self) -> float:
        """Wall time of the span."""
        start, end = self.span.start_time or 0, self.span.end_time or 0
        return max(end - start, 0) / 1e9


def build_tree(spans: Iterable[ReadableSpan]) -> list[SpanNode]:
    """Roots of the span forest, children in start order, totals summed bottom-up."""
    nodes = {s.context.span_id: SpanNode(s) for s in spans if s.context is not None}
    roots: list[SpanNode] = []
    for node in sorted(nodes.values(), key=lambda n: n.span.start_time or 0):
        parent = node.span.parent
        if parent is not None and parent.span_id in nodes:
            nodes[parent.span_id].children.append(node)
        else:
            roots.append(node)

    def total(node: SpanNode) -> None:
        attrs = node.span.attributes or {}
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


def _duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def render_tree(roots: Sequence[SpanNode], width: int = 44) -> str:
    """The forest as text, one line per span."""
    lines: list[str] = []

    def emit(node: SpanNode, prefix: str, connector: str, child_prefix: str) -> None:
        status = node.span.status
        failed = status is not None and not status.is_ok
        label = f"{prefix}{connector}{node.span.name}" + (" [error]" if failed else "")
        line = f"{label:<{width}}{_duration(node.seconds):>10}"
        if node.tokens:
            line += f"{node.tokens:>8} tok"
        if node.cost:
            line += f"  ${node.cost:.6f}"
        lines.append(line.rstrip())
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            emit(child, prefix + child_prefix, "└─ " if last else "├─ ", "   " if last else "│  ")

    for root in roots:
        emit(root, "", "", "")
    return "\n".join(lines)
