"""Canary rollouts: one row per flag, what its controller is doing; feedback on runs.

``graphops_feedback`` holds the scores people (or an online judge) give runs,
by trace id, which a rollout compares between its arms as their quality.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graphops_rollouts",
        sa.Column("flag", sa.String(64), primary_key=True),
        sa.Column("control", sa.String(32), nullable=False),
        sa.Column("canary", sa.String(32), nullable=False),
        sa.Column("steps", sa.Text, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("min_runs", sa.Integer, nullable=False),
        sa.Column("interval_s", sa.Float, nullable=False),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("graph", sa.Text, nullable=True),
        sa.Column("started_ns", sa.BigInteger, nullable=False),
        sa.Column("step_started_ns", sa.BigInteger, nullable=False),
        sa.Column("flag_version", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "graphops_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("at_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_graphops_feedback_trace", "graphops_feedback", ["trace_id"])


def downgrade() -> None:
    op.drop_index("ix_graphops_feedback_trace", table_name="graphops_feedback")
    op.drop_table("graphops_feedback")
    op.drop_table("graphops_rollouts")
