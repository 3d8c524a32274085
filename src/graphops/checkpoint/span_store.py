"""The SQL span store: every span of every run, in graphops' database.

Spans reach it through :class:`graphops.checkpoint.span_export.SqlSpanExporter`
(off the request path). Inserts ignore a span already stored, so an exporter
retry never duplicates a row. Reads serve ``graphops runs`` and replay.

A run is a trace. A finished run is found by its root span (the one span with a
run id, written when the run ends); a run killed mid-way (or still going) has
node spans but no root, and is listed as ``unfinished`` from those spans.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, case, delete, func, or_, select
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
    """One stored run: its root span's facts (an unfinished run's: what its spans say)."""

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
    replay_of: str | None = None  # a re-run: the trace id of the run it replays
    variants: tuple[str, ...] = ()  # flag=variant of every flag the run was given


@dataclass(frozen=True)
class _RunFilter:
    """What :meth:`SqlSpanStore.runs` asks of finished and unfinished runs alike."""

    user: str | None
    since_ns: int | None
    before_ns: int | None
    thread: str | None
    limit: int | None

    def conditions(
        self, started: ColumnElement[int], who: ColumnElement[str]
    ) -> list[ColumnElement[bool]]:
        """The start-time and user filters, on a run's start time ``started`` and user ``who``.

        Those are a root span's columns for a finished run and aggregates over its spans
        for an unfinished one; the thread filter differs in shape, so each query adds it.
        """
        conditions: list[ColumnElement[bool]] = []
        if self.since_ns is not None:
            conditions.append(started >= self.since_ns)
        if self.before_ns is not None:
            conditions.append(started < self.before_ns)
        if self.user is not None:
            conditions.append(who == self.user)
        return conditions


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
        limit: int | None = 50,
        before_ns: int | None = None,
        thread: str | None = None,
        unfinished: bool = False,
    ) -> list[RunRow]:
        """Stored runs, newest first: finished ones, and with ``unfinished`` the others too.

        ``status`` is ``ok``, ``error`` or ``unfinished`` (only runs whose root never
        ended); ``since_ns``/``before_ns`` bound the start time, ``None`` as ``limit``
        means every run. Every filter is SQL, so ``limit`` counts matching runs.
        """
        out: list[RunRow] = []
        where = _RunFilter(user, since_ns, before_ns, thread, limit)
        if status != "unfinished":
            out += self._finished(where, status)
        if unfinished or status == "unfinished":
            out += self._unfinished(where)
        out.sort(key=lambda run: run.started_ns, reverse=True)
        return out if limit is None else out[:limit]

    def _finished(self, where: _RunFilter, status: str | None) -> list[RunRow]:
        """Finished runs: root spans, filtered on the root's own start time, thread and user."""
        c = spans_table.c
        conditions = [
            c.parent_span_id.is_(None),
            c.run_id.is_not(None),
            *where.conditions(c.start_ns, _attribute(sc.USER)),
        ]
        if status is not None:
            conditions.append(c.status == status)
        if where.thread is not None:
            conditions.append(c.thread_id == where.thread)
        query = select(spans_table).where(and_(*conditions)).order_by(spans_table.c.start_ns.desc())
        with self.engine.connect() as connection:
            rows = connection.execute(query.limit(where.limit)).mappings().all()
        return [_run_row(row) for row in rows]

    def _unfinished(self, where: _RunFilter) -> list[RunRow]:
        """Traces with no root span (and none that is not a run, like ``update_state``)."""
        c = spans_table.c
        started = func.min(c.start_ns)
        who = func.max(_attribute(sc.USER))
        conditions = [
            func.sum(case((or_(c.parent_span_id.is_(None), c.run_id.is_not(None)), 1), else_=0))
            == 0,
            *where.conditions(started, who),
        ]
        query = select(
            c.trace_id,
            func.max(c.thread_id).label("thread_id"),
            started.label("started"),
            func.max(c.end_ns).label("ended"),
            who.label("user"),
            func.max(_attribute(sc.AGENT_NAME)).label("graph"),
        )
        if where.thread is not None:  # before grouping: all spans of the traces with one on it
            query = query.where(
                c.trace_id.in_(select(c.trace_id).where(c.thread_id == where.thread).distinct())
            )
        query = query.group_by(c.trace_id).having(and_(*conditions)).order_by(started.desc())
        with self.engine.connect() as connection:
            rows = connection.execute(query.limit(where.limit)).all()
        return [
            RunRow(
                trace_id=row.trace_id,
                thread_id=row.thread_id,
                run_id=None,
                graph=row.graph or "?",
                user=row.user,
                started_ns=row.started,
                seconds=(row.ended - row.started) / 1e9,
                status="unfinished",
                tokens=0,
                cost_usd=0.0,
            )
            for row in rows
        ]

    def count_spans(self, trace_ids: Sequence[str]) -> int:
        """How many spans the runs ``trace_ids`` have."""
        total = 0
        with self.engine.connect() as connection:
            for chunk in _chunks(trace_ids):
                query = select(func.count()).where(spans_table.c.trace_id.in_(chunk))
                total += int(connection.execute(query).scalar_one())
        return total

    def delete_traces(self, trace_ids: Sequence[str]) -> int:
        """Delete every span of the runs ``trace_ids`` in one transaction; returns spans deleted."""
        deleted = 0
        with self.engine.begin() as connection:
            for chunk in _chunks(trace_ids):
                result = connection.execute(
                    delete(spans_table).where(spans_table.c.trace_id.in_(chunk))
                )
                deleted += int(result.rowcount or 0)
        return deleted

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


def _attribute(name: str) -> ColumnElement[str]:
    """One span attribute, read by the database (JSON on SQLite and Postgres alike)."""
    value: ColumnElement[str] = spans_table.c.attributes[name].as_string()
    return value


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """``items`` in slices small enough for one ``IN (...)``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        replay_of=attrs.get(sc.REPLAY_OF),
        variants=tuple(str(v) for v in attrs.get(sc.VARIANT) or ()),
    )


def _json(value: Any) -> dict[str, Any]:
    decoded = json.loads(value) if isinstance(value, str) else value
    return decoded if isinstance(decoded, dict) else {}


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["attributes"] = _json(row["attributes"])
    events = row["events"]
    row["events"] = json.loads(events) if isinstance(events, str) else list(events or [])
    return row
