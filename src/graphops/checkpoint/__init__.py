"""Runs kept in SQL: the span store now; the span-storing checkpointer and replay next."""

from __future__ import annotations

from graphops.checkpoint.span_store import RunRow, SpanRow, SqlSpanExporter, SqlSpanStore

__all__ = ["RunRow", "SpanRow", "SqlSpanExporter", "SqlSpanStore"]
