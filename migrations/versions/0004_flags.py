"""Feature flags: flags, their variants and rules; the audit log gains a kind.

The flags' history goes to the prompt registry's audit log, so one log says who
changed what, and when, for prompts and flags alike: its new column ``kind``
says which registry wrote a row (every row already there is a prompt's, hence
the server default). Downgrading drops the flag tables, deletes the flag rows
from the log (a prompt registry without ``kind`` would list them as prompt
changes) and drops the column.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graphops_flags",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("default_variant", sa.String(32), nullable=False),
        sa.Column("sticky_by", sa.Text, nullable=False),
        sa.Column("killed", sa.Boolean, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
    )
    op.create_table(
        "graphops_flag_variants",
        sa.Column("flag", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("value_json", sa.Text, nullable=False),
        sa.Column("weight", sa.Integer, nullable=True),
        sa.ForeignKeyConstraint(
            ["flag"], ["graphops_flags.name"], name="fk_graphops_flag_variants_flag"
        ),
    )
    op.create_table(
        "graphops_flag_rules",
        sa.Column("flag", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("attribute", sa.String(32), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("values_json", sa.Text, nullable=False),
        sa.Column("variant", sa.String(32), nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(
            ["flag"], ["graphops_flags.name"], name="fk_graphops_flag_rules_flag"
        ),
    )
    op.add_column(
        "graphops_prompt_audit",
        sa.Column("kind", sa.String(16), nullable=False, server_default="prompt"),
    )
    op.create_index("ix_graphops_prompt_audit_kind", "graphops_prompt_audit", ["kind", "id"])


def downgrade() -> None:
    op.drop_index("ix_graphops_prompt_audit_kind", table_name="graphops_prompt_audit")
    audit = sa.table("graphops_prompt_audit", sa.column("kind", sa.String(16)))
    op.execute(audit.delete().where(audit.c.kind != "prompt"))
    # a plain ALTER TABLE ... DROP COLUMN on both (SQLite has it since 3.35): the column is
    # in no index any more, and `graphops db downgrade` lists it from this statement
    op.drop_column("graphops_prompt_audit", "kind")
    op.drop_table("graphops_flag_rules")
    op.drop_table("graphops_flag_variants")
    op.drop_table("graphops_flags")
