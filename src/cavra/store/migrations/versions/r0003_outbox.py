"""The outbox: delivery jobs claimed by workers with a lease, and per-provider destination state.

``jobs`` holds one delivery request for one provider (state, attempt runs, next run, lease, last error,
latest delivery record); ``destinations`` holds what every worker shares about a provider: its circuit
breaker, a provider-wide pause after ``Retry-After``, and its rate-limit token bucket. No data to move.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_INDEXES = {
    "ix_jobs_state_run_after": ["state", "run_after"],
    "ix_jobs_provider_state": ["provider", "state"],
    "ix_jobs_created": ["created_at"],
}


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=False), nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=False)),
        sa.Column("last_error", sa.Text),
        sa.Column("delivery_id", sa.String(64)),
        sa.Column("replay_of", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("idempotency_key", name="uq_jobs_idempotency_key"),
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "jobs", columns)
    op.create_table(
        "destinations",
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("breaker_state", sa.String(16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=False)),
        sa.Column("probe_at", sa.DateTime(timezone=False)),
        sa.Column("probe_owner", sa.String(128)),
        sa.Column("paused_until", sa.DateTime(timezone=False)),
        sa.Column("tokens", sa.Float),
        sa.Column("tokens_at", sa.DateTime(timezone=False)),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("provider", name="pk_destinations"),
    )


def downgrade() -> None:
    op.drop_table("destinations")
    for name in reversed(list(_INDEXES)):
        op.drop_index(name, "jobs")
    op.drop_table("jobs")
