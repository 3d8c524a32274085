"""The span-storing checkpointer: LangGraph's savers with graphops' span store beside them.

:func:`open_checkpointer` opens, for graphops' database URL, LangGraph's own
``AsyncSqliteSaver`` (the same SQLite file as the span store) or
``AsyncPostgresSaver`` (the same Postgres database), extended with
:attr:`span_store`, :meth:`span_processor` (what feeds the store) and a
``adelete_thread`` that deletes a thread's spans together with its checkpoints.
It checks graphops' schema first, as every command does
(:func:`graphops.db.prepare_url`): a new SQLite file gets graphops' tables, a
Postgres database without them is refused with ``graphops db upgrade``, so no
span is ever written into a table that is not there.

Crash safety: the span processor wakes its export thread whenever a node (or run)
span ends, so the spans of every finished node are written within milliseconds,
off the request path. A run killed with ``kill -9`` keeps the spans of the nodes
that finished and the checkpoints LangGraph wrote after them; ``ainvoke(None,
config)`` on the same thread (``graphops ask --thread ID --resume``) continues
from the last checkpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from graphops.checkpoint.span_export import SqlSpanExporter
from graphops.checkpoint.span_store import SqlSpanStore
from graphops.db.engine import BUSY_TIMEOUT_S, SQLITE_PRAGMAS, sqlalchemy_url
from graphops.db.schema import spans as spans_table
from graphops.db.startup import prepare_url
from graphops.observe import semconv as sc
from graphops.observe.tracing import CountingBatchSpanProcessor

__all__ = [
    "FlushOnNodeEnd",
    "SpanStoringPostgresSaver",
    "SpanStoringSqliteSaver",
    "open_checkpointer",
]


class FlushOnNodeEnd(CountingBatchSpanProcessor):
    """Batch export that starts as soon as a node or run span ends (without waiting for it)."""

    def __init__(self, exporter: SqlSpanExporter, on_drop: Callable[[], None]) -> None:
        super().__init__(exporter, on_drop, schedule_delay_millis=500)
        processor = getattr(self, "_batch_processor", None)
        self._wake = getattr(processor, "_worker_awaken", None)

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span; wake the exporter when a node or a run has finished."""
        super().on_end(span)
        attributes = span.attributes or {}
        if self._wake is not None and (sc.NODE in attributes or sc.RUN_ID in attributes):
            self._wake.set()


class _SpanStoring:
    """What both savers add to LangGraph's: the span store in the same database."""

    span_store: SqlSpanStore

    def span_processor(self, on_drop: Callable[[], None] = lambda: None) -> FlushOnNodeEnd:
        """The processor to give ``Telemetry(exporters=[...])`` so runs land in the store."""
        return FlushOnNodeEnd(SqlSpanExporter(self.span_store, on_lost=on_drop), on_drop)

    def delete_spans(self, thread_id: str) -> int:
        """Delete every stored span of ``thread_id``'s runs."""
        traces = self.span_store.traces(thread_id)
        if not traces:
            return 0
        with self.span_store.engine.begin() as connection:
            result = connection.execute(
                delete(spans_table).where(spans_table.c.trace_id.in_(traces))
            )
        return int(result.rowcount or 0)

    async def adelete_checkpoints(self, thread_id: str) -> None:
        """LangGraph's own ``adelete_thread``: the checkpoints only."""
        await super().adelete_thread(thread_id)  # type: ignore[misc]

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints and its spans together."""
        await self.adelete_checkpoints(thread_id)
        self.delete_spans(thread_id)


class SpanStoringSqliteSaver(_SpanStoring, AsyncSqliteSaver):
    """``AsyncSqliteSaver`` in graphops' SQLite file, with the span store beside it."""


class SpanStoringPostgresSaver(_SpanStoring, AsyncPostgresSaver):
    """``AsyncPostgresSaver`` in graphops' Postgres database, with the span store beside it."""


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[Any]:
    """The span-storing saver for graphops' database ``url``.

    graphops' tables are checked first (:func:`graphops.db.prepare_url`): created
    in a SQLite database that has none; on Postgres, or for an out-of-date or
    newer schema, a :class:`~graphops.errors.ConfigurationError` says what to run.
    LangGraph's checkpoint tables are then set up by LangGraph's own ``setup()``.
    A SQLite connection uses WAL mode and the bounded busy timeout, like graphops'
    engines.
    """
    parsed = make_url(sqlalchemy_url(url))
    await anyio.to_thread.run_sync(prepare_url, url)
    store = SqlSpanStore(url)
    if parsed.get_backend_name() == "sqlite":
        import aiosqlite

        path = parsed.database or ":memory:"
        async with aiosqlite.connect(path, timeout=BUSY_TIMEOUT_S) as connection:
            for pragma in SQLITE_PRAGMAS:
                await connection.execute(pragma)
            saver = SpanStoringSqliteSaver(connection)
            saver.span_store = store
            await saver.setup()
            yield saver
        return
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    plain_url = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    async with await AsyncConnection.connect(
        plain_url, autocommit=True, prepare_threshold=0, row_factory=dict_row
    ) as connection:
        postgres = SpanStoringPostgresSaver(connection)
        postgres.span_store = store
        await postgres.setup()
        yield postgres
