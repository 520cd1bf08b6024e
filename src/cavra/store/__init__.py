"""The evidence metadata store: plain records, the tamper-evident delivery chain, and its index.

``open_store()`` picks the backend (DESIGN principle 6):

* ``None`` → ``$CAVRA_STORE_URL`` if set, else SQLite at ``.cavra/evidence/metadata.db`` (WAL, foreign keys);
* ``sqlite:///PATH`` (or a plain path) → SQLite; ``postgresql://...`` → PostgreSQL through psycopg 3;
* ``metadata_json=FILE`` (or a path ending in ``.json``) → the seed's JSON-file backend.

SQL stores are migrated to the newest schema when opened (Alembic; ``upgrade()`` is ``cavra db upgrade``).
See ``docs/store.md`` for record kinds, the chain and the dashboards.
"""

from __future__ import annotations

from cavra.store.base import (
    EVENT_DELIVERY,
    GROUP_DELIVERY,
    INTEGRATION_DELIVERY,
    METADATA_KINDS,
    PUBLICATION_DELIVERY,
    RECORD_KINDS,
    RELEASE_DELIVERY,
    UNROUTED_EVENT,
    Cursor,
    DeliveryFilter,
    EventTypeStats,
    FailureStreak,
    ProviderDeliveryRow,
    ProviderStats,
    Store,
    StoredDelivery,
    StoredRecord,
    UnpublishedExport,
)
from cavra.store.chain import GENESIS_SHA256, ChainBreak, ChainReport, record_hash
from cavra.store.engine import DEFAULT_SQLITE_PATH, ENV_URL, redact_url, resolve

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "ENV_URL",
    "EVENT_DELIVERY",
    "GENESIS_SHA256",
    "GROUP_DELIVERY",
    "INTEGRATION_DELIVERY",
    "METADATA_KINDS",
    "PUBLICATION_DELIVERY",
    "RECORD_KINDS",
    "RELEASE_DELIVERY",
    "UNROUTED_EVENT",
    "ChainBreak",
    "ChainReport",
    "Cursor",
    "DeliveryFilter",
    "EventTypeStats",
    "FailureStreak",
    "ProviderDeliveryRow",
    "ProviderStats",
    "Store",
    "StoredDelivery",
    "StoredRecord",
    "UnpublishedExport",
    "current_revision",
    "open_store",
    "record_hash",
    "redact_url",
    "upgrade",
]


def open_store(url_or_path: str | None = None, *, metadata_json: str | None = None) -> Store:
    """Open (and, for SQL, create and migrate) the evidence store.

    Raises :class:`cavra.errors.StoreError` with a one-line message (passwords redacted) when the database
    is unreachable or the JSON file is corrupt or locked. With a checkpoint key in the environment
    (``CAVRA_CHECKPOINT_KEY`` / ``CAVRA_CHECKPOINT_KEY_FILE``) the store signs its chain head at every
    append batch; a key that cannot be read raises :class:`cavra.errors.ConfigError`.
    """
    from cavra.store.checkpoint_keys import load_keys

    loc = resolve(url_or_path, metadata_json=metadata_json)
    keys = load_keys()  # a bad checkpoint key fails here, before anything is written
    store: Store
    if loc.backend == "json":
        from cavra.store.jsonfile import JsonFileStore

        assert loc.path is not None
        store = JsonFileStore(loc.path)
        store.check()
    else:
        from cavra.store.sql import SqlStore

        store = SqlStore.open(loc)
    store.checkpoint_signer = keys.signer
    store.checkpoint_verifiers = dict(keys.verifiers)
    return store


def upgrade(
    url_or_path: str | None = None, *, metadata_json: str | None = None, revision: str = "head"
) -> str | None:
    """Apply migrations up to ``revision`` (``cavra db upgrade``); return the revision now current.

    The JSON-file backend has no migrations: its file is checked and its format name returned.
    """
    loc = resolve(url_or_path, metadata_json=metadata_json)
    if loc.backend == "json":
        from cavra.store.jsonfile import JsonFileStore
        from cavra.store.jsonformat import FORMAT

        assert loc.path is not None
        json_store = JsonFileStore(loc.path)
        json_store.check()
        json_store.create()
        return FORMAT
    from cavra.store.sql import SqlStore

    with SqlStore.open(loc, migrate=False) as store:
        return store.upgrade(revision)


def current_revision(url_or_path: str | None = None) -> str | None:
    """The schema revision of a SQL store (``None`` for an empty database), without migrating it."""
    from cavra.store.sql import SqlStore

    loc = resolve(url_or_path)
    if loc.backend == "json":
        from cavra.store.jsonformat import FORMAT

        return FORMAT
    with SqlStore.open(loc, migrate=False) as store:
        return store.revision()
