"""The tables graphops owns, as SQLAlchemy Core metadata (migrations create them).

``graphops_spans`` keeps every span of every run next to LangGraph's checkpoints:
one row per span, ids as hex strings (as OTLP and Jaeger show them), times in
nanoseconds since the epoch, attributes and events as JSON.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, MetaData, String, Table, Text

__all__ = ["metadata", "spans"]

metadata = MetaData()

spans = Table(
    "graphops_spans",
    metadata,
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("parent_span_id", String(16), nullable=True),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("thread_id", Text, nullable=True),
    Column("run_id", Text, nullable=True),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("events", JSON, nullable=False),
    Index("ix_graphops_spans_thread", "thread_id", "start_ns"),
    Index("ix_graphops_spans_start", "start_ns"),
)
