"""Signed checkpoints of the chain head: one row per chain with the newest signed checkpoint.

When a checkpoint key is configured (``CAVRA_CHECKPOINT_KEY``, docs/store.md), every append batch signs
the new chain head and writes it here in the same transaction; ``cavra evidence verify`` checks it and
``cavra evidence checkpoint`` exports it. No data to move: a store gets its first checkpoint at its next
append with a key (or from ``cavra evidence checkpoint``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "chain_checkpoints",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_chain_checkpoints"),
    )


def downgrade() -> None:
    op.drop_table("chain_checkpoints")
