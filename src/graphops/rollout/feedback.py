"""Feedback on runs: a score from 0 (bad) to 1 (good), by run, that rollouts compare.

``graphops feedback RUN SCORE`` and :meth:`Feedback.record` write one row of
``graphops_feedback`` per score: whoever judges a run (a user's thumbs, an
online judge, a reviewer) gives it a score, and a rollout compares the mean
score of its canary's runs with its control's (a quality regression rolls it
back like an error spike). ``RUN`` is the run's trace id, 32 hex digits, or a
thread id, which stands for that thread's latest run, as ``graphops runs``
lists them.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager

from sqlalchemy import Engine, insert, select

from graphops.checkpoint.span_store import SqlSpanStore
from graphops.db.engine import engine_for
from graphops.db.failures import failing
from graphops.db.schema import feedback as table
from graphops.errors import InvalidInputError

__all__ = ["Feedback"]

_TRACE = re.compile(r"^[0-9a-f]{32}$")


class Feedback:
    """Scores of runs in graphops' database (SQLite by default, Postgres by URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = engine_for(url)
        self.spans = SqlSpanStore(url)

    def record(self, run: str, score: float, *, actor: str, comment: str = "") -> str:
        """Score ``run`` (a trace id, or a thread id: its latest run); returns its trace id."""
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise InvalidInputError(f"a score is a number from 0 to 1, not {score!r}")
        if not 0 <= score <= 1:
            raise InvalidInputError(f"a score is from 0 (bad) to 1 (good), not {score}")
        if not isinstance(run, str) or not run.strip() or "\x00" in run:
            raise InvalidInputError(f"{run!r} names no run: give a trace id or a thread id")
        if "\x00" in actor or "\x00" in comment:
            raise InvalidInputError("an actor or comment cannot hold a NUL character")
        trace = self._trace_of(run.strip())
        with self._failing(), self.engine.begin() as connection:
            connection.execute(
                insert(table).values(
                    trace_id=trace, score=float(score), actor=actor, comment=comment,
                    at_ns=time.time_ns(),
                )
            )  # fmt: skip
        return trace

    def scores(self, traces: Sequence[str]) -> dict[str, list[float]]:
        """Every score given to each of ``traces``, oldest first."""
        out: dict[str, list[float]] = {}
        with self._failing(), self.engine.connect() as connection:
            for start in range(0, len(traces), 500):
                chunk = list(traces[start : start + 500])
                rows = connection.execute(
                    select(table.c.trace_id, table.c.score)
                    .where(table.c.trace_id.in_(chunk))
                    .order_by(table.c.id)
                )
                for row in rows:
                    out.setdefault(row.trace_id, []).append(float(row.score))
        return out

    def _trace_of(self, run: str) -> str:
        with self._failing():
            if _TRACE.match(run.lower()) and self.spans.run(run.lower()) is not None:
                return run.lower()
            latest = self.spans.runs(thread=run, limit=1)
        if not latest:
            raise InvalidInputError(
                f"no stored run {run!r}: give a trace id or a thread id `graphops runs` lists"
            )
        return latest[0].trace_id

    def _failing(self) -> AbstractContextManager[None]:
        return failing(self.url, "the feedback table")
