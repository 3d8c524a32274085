"""The answer cache: entries by key, the documents they cite, and feedback.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graphops_cache_entries",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("partition", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=True),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("values_json", sa.Text, nullable=False),
        sa.Column("docs_json", sa.Text, nullable=False),
        sa.Column("corpus", sa.Text, nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("stored_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_graphops_cache_entries_stored", "graphops_cache_entries", ["stored_ns"])
    op.create_table(
        "graphops_cache_docs",
        sa.Column("doc", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
    )
    op.create_index("ix_graphops_cache_docs_key", "graphops_cache_docs", ["key"])
    op.create_table(
        "graphops_cache_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("similarity", sa.Float, nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
    )
    op.create_index("ix_graphops_cache_feedback_key", "graphops_cache_feedback", ["key", "id"])


def downgrade() -> None:
    op.drop_index("ix_graphops_cache_feedback_key", table_name="graphops_cache_feedback")
    op.drop_table("graphops_cache_feedback")
    op.drop_index("ix_graphops_cache_docs_key", table_name="graphops_cache_docs")
    op.drop_table("graphops_cache_docs")
    op.drop_index("ix_graphops_cache_entries_stored", table_name="graphops_cache_entries")
    op.drop_table("graphops_cache_entries")
