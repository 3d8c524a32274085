"""The prompt registry: immutable versions, labels and an audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graphops_prompt_versions",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.UniqueConstraint("name", "content_hash", name="uq_graphops_prompt_versions_content"),
    )
    op.create_table(
        "graphops_prompt_labels",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["graphops_prompt_versions.name", "graphops_prompt_versions.version"],
            name="fk_graphops_prompt_labels_version",
        ),
    )
    op.create_table(
        "graphops_prompt_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at_ns", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("label", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("previous", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_graphops_prompt_audit_name", "graphops_prompt_audit", ["name", "id"])


def downgrade() -> None:
    op.drop_index("ix_graphops_prompt_audit_name", table_name="graphops_prompt_audit")
    op.drop_table("graphops_prompt_audit")
    op.drop_table("graphops_prompt_labels")
    op.drop_table("graphops_prompt_versions")
