"""The tables graphops owns, as SQLAlchemy Core metadata (migrations create them).

``graphops_spans`` keeps every span of every run next to LangGraph's checkpoints:
one row per span, ids as hex strings (as OTLP and Jaeger show them), times in
nanoseconds since the epoch, attributes and events as JSON.

The prompt registry is three tables: immutable ``graphops_prompt_versions``
(numbered per name, a version's text never changes), ``graphops_prompt_labels``
(which version ``production`` or any other label points at) and the append-only
``graphops_prompt_audit`` that every publish, label move and rollback writes to.

The answer cache is three tables too (see :mod:`graphops.cache.store_sql`):
``graphops_cache_entries`` (one row per entry under its key, its values and
documents as JSON text), ``graphops_cache_docs`` (the reverse index, document id
→ key) and ``graphops_cache_feedback`` (the observations, oldest first).

Feature flags are three tables (see :mod:`graphops.flags.store_sql`):
``graphops_flags`` (one row per flag, its ``version`` the optimistic-concurrency
counter every write checks and bumps), ``graphops_flag_variants`` (its variants
in their order, which lays out the weights' shares, each value as JSON text) and
``graphops_flag_rules`` (its targeting rules in the order they are tried). A
flag's history is not a table of its own: it goes to ``graphops_prompt_audit``,
whose ``kind`` (``prompt`` or ``flag``) says which registry a row belongs to, so
one log answers "who changed what, when" for prompts and flags alike.

Canary rollouts are ``graphops_rollouts`` (one row per flag, see
:mod:`graphops.rollout.store`), and ``graphops_feedback`` holds the scores given
to runs, by trace id (:mod:`graphops.rollout.feedback`), a rollout's quality.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "cache_docs",
    "cache_entries",
    "cache_feedback",
    "feedback",
    "flag_rules",
    "flag_variants",
    "flags",
    "metadata",
    "prompt_audit",
    "prompt_labels",
    "prompt_versions",
    "rollouts",
    "spans",
]

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

prompt_versions = Table(
    "graphops_prompt_versions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("text", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("author", Text, nullable=False),
    Column("message", Text, nullable=False),
    UniqueConstraint("name", "content_hash", name="uq_graphops_prompt_versions_content"),
)

prompt_labels = Table(
    "graphops_prompt_labels",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("label", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["name", "version"],
        ["graphops_prompt_versions.name", "graphops_prompt_versions.version"],
        name="fk_graphops_prompt_labels_version",
    ),
)

prompt_audit = Table(
    "graphops_prompt_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ns", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    Column("label", String(32), nullable=True),
    Column("version", Integer, nullable=True),
    Column("previous", Integer, nullable=True),
    Column("detail", Text, nullable=False),
    # which registry wrote the row: 'prompt' (publish, label, rollback) or 'flag' (0004)
    Column("kind", String(16), nullable=False, server_default="prompt"),
    Index("ix_graphops_prompt_audit_name", "name", "id"),
    Index("ix_graphops_prompt_audit_kind", "kind", "id"),  # one kind's newest rows first
)

cache_entries = Table(
    "graphops_cache_entries",
    metadata,
    Column("key", Text, primary_key=True),
    Column("partition", Text, nullable=False),
    Column("tenant", Text, nullable=True),
    Column("question", Text, nullable=False),
    Column("values_json", Text, nullable=False),
    Column("docs_json", Text, nullable=False),
    Column("corpus", Text, nullable=True),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=True),
    Column("tokens", Integer, nullable=False),
    Column("stored_ns", BigInteger, nullable=False),  # insertion order, for max_entries
    Index("ix_graphops_cache_entries_stored", "stored_ns"),
)

cache_docs = Table(
    "graphops_cache_docs",
    metadata,
    Column("doc", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Index("ix_graphops_cache_docs_key", "key"),
)

cache_feedback = Table(
    "graphops_cache_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("similarity", Float, nullable=False),
    Column("correct", Boolean, nullable=False),
    Index("ix_graphops_cache_feedback_key", "key", "id"),
)

flags = Table(
    "graphops_flags",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("default_variant", String(32), nullable=False),
    Column("sticky_by", Text, nullable=False),  # a JSON list of attribute names
    Column("killed", Boolean, nullable=False),
    Column("description", Text, nullable=False),
    Column("version", Integer, nullable=False),  # bumped by every write, checked by `expected`
    Column("updated_ns", BigInteger, nullable=False),
    Column("updated_by", Text, nullable=False),
)

flag_variants = Table(
    "graphops_flag_variants",
    metadata,
    Column("flag", String(64), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("position", Integer, nullable=False),  # the variants' order lays out the shares
    Column("value_json", Text, nullable=False),
    Column("weight", Integer, nullable=True),  # NULL: the flag gives it no weight (reads as 0)
    ForeignKeyConstraint(["flag"], ["graphops_flags.name"], name="fk_graphops_flag_variants_flag"),
)

flag_rules = Table(
    "graphops_flag_rules",
    metadata,
    Column("flag", String(64), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),  # tried in this order
    Column("attribute", String(32), nullable=False),
    Column("op", String(8), nullable=False),
    Column("values_json", Text, nullable=False),  # a JSON list of strings
    Column("variant", String(32), nullable=False),
    Column("percent", Float, nullable=False),
    ForeignKeyConstraint(["flag"], ["graphops_flags.name"], name="fk_graphops_flag_rules_flag"),
)

rollouts = Table(
    "graphops_rollouts",
    metadata,
    Column("flag", String(64), primary_key=True),
    Column("control", String(32), nullable=False),
    Column("canary", String(32), nullable=False),
    Column("steps", Text, nullable=False),  # JSON list of percents
    Column("step", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("min_runs", Integer, nullable=False),
    Column("interval_s", Float, nullable=False),
    Column("alpha", Float, nullable=False),
    Column("graph", Text, nullable=True),
    Column("started_ns", BigInteger, nullable=False),
    Column("step_started_ns", BigInteger, nullable=False),
    Column("flag_version", Integer, nullable=False),  # the flag version the controller wrote
    Column("version", Integer, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

feedback = Table(
    "graphops_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(32), nullable=False),  # the run's, as the span store has it
    Column("score", Float, nullable=False),  # 0 (bad) to 1 (good)
    Column("actor", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("at_ns", BigInteger, nullable=False),
    Index("ix_graphops_feedback_trace", "trace_id"),
)
