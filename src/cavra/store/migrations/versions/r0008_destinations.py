"""Destinations: the destination's name in the provider index, and totals per destination.

``provider_deliveries.destination`` is the name of the destination a delivery went to (the key of its
entry in the connectors file); rows written before destinations existed went to the destination named
after their provider, so they are filled with the provider's name. ``pd_destination_totals`` keeps per
(metadata kind, destination) what ``pd_totals`` keeps per provider; it starts as a copy of ``pd_totals``
(every existing row's destination is its provider's name).

Revision ID: 0008 (after 0006 on this branch; the checkpoints branch adds 0007: when both are merged,
this revision's ``down_revision`` becomes ``"0007"``)
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_TOTALS = (
    "total",
    "succeeded",
    "failed",
    "pending",
    "attempts",
    "last_success_at",
    "last_failure_at",
    "first_failure_at",
    "last_ok_id",
    "streak_count",
    "streak_first_id",
    "streak_since",
    "streak_last_at",
    "streak_last_id",
    "streak_event_type",
)


def _big() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.add_column("provider_deliveries", sa.Column("destination", sa.String(64)))
    op.execute("UPDATE provider_deliveries SET destination = provider")
    op.create_index(
        "ix_pd_destination_kind_time",
        "provider_deliveries",
        ["destination", "metadata_kind", "created_at", "id"],
    )
    op.create_table(
        "pd_destination_totals",
        sa.Column("metadata_kind", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("succeeded", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("pending", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.BigInteger, nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=False)),
        sa.Column("last_failure_at", sa.DateTime(timezone=False)),
        sa.Column("first_failure_at", sa.DateTime(timezone=False)),
        sa.Column("last_ok_id", _big(), nullable=False),
        sa.Column("streak_count", sa.Integer, nullable=False),
        sa.Column("streak_first_id", _big()),
        sa.Column("streak_since", sa.DateTime(timezone=False)),
        sa.Column("streak_last_at", sa.DateTime(timezone=False)),
        sa.Column("streak_last_id", _big()),
        sa.Column("streak_event_type", sa.String(255)),
        sa.PrimaryKeyConstraint("metadata_kind", "destination", name="pk_pd_destination_totals"),
    )
    columns = ", ".join(_TOTALS)
    op.execute(
        f"INSERT INTO pd_destination_totals (metadata_kind, destination, provider, {columns}) "  # noqa: S608
        f"SELECT metadata_kind, provider, provider, {columns} FROM pd_totals"
    )


def downgrade() -> None:
    op.drop_table("pd_destination_totals")
    op.drop_index("ix_pd_destination_kind_time", table_name="provider_deliveries")
    with op.batch_alter_table("provider_deliveries") as batch:
        batch.drop_column("destination")
