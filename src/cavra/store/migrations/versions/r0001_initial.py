"""Initial schema: plain records, the delivery chain and its head.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_INT_PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("kind", "record_id", name="pk_records"),
    )
    op.create_index("ix_records_kind_time", "records", ["kind", "created_at"])
    op.create_table(
        "deliveries",
        sa.Column("sequence", _INT_PK, autoincrement=False, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("metadata_kind", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("event_type", sa.String(255)),
        sa.Column("event_id", sa.String(255)),
        sa.Column("subject_kind", sa.String(40)),
        sa.Column("subject_id", sa.String(255)),
        sa.Column("integration_id", sa.String(255)),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
        sa.Column("previous_sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_deliveries"),
        sa.UniqueConstraint("id", name="uq_deliveries_id"),
    )
    op.create_index("ix_deliveries_kind_time", "deliveries", ["metadata_kind", "created_at"])
    op.create_index("ix_deliveries_subject", "deliveries", ["subject_kind", "subject_id"])
    head = op.create_table(
        "chain_head",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("last_id", sa.String(64)),
        sa.Column("last_sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_chain_head"),
    )
    op.bulk_insert(head, [{"name": "deliveries", "count": 0, "last_id": None, "last_sha256": "0" * 64}])


def downgrade() -> None:
    op.drop_table("chain_head")
    op.drop_index("ix_deliveries_subject", "deliveries")
    op.drop_index("ix_deliveries_kind_time", "deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_records_kind_time", "records")
    op.drop_table("records")
