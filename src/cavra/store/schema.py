"""The one schema (SQLAlchemy 2.0 Core) shared by SQLite and PostgreSQL.

Tables:

``records``
    plain records by (kind, record_id): integrations, evidence bundles, promotion and rollback executions,
    endpoint exports and publications. ``body`` is canonical JSON text.
``deliveries``
    the chain of stored ``cavra.connector.delivery.v1`` documents, in ``sequence`` order. ``record`` holds
    the document's canonical JSON without the two hash fields, which are columns.
``provider_deliveries``
    the index: one row per provider delivery, so history and dashboards are SQL queries.
``chain_head``
    one row (``name = 'deliveries'``): count, last id and last hash. Appenders lock it (``FOR UPDATE`` on
    PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` locks the whole database), so the chain has one writer at a time.
``chain_checkpoints``
    one row per chain (revision 0007): the newest signed checkpoint of its head, written in the append
    batch's transaction when a checkpoint key is configured (:mod:`cavra.store.checkpoint`).
``jobs``
    the outbox (revision 0003): one delivery request for one provider, claimed by workers with a lease
    (see :mod:`cavra.store.jobs` and ``docs/operations.md``).
``destinations``
    per destination (its ``provider`` column holds the destination's name), shared by every worker
    (revision 0003): the circuit breaker, a destination-wide pause (``Retry-After``) and the rate-limit
    token bucket.
``pd_totals``, ``pd_event_type_totals``, ``pd_event_streaks``
    aggregates of the index kept in each append's transaction (revision 0005): per (metadata kind,
    provider) counts, times and the current failure streak; per (metadata kind, event type) counts; per
    (metadata kind, provider, event id) the failure streak of rollback events. Dashboards read these
    instead of scanning all history (:mod:`cavra.store.aggregates`). A partial index on the open
    per-event streaks (revision 0006) lets the dashboard count them and list the newest without reading
    them all. Revision 0008 adds the destination's name to the index (``destination``, filled with the
    provider's name for older rows) and ``pd_destination_totals``, the per (metadata kind, destination)
    twin of ``pd_totals``.
``pd_hourly``
    per (hour, metadata kind, provider, destination) the deliveries, successes and failures indexed in
    that hour, kept in each append's transaction (revision 0010): the trends read it
    (:mod:`cavra.store.hourly`). Revision 0010 also gives ``destinations`` an operator's pause
    (``held_by``, ``held_at``, ``held_until``), apart from the provider's ``Retry-After`` pause.

``delivery_groups``, ``delivery_group_members``
    grouping state (revision r0009, :mod:`cavra.store.groups`): one row per (destination, group key) with
    the open group's state as JSON, one row per (destination, event id) that joined a group, with the flush
    job that took it.

Alembic revisions in ``migrations/versions`` create exactly these tables; ``test_migrations`` checks
that the migrated schema matches this module.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(naming_convention={"pk": "pk_%(table_name)s"})


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (one format on both engines, ordered as text on SQLite); read as aware UTC."""

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


records = sa.Table(
    "records",
    metadata,
    sa.Column("kind", sa.String(40), primary_key=True),
    sa.Column("record_id", sa.String(255), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_records_kind_time", "kind", "created_at"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column(
        "sequence", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    sa.Column("id", sa.String(64), nullable=False),
    sa.UniqueConstraint("id", name="uq_deliveries_id"),
    sa.Column("metadata_kind", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("event_type", sa.String(255)),
    sa.Column("event_id", sa.String(255)),
    sa.Column("subject_kind", sa.String(40)),
    sa.Column("subject_id", sa.String(255)),
    sa.Column("integration_id", sa.String(255)),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("record_sha256", sa.String(64), nullable=False),
    sa.Column("previous_sha256", sa.String(64), nullable=False),
    sa.Index("ix_deliveries_kind_time", "metadata_kind", "created_at"),
    sa.Index("ix_deliveries_subject", "subject_kind", "subject_id"),
)

provider_deliveries = sa.Table(
    "provider_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.String(64),
        sa.ForeignKey("deliveries.id", ondelete="CASCADE", name="fk_provider_deliveries_delivery_id"),
        nullable=False,
    ),
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
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("error", sa.Text),
    # revision 0008: the destination's name (the provider's for rows written before destinations)
    sa.Column("destination", sa.String(64)),
    sa.Index("ix_pd_kind_time", "metadata_kind", "created_at", "id"),
    sa.Index("ix_pd_destination_kind_time", "destination", "metadata_kind", "created_at", "id"),
    sa.Index("ix_pd_provider_kind_time", "provider", "metadata_kind", "created_at", "id"),
    sa.Index("ix_pd_provider_kind_success_time", "provider", "metadata_kind", "success", "created_at", "id"),
    sa.Index("ix_pd_time", "created_at", "id"),
    sa.Index("ix_pd_integration_time", "integration_id", "created_at"),
    sa.Index("ix_pd_event_id", "event_id"),
    sa.Index("ix_pd_event_type_time", "event_type", "created_at"),
    sa.Index("ix_pd_subject", "subject_kind", "subject_id", "success"),
    sa.Index("ix_pd_delivery_id", "delivery_id"),
)

chain_head = sa.Table(
    "chain_head",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("last_id", sa.String(64)),
    sa.Column("last_sha256", sa.String(64), nullable=False),
)

CHAIN_NAME = "deliveries"

#: the newest signed checkpoint of each chain head (revision 0007; see cavra.store.checkpoint): ``body`` is
#: the checkpoint's canonical JSON, written in each append batch's transaction when a key is configured
chain_checkpoints = sa.Table(
    "chain_checkpoints",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.UniqueConstraint("idempotency_key", name="uq_jobs_idempotency_key"),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("run_after", UTCDateTime, nullable=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("delivery_id", sa.String(64)),
    sa.Column("replay_of", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_jobs_state_run_after", "state", "run_after"),
    sa.Index("ix_jobs_provider_state", "provider", "state"),
    sa.Index("ix_jobs_created", "created_at"),
)

destinations = sa.Table(
    "destinations",
    metadata,
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("breaker_state", sa.String(16), nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("opened_at", UTCDateTime),
    sa.Column("probe_at", UTCDateTime),
    sa.Column("probe_owner", sa.String(128)),
    sa.Column("paused_until", UTCDateTime),
    sa.Column("tokens", sa.Float),
    sa.Column("tokens_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # an operator's pause (revision 0010): who paused, when, and until when (NULL: until resumed)
    sa.Column("held_by", sa.String(128)),
    sa.Column("held_at", UTCDateTime),
    sa.Column("held_until", UTCDateTime),
)


# --- aggregates kept on append (revision 0005; see cavra.store.aggregates) ---
def _streak_columns() -> list[sa.Column[object]]:
    big = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    return [
        sa.Column("last_ok_id", big, nullable=False),
        sa.Column("streak_count", sa.Integer, nullable=False),
        sa.Column("streak_first_id", big),
        sa.Column("streak_since", UTCDateTime),
        sa.Column("streak_last_at", UTCDateTime),
        sa.Column("streak_last_id", big),
        sa.Column("streak_event_type", sa.String(255)),
    ]


pd_totals = sa.Table(
    "pd_totals",
    metadata,
    sa.Column("metadata_kind", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("succeeded", sa.BigInteger, nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.BigInteger, nullable=False),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("last_failure_at", UTCDateTime),
    sa.Column("first_failure_at", UTCDateTime),
    *_streak_columns(),
)

# per (metadata kind, destination): the same totals as pd_totals (revision 0008), and the destination's
# provider (the latest row's)
pd_destination_totals = sa.Table(
    "pd_destination_totals",
    metadata,
    sa.Column("metadata_kind", sa.String(64), primary_key=True),
    sa.Column("destination", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("succeeded", sa.BigInteger, nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.BigInteger, nullable=False),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("last_failure_at", UTCDateTime),
    sa.Column("first_failure_at", UTCDateTime),
    *_streak_columns(),
)

pd_event_type_totals = sa.Table(
    "pd_event_type_totals",
    metadata,
    sa.Column("metadata_kind", sa.String(64), primary_key=True),
    sa.Column("event_key", sa.String(256), primary_key=True),
    sa.Column("event_type", sa.String(255)),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("succeeded", sa.BigInteger, nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
)

pd_event_streaks = sa.Table(
    "pd_event_streaks",
    metadata,
    sa.Column("metadata_kind", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("event_key", sa.String(256), primary_key=True),
    sa.Column("event_id", sa.String(255)),
    *_streak_columns(),
    # the open streaks only (revision 0006): the dashboard counts them and lists the newest
    sa.Index(
        "ix_pd_event_streaks_open",
        "metadata_kind",
        "streak_since",
        sqlite_where=sa.text("streak_count > 0"),
        postgresql_where=sa.text("streak_count > 0"),
    ),
)


# --- hourly counts kept on append (revision 0010; see cavra.store.hourly) ---
pd_hourly = sa.Table(
    "pd_hourly",
    metadata,
    sa.Column("hour", UTCDateTime, primary_key=True),
    sa.Column("metadata_kind", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("destination", sa.String(64), primary_key=True),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("succeeded", sa.BigInteger, nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
)

# grouping (revision r0009): one slot per (destination, group key), one member per (destination, event id)
delivery_groups = sa.Table(
    "delivery_groups",
    metadata,
    sa.Column("slot", sa.String(64), primary_key=True),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("group_key", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

delivery_group_members = sa.Table(
    "delivery_group_members",
    metadata,
    sa.Column("destination", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("slot", sa.String(64), nullable=False),
    sa.Column("group_id", sa.String(64), nullable=False),
    sa.Column("flush_job", sa.String(40)),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
    # the member's own record, once written (null: owed while its flush job has ended)
    sa.Column("delivery_id", sa.String(64)),
    sa.Index("ix_dgm_slot_flush", "slot", "flush_job"),
    sa.Index("ix_dgm_flush_job", "flush_job"),
    sa.Index("ix_dgm_unrecorded", "delivery_id", "flush_job"),
)
