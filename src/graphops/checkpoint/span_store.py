"""The SQL span store: every span of every run, in graphops' database.

Spans reach it through :class:`graphops.checkpoint.span_export.SqlSpanExporter`
(off the request path). Inserts ignore a span already stored, so an exporter
retry never duplicates a row. Reads serve ``graphops runs`` and replay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from graphops.db.engine import engine_for
from graphops.db.schema import spans as spans_table
from graphops.observe import semconv as sc

__all__ = ["RunRow", "SpanRow", "SqlSpanStore"]


@dataclass(frozen=True)
class SpanRow:
    """One stored span."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    thread_id: str | None
    run_id: str | None
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def seconds(self) -> float:
        """Wall time of the span."""
        return max(self.end_ns - self.start_ns, 0) / 1e9


@dataclass(frozen=True)
class RunRow:
    """One stored run: its root span's facts."""

    trace_id: str
    thread_id: str | None
    run_id: str | None
    graph: str
    user: str | None
    started_ns: int
    seconds: float
    status: str
    tokens: int
    cost_usd: float
    prompts: tuple[str, ...] = ()  # name@version of every prompt the run used


class SqlSpanStore:
    """Spans in SQL, by run (trace) and by thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = engine_for(url)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` in one transaction, skipping spans already stored."""
        if not rows:
            return
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(spans_table).on_conflict_do_nothing(
            index_elements=["trace_id", "span_id"]
        )
        with self.engine.begin() as connection:
            connection.execute(statement, list(rows))

    def spans(self, trace_id: str) -> list[SpanRow]:
        """Every span of one run, in start order."""
        query = select(spans_table).where(spans_table.c.trace_id == trace_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(spans_table.c.start_ns)).mappings().all()
        return [SpanRow(**_decoded(dict(row))) for row in rows]

    def traces(self, thread_id: str) -> list[str]:
        """The runs (trace ids) of a thread, oldest first."""
        query = (
            select(spans_table.c.trace_id, func.min(spans_table.c.start_ns).label("first"))
            .where(spans_table.c.thread_id == thread_id)
            .group_by(spans_table.c.trace_id)
            .order_by("first")
        )
        with self.engine.connect() as connection:
            return [row.trace_id for row in connection.execute(query)]

    def runs(
        self,
        *,
        user: str | None = None,
        since_ns: int | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        """Stored runs, newest first (their root spans)."""
        conditions: list[ColumnElement[bool]] = [
            spans_table.c.parent_span_id.is_(None),
            spans_table.c.run_id.is_not(None),
        ]
        if since_ns is not None:
            conditions.append(spans_table.c.start_ns >= since_ns)
        if status is not None:
            conditions.append(spans_table.c.status == status)
        query = select(spans_table).where(and_(*conditions)).order_by(spans_table.c.start_ns.desc())
        out: list[RunRow] = []
        with self.engine.connect() as connection:
            for row in connection.execute(query).mappings():
                run = _run_row(row)
                if user is not None and run.user != user:
                    continue
                out.append(run)
                if len(out) >= limit:
                    break
        return out

    def run(self, trace_id: str) -> RunRow | None:
        """The finished run with this trace id (None while unfinished or unknown)."""
        query = select(spans_table).where(
            and_(spans_table.c.trace_id == trace_id, spans_table.c.parent_span_id.is_(None))
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _run_row(row) if row is not None and row["run_id"] is not None else None

    def prune(self, before_ns: int) -> int:
        """Delete every span of runs that started before ``before_ns``; returns spans deleted."""
        old = select(spans_table.c.trace_id).where(
            and_(spans_table.c.parent_span_id.is_(None), spans_table.c.start_ns < before_ns)
        )
        with self.engine.begin() as connection:
            result = connection.execute(delete(spans_table).where(spans_table.c.trace_id.in_(old)))
        return int(result.rowcount or 0)


def _run_row(row: Any) -> RunRow:
    attrs = _json(row["attributes"])
    return RunRow(
        trace_id=row["trace_id"],
        thread_id=row["thread_id"],
        run_id=row["run_id"],
        graph=str(attrs.get(sc.AGENT_NAME, row["name"])),
        user=attrs.get(sc.USER),
        started_ns=row["start_ns"],
        seconds=(row["end_ns"] - row["start_ns"]) / 1e9,
        status=row["status"],
        tokens=int(attrs.get(sc.RUN_TOKENS, 0)),
        cost_usd=float(attrs.get(sc.RUN_COST_USD, 0.0)),
        prompts=tuple(str(p) for p in attrs.get(sc.RUN_PROMPTS) or ()),
    )


def _json(value: Any) -> dict[str, Any]:
    decoded = json.loads(value) if isinstance(value, str) else value
    return decoded if isinstance(decoded, dict) else {}


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["attributes"] = _json(row["attributes"])
    events = row["events"]
    row["events"] = json.loads(events) if isinstance(events, str) else list(events or [])
    return row
