"""The names graphops gives its steps and the two nodes that hold them (one list, no imports).

The builder inserts at most two nodes: the head, holding ``guard`` then
``cache_lookup``, and the tail, holding ``cache_store`` then ``settle``. Each step
is reported as its own span (``graphops.node.kind=step``), so a span tree reads
the same whichever node holds the step.
"""

from __future__ import annotations

__all__ = ["HEAD_NODE", "HEAD_STEPS", "STEP_NAMES", "STEP_NODE_KEY", "TAIL_NODE", "TAIL_STEPS"]

HEAD_NODE = "graphops_head"
TAIL_NODE = "graphops_tail"
HEAD_STEPS = ("guard", "cache_lookup")
TAIL_STEPS = ("cache_store", "settle")
STEP_NAMES = (*HEAD_STEPS, *TAIL_STEPS)
STEP_NODE_KEY = "graphops_steps"
"""Node metadata naming the steps a head or tail node holds (shown by ``draw_mermaid``)."""
