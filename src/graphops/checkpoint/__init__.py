"""Runs kept in SQL: the span store and its exporter, the span-storing checkpointer, replay."""

from __future__ import annotations

from graphops.checkpoint.span_export import SqlSpanExporter
from graphops.checkpoint.span_store import RunRow, SpanRow, SqlSpanStore

__all__ = ["RunRow", "SpanRow", "SqlSpanExporter", "SqlSpanStore"]
