"""Aggregates kept on append: per (kind, provider) totals and failure streaks, per (kind, event type)
totals, per (kind, provider, event id) rollback failure streaks; built here from the existing index rows.

Dashboards read these instead of summarising all of history (1.9 s → a few ms at 1,000,000 records, see
docs/performance.md); every append updates them in its own transaction (:mod:`cavra.store.aggregates`).
The backfill reads ``provider_deliveries`` once in id order with the same code the appenders use.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

TABLES = ("pd_totals", "pd_event_type_totals", "pd_event_streaks")


def _big() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _streak() -> list[sa.Column[object]]:
    return [
        sa.Column("last_ok_id", _big(), nullable=False),
        sa.Column("streak_count", sa.Integer, nullable=False),
        sa.Column("streak_first_id", _big()),
        sa.Column("streak_since", sa.DateTime(timezone=False)),
        sa.Column("streak_last_at", sa.DateTime(timezone=False)),
        sa.Column("streak_last_id", _big()),
        sa.Column("streak_event_type", sa.String(255)),
    ]


def upgrade() -> None:
    op.create_table(
        "pd_totals",
        sa.Column("metadata_kind", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("succeeded", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("pending", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.BigInteger, nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=False)),
        sa.Column("last_failure_at", sa.DateTime(timezone=False)),
        sa.Column("first_failure_at", sa.DateTime(timezone=False)),
        *_streak(),
        sa.PrimaryKeyConstraint("metadata_kind", "provider", name="pk_pd_totals"),
    )
    op.create_table(
        "pd_event_type_totals",
        sa.Column("metadata_kind", sa.String(64), nullable=False),
        sa.Column("event_key", sa.String(256), nullable=False),
        sa.Column("event_type", sa.String(255)),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("succeeded", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("metadata_kind", "event_key", name="pk_pd_event_type_totals"),
    )
    op.create_table(
        "pd_event_streaks",
        sa.Column("metadata_kind", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("event_key", sa.String(256), nullable=False),
        sa.Column("event_id", sa.String(255)),
        *_streak(),
        sa.PrimaryKeyConstraint("metadata_kind", "provider", "event_key", name="pk_pd_event_streaks"),
    )
    from cavra.store.aggregates import rebuild

    rebuild(op.get_bind(), destinations=False)  # pd_destination_totals comes with revision 0008


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
