"""The names graphops gives its steps and the nodes it inserts (one list, no imports).

The head (``graphops_head``) holds ``guard`` then ``cache_lookup``; ``cache_store``
then ``settle`` run as the run's scope closes, after the last node, in no node;
the tail (``graphops_tail``) holds no step: it writes the run's record into the
output of a run that did not start at the head (a resume, a fork, a
``Command(resume=…)``). Each step is reported as its own span
(``graphops.node.kind=step``) under the run.
"""

from __future__ import annotations

__all__ = ["CLOSE_STEPS", "HEAD_NODE", "HEAD_STEPS", "STEP_NAMES", "STEP_NODE_KEY", "TAIL_NODE"]

HEAD_NODE = "graphops_head"
TAIL_NODE = "graphops_tail"
HEAD_STEPS = ("guard", "cache_lookup")
CLOSE_STEPS = ("cache_store", "settle")
STEP_NAMES = (*HEAD_STEPS, *CLOSE_STEPS)
STEP_NODE_KEY = "graphops_steps"
"""Node metadata naming the steps the head holds (shown by ``draw_mermaid``)."""
