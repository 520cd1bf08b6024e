"""A covering index for the commonest history query: provider + metadata kind + success, newest first.

``cavra release connector-delivery-history --provider webhook --no-success`` and its API twin filter on
exactly these columns and page by (created_at, id); with this index the count and the page are index-only
scans (measured on 1,000,000 records: 107 ms → 8 ms per history call, see docs/performance.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

NAME = "ix_pd_provider_kind_success_time"
COLUMNS = ["provider", "metadata_kind", "success", "created_at", "id"]


def upgrade() -> None:
    op.create_index(NAME, "provider_deliveries", COLUMNS)


def downgrade() -> None:
    op.drop_index(NAME, table_name="provider_deliveries")
