"""A rollout's two arms, read from the span store: the runs each variant got during this step.

Every span of a run given flags carries ``graphops.variant`` (``answer=v3``), so
the control's and the canary's runs are the root spans since the current step
started whose variants name the flag with that variant; a run failed when its root span
ended in error, and answered degraded when any span of it carries
``graphops.degraded``; its feedback scores (``graphops_feedback``, by trace
id) are its quality. Reading the span store, not the metrics, makes every
process's runs count, whichever process served them, and lets any process run
the controller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select

from graphops.checkpoint.span_store import SqlSpanStore
from graphops.db.schema import feedback as feedback_table
from graphops.db.schema import spans as spans_table
from graphops.observe import semconv as sc
from graphops.rollout.checks import Arm
from graphops.rollout.model import Rollout

__all__ = ["Observed", "observe"]


@dataclass(frozen=True, slots=True)
class Observed:
    """The arms of one look: each variant's runs since the step started."""

    control: Arm
    canary: Arm


def _attributes(value: Any) -> dict[str, Any]:
    decoded = json.loads(value) if isinstance(value, str) else value
    return decoded if isinstance(decoded, dict) else {}


def observe(store: SqlSpanStore, rollout: Rollout) -> Observed:
    """The control's and the canary's finished runs since ``rollout``'s step started."""
    c = spans_table.c
    roots = select(c.trace_id, c.start_ns, c.end_ns, c.status, c.attributes).where(
        and_(
            c.parent_span_id.is_(None),
            c.run_id.is_not(None),
            c.start_ns >= rollout.step_started_ns,
            c.status.in_(("ok", "error")),
        )
    )
    degraded_q = (
        select(c.trace_id)
        .where(
            and_(
                c.start_ns >= rollout.step_started_ns,
                c.attributes[sc.DEGRADED].as_string().is_not(None),
            )
        )
        .distinct()
    )
    with store.engine.connect() as connection:
        rows = connection.execute(roots).all()
        degraded = {row.trace_id for row in connection.execute(degraded_q)}
    labels = {
        f"{rollout.flag}={rollout.control}": "control",
        f"{rollout.flag}={rollout.canary}": "canary",
    }
    counts: dict[str, list[Any]] = {"control": [0, 0, 0, []], "canary": [0, 0, 0, []]}
    traces: dict[str, str] = {}  # trace id -> its arm
    for row in rows:
        attrs = _attributes(row.attributes)
        if rollout.graph is not None and attrs.get(sc.AGENT_NAME) != rollout.graph:
            continue
        arm = next((labels[v] for v in attrs.get(sc.VARIANT) or () if v in labels), None)
        if arm is None:
            continue
        count = counts[arm]
        count[0] += 1
        count[1] += row.status == "error"
        count[2] += row.trace_id in degraded
        count[3].append(max(row.end_ns - row.start_ns, 0) / 1e9)
        traces[row.trace_id] = arm
    scores: dict[str, list[float]] = {"control": [], "canary": []}
    with store.engine.connect() as connection:
        ids = list(traces)
        for start in range(0, len(ids), 500):
            given = connection.execute(
                select(feedback_table.c.trace_id, feedback_table.c.score).where(
                    feedback_table.c.trace_id.in_(ids[start : start + 500])
                )
            )
            for found in given:
                scores[traces[found.trace_id]].append(float(found.score))
    control, canary = (
        Arm(runs, errors, degraded_runs, tuple(seconds), tuple(scores[arm]))
        for arm, (runs, errors, degraded_runs, seconds) in (
            ("control", counts["control"]),
            ("canary", counts["canary"]),
        )
    )
    return Observed(control, canary)
