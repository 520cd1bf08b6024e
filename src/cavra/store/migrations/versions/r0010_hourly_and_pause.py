"""Hourly delivery counts kept on append (the trends' source), and an operator's pause of a destination.

``pd_hourly`` holds per (hour, metadata kind, provider, destination) the deliveries, successes and
failures indexed in that hour; every append adds to it in its own transaction
(:mod:`cavra.store.hourly`), and this revision builds it from the existing index rows. ``destinations``
gains ``held_by``, ``held_at`` and ``held_until``: a pause an operator set (and only an operator's resume
ends early), apart from ``paused_until``, the provider's own ``Retry-After``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "pd_hourly",
        sa.Column("hour", sa.DateTime(timezone=False), nullable=False),
        sa.Column("metadata_kind", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("succeeded", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("hour", "metadata_kind", "provider", "destination", name="pk_pd_hourly"),
    )
    op.add_column("destinations", sa.Column("held_by", sa.String(128)))
    op.add_column("destinations", sa.Column("held_at", sa.DateTime(timezone=False)))
    op.add_column("destinations", sa.Column("held_until", sa.DateTime(timezone=False)))
    from cavra.store.hourly import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.drop_column("held_until")
        batch.drop_column("held_at")
        batch.drop_column("held_by")
    op.drop_table("pd_hourly")
