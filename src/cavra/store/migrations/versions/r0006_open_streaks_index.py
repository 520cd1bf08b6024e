"""A partial index on the open per-event failure streaks: (metadata kind, streak start), open ones only.

The connector dashboard lists the 20 newest failing rollback events and sums up the rest (how many, since
when). With this index both are read from the open streaks alone, newest first, instead of reading every
(provider, rollback event) row and its last error (measured on 1,000,000 records with ~5,000 open
streaks, see docs/performance.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

NAME = "ix_pd_event_streaks_open"
COLUMNS = ["metadata_kind", "streak_since"]
OPEN = "streak_count > 0"


def upgrade() -> None:
    op.create_index(
        NAME,
        "pd_event_streaks",
        COLUMNS,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="pd_event_streaks")
