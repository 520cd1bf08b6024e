"""Grouping state: ``delivery_groups`` (one slot per destination and group key) and
``delivery_group_members`` (one row per destination and event id that joined a group).

See :mod:`cavra.store.groups` and docs/routing.md (Grouping).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_groups",
        sa.Column("slot", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("slot", name="pk_delivery_groups"),
    )
    op.create_table(
        "delivery_group_members",
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("slot", sa.String(64), nullable=False),
        sa.Column("group_id", sa.String(64), nullable=False),
        sa.Column("flush_job", sa.String(40)),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("delivery_id", sa.String(64)),
        sa.PrimaryKeyConstraint("destination", "event_id", name="pk_delivery_group_members"),
    )
    op.create_index("ix_dgm_slot_flush", "delivery_group_members", ["slot", "flush_job"])
    op.create_index("ix_dgm_flush_job", "delivery_group_members", ["flush_job"])
    op.create_index("ix_dgm_unrecorded", "delivery_group_members", ["delivery_id", "flush_job"])


def downgrade() -> None:
    op.drop_index("ix_dgm_unrecorded", table_name="delivery_group_members")
    op.drop_index("ix_dgm_flush_job", table_name="delivery_group_members")
    op.drop_index("ix_dgm_slot_flush", table_name="delivery_group_members")
    op.drop_table("delivery_group_members")
    op.drop_table("delivery_groups")
