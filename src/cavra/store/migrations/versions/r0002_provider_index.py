"""Provider delivery index: one row per provider delivery, backfilled from the stored records.

History and dashboards count per provider delivery; before this revision they had to parse every stored
record. The backfill reads the chain in batches (never the whole table at once).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-15
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from cavra.store.document import index_rows

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_INT_PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_BATCH = 500
_INDEXES = {
    "ix_pd_kind_time": ["metadata_kind", "created_at", "id"],
    "ix_pd_provider_kind_time": ["provider", "metadata_kind", "created_at", "id"],
    "ix_pd_time": ["created_at", "id"],
    "ix_pd_integration_time": ["integration_id", "created_at"],
    "ix_pd_event_id": ["event_id"],
    "ix_pd_event_type_time": ["event_type", "created_at"],
    "ix_pd_subject": ["subject_kind", "subject_id", "success"],
    "ix_pd_delivery_id": ["delivery_id"],
}


def upgrade() -> None:
    table = op.create_table(
        "provider_deliveries",
        sa.Column("id", _INT_PK, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("integration_id", sa.String(255)),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("attempt_count", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(255)),
        sa.Column("event_id", sa.String(255)),
        sa.Column("metadata_kind", sa.String(64), nullable=False),
        sa.Column("subject_kind", sa.String(40)),
        sa.Column("subject_id", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_provider_deliveries"),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], ondelete="CASCADE", name="fk_provider_deliveries_delivery_id"
        ),
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "provider_deliveries", columns)
    _backfill(table)


def _backfill(table: sa.Table) -> None:
    bind = op.get_bind()
    deliveries = sa.table(
        "deliveries", sa.column("sequence"), sa.column("record"), sa.column("created_at", sa.DateTime())
    )
    last = 0
    while True:
        batch = bind.execute(
            sa.select(deliveries.c.sequence, deliveries.c.record, deliveries.c.created_at)
            .where(deliveries.c.sequence > last)
            .order_by(deliveries.c.sequence)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        rows: list[dict[str, Any]] = []
        for sequence, text, created_at in batch:
            last = sequence
            try:
                doc = json.loads(text)
            except ValueError:
                continue  # a damaged record is reported by verify_chain, not indexed
            if isinstance(doc, dict):
                when = (
                    created_at
                    if isinstance(created_at, datetime)
                    else datetime.fromisoformat(str(created_at))
                )
                stamp = (
                    when.replace(tzinfo=None)
                    if when.tzinfo is None
                    else when.astimezone(UTC).replace(tzinfo=None)
                )
                # only this revision's columns (later revisions add their own, e.g. 0008's destination)
                rows.extend({k: v for k, v in r.items() if k in table.c} for r in index_rows(doc, stamp))
        if rows:
            bind.execute(sa.insert(table), rows)


def downgrade() -> None:
    for name in reversed(list(_INDEXES)):
        op.drop_index(name, "provider_deliveries")
    op.drop_table("provider_deliveries")
