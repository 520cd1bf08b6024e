"""Store at scale: history and dashboard latency with a million delivery records, and the write rate.

The dataset (:mod:`bench.dataset`) goes into SQLite through the store's write path, then is copied into
PostgreSQL, so both hold the same chain. Each round (the backends alternate, their order rotating) takes
``samples`` timings of:

* ``history_first``: ``query_history`` for release connector deliveries with ``provider=splunk`` and
  ``success=true`` (the larger of the two filtered sets), page of 50, first page: what
  ``GET /release-connector-deliveries?provider=splunk&success=true`` runs (items and total);
* ``history_deep``: the same filter, the page after the 50,000th matching row (by its cursor);
* ``dashboard``: the release connector delivery dashboard (totals, per provider, per event type, failure
  streaks, rollback alerts, window rates, latest failures).

Each run's p50 and p95 is one value of the figure. The JSON-file backend is measured the same way at
10,000 and 100,000 records (cold: open and first history page, parsing the file; then warm).
The write rate is ``append_delivery`` one record at a time (the real path: one transaction, chain head
lock, index rows) into the loaded stores.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Section, now_iso, percentile
from bench.dataset import DATASET_VERSION, Generator
from bench.loaders import copy_to_postgres, load_json, load_sql
from bench.pg import PgSchema

log = logging.getLogger("bench")
PROVIDER = "splunk"
DEEP_ROWS = 50_000


class Backend:
    """A loaded store and the queries measured on it."""

    def __init__(self, name: str, store: Any) -> None:
        from cavra.store import RELEASE_DELIVERY

        self.name = name
        self.store = store
        self.kinds = [RELEASE_DELIVERY]
        self.deep_cursor: str | None = None

    def prepare(self, deep_rows: int) -> None:
        from cavra.history import encode_cursor
        from cavra.store import Cursor, DeliveryFilter

        flt = DeliveryFilter(metadata_kinds=tuple(self.kinds), provider=PROVIDER, success=True)
        total = self.store.count_provider_deliveries(flt)
        at = max(0, min(deep_rows, total - 60))
        row = self.store.page_provider_deliveries(flt, limit=1, offset=at)
        self.deep_cursor = encode_cursor(Cursor(row[0].created_at, row[0].row_id)) if row else None
        self.deep_at = at

    def history_first(self) -> None:
        from cavra.history import query_history

        page = query_history(self.store, metadata_kinds=self.kinds, provider=PROVIDER, success=True, limit=50)
        assert len(page.items) == 50 or page.total < 50

    def history_deep(self) -> None:
        from cavra.history import query_history

        page = query_history(
            self.store,
            metadata_kinds=self.kinds,
            provider=PROVIDER,
            success=True,
            limit=50,
            cursor=self.deep_cursor,
        )
        assert page.items

    def dashboard(self) -> None:
        from cavra.governance import service as governance

        board = governance.connector_delivery_dashboard(self.store)
        assert board["totals"]["deliveries"] > 0


QUERIES = ("history_first", "history_deep", "dashboard")
LABELS = {
    "history_first": "history page (provider+success, 50), first page",
    "history_deep": "history page (provider+success, 50), deep page by cursor",
    "dashboard": "dashboard",
}


def measure(
    section: Section, backends: list[Backend], *, rounds: int, samples: dict[str, int], tag: str
) -> None:
    """Alternate the backends for ``rounds`` rounds; add p50 and p95 figures (ms) per query and backend."""
    for r in range(rounds):
        order = backends[r % len(backends) :] + backends[: r % len(backends)]
        for b in order:
            for q in QUERIES:
                fn: Callable[[], None] = getattr(b, q)
                times = []
                for _ in range(samples[q]):
                    t0 = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - t0) * 1000)
                for stat in (50, 95):
                    key = f"{q}_p{stat}_{b.name}"
                    label = f"{LABELS[q]}, p{stat} ({b.name}{tag})"
                    section.figure(key, label, "ms", higher_is_better=False).add(percentile(times, stat))
            log.info("  round %d %s done", r + 1, b.name)


def write_rate(section: Section, backends: list[Backend], *, rounds: int, per_round: dict[str, int]) -> None:
    """``append_delivery`` one record at a time, alternating backends; records/s per run."""
    from cavra.store import INTEGRATION_DELIVERY

    gen = iter(Generator(sum(per_round.values()) * rounds, seed=7))
    for r in range(rounds):
        order = backends[r % len(backends) :] + backends[: r % len(backends)]
        for b in order:
            n = per_round[b.name]
            items = [next(gen) for _ in range(n)]
            t0 = time.perf_counter()
            for item in items:
                b.store.append_delivery(
                    item.record,
                    metadata_kind=INTEGRATION_DELIVERY,
                    subject_kind=item.subject_kind,
                    subject_id=item.subject_id,
                    integration_id=item.integration_id,
                )
            rate = n / (time.perf_counter() - t0)
            section.figure(
                f"write_{b.name}", f"append_delivery, one record per call ({b.name})", "records/s"
            ).add(rate)


def run(
    section: Section,
    workdir: Path,
    *,
    records: int,
    json_sizes: tuple[int, ...],
    rounds: int,
    samples: dict[str, int],
    json_samples: dict[str, int],
    write_per_round: int,
    json_write_per_round: int,
    pg: PgSchema | None,
    cache: Path | None = None,
    verify: bool = False,
) -> Path:
    """Run the section; return the SQLite database (kept for the API memory measurement)."""
    from cavra.store import open_store

    db = workdir / "scale.db"
    loaded = _sqlite_dataset(section, db, records, cache=cache)
    sqlite = open_store(f"sqlite:///{db}")
    backends = [Backend("sqlite", sqlite)]
    pg_store = None
    if pg is not None and pg.error is None:
        pg_store = open_store(pg.url)
        t0 = time.perf_counter()
        copied = copy_to_postgres(sqlite, pg_store)
        seconds = time.perf_counter() - t0
        section.figure("load_postgresql", "dataset copy into PostgreSQL (COPY)", "records/s").add(
            copied / seconds
        )
        log.info("  copied %d records into PostgreSQL in %.1f s", copied, seconds)
        backends.append(Backend("postgresql", pg_store))
    else:
        reason = pg.error if pg is not None else "PostgreSQL not requested"
        section.notes.append(f"PostgreSQL skipped: {reason}")
    if verify:  # the loader must write what append_delivery writes: the chain verifies on both backends
        for b in backends:
            report = b.store.verify_chain()
            if not report.ok:
                raise RuntimeError(f"the loaded chain does not verify on {b.name}: {report}")
        section.notes.append("the loaded chain verifies (verify_chain) on every backend")
    for b in backends:
        b.prepare(DEEP_ROWS)
    section.notes.append(
        f"{loaded:,} delivery records ({_rows(sqlite):,} provider deliveries); deep page after "
        f"{backends[0].deep_at:,} matching rows"
    )
    measure(section, backends, rounds=rounds, samples=samples, tag="")
    json_backends: list[Backend] = []
    failures: list[str] = []
    try:
        json_backends = _json_backends(section, workdir, json_sizes)
        if json_backends:
            measure(section, json_backends, rounds=max(1, rounds // 2), samples=json_samples, tag=" records")
    except Exception as exc:  # the SQL figures stand; say what failed
        log.exception("the JSON-file part failed")
        failures.append(f"JSON-file backend: {type(exc).__name__}: {exc}")
    writers = [*backends, *json_backends[:1]]
    per = {b.name: write_per_round for b in backends} | {
        b.name: json_write_per_round for b in json_backends[:1]
    }
    try:
        write_rate(section, writers, rounds=rounds, per_round=per)
    except Exception as exc:
        log.exception("the write-rate part failed")
        failures.append(f"write rate: {type(exc).__name__}: {exc}")
    for b in [*backends, *json_backends]:
        b.store.close()
    if failures:
        raise RuntimeError("; ".join(failures))
    return db


def sqlite_dataset(section: Section, db: Path, records: int, *, cache: Path | None) -> int:
    """The dataset in ``db`` (built, or copied from ``cache``), for a section that needs it without the
    store section (the console pages)."""
    return _sqlite_dataset(section, db, records, cache=cache)


def _json_backends(section: Section, workdir: Path, sizes: tuple[int, ...]) -> list[Backend]:
    """JSON-file stores of each size (written in one atomic rewrite), opened cold and timed once."""
    from cavra.store import open_store

    out = []
    for size in sizes:
        path = workdir / f"metadata-{size}.json"
        writer = open_store(metadata_json=str(path))
        load_json(writer, iter(Generator(size, seed=size)))
        writer.close()
        cold = open_store(metadata_json=str(path))  # a new process's view: the file is parsed on first use
        t0 = time.perf_counter()
        Backend("json", cold).history_first()
        section.figure(
            f"json_{size}_cold",
            f"JSON file, {size:,} records: open + first page (cold)",
            "ms",
            higher_is_better=False,
        ).add((time.perf_counter() - t0) * 1000)
        b = Backend(f"json_{size}", cold)
        b.prepare(min(DEEP_ROWS, size // 20))
        out.append(b)
    return out


def _sqlite_dataset(section: Section, db: Path, records: int, *, cache: Path | None) -> int:
    """Load the dataset into ``db``, or copy it from ``cache``; return the records in it.

    The cache holds datasets built earlier by this code, one file per dataset version, record count and
    schema revision (``scale-v{DATASET_VERSION}-{records}-{revision}.db`` and its ``.json`` info). One for
    the current revision is copied. Failing that, one built at an older revision of the same chain (the
    newest such) is copied and upgraded with the store's own migrations (``cavra.store.upgrade``, what
    ``cavra db upgrade`` runs); the upgraded file replaces the older one in the cache, and the info and
    the section's notes say so. Only when neither exists (or the upgrade fails) is the dataset built
    (:func:`_build`) and then cached."""
    from cavra.store.migrate import head_revision

    head = head_revision()
    if cache is None:
        return _build(section, db, records)[0]
    cached = _cache_file(cache, records, head)
    info = cached.with_suffix(".json")
    if cached.exists() and info.exists():
        built = json.loads(info.read_text(encoding="utf-8"))
        shutil.copyfile(cached, db)
        section.notes.append(f"dataset reused from {cached} ({_described(built)}; delete it to rebuild)")
        log.info("  reused the cached dataset %s", cached)
        return int(built["records"])
    older = _older_cached(cache, records)
    if older is not None:
        try:
            return _upgrade_cached(section, db, older, cached)
        except Exception as exc:  # build it instead; say why
            log.exception("  upgrading the cached dataset %s failed; building it", older[0])
            section.notes.append(f"the cached dataset {older[0]} could not be upgraded ({exc}); rebuilt")
            for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                leftover.unlink(missing_ok=True)
    loaded, rate, seconds = _build(section, db, records)
    built = {"records": loaded, "revision": head, "built_at": now_iso(), "rate": rate, "seconds": seconds}
    _cache_put(db, cached, built)
    return loaded


def _cache_file(cache: Path, records: int, revision: str) -> Path:
    return cache / f"scale-v{DATASET_VERSION}-{records}-{revision}.db"


def _described(built: dict[str, Any]) -> str:
    text = f"built {built['built_at']} at {built['rate']:,.0f} records/s"
    if built.get("upgraded_from"):
        text += (
            f", upgraded from revision {built['upgraded_from']} to {built['revision']} with the store's "
            f"migrations on {built['upgraded_at']} in {built['upgrade_seconds']:.1f} s"
        )
    return text


def _older_cached(cache: Path, records: int) -> tuple[Path, str] | None:
    """The cached dataset of the newest revision older than the head (of the head's own history), if any."""
    from alembic.script import ScriptDirectory

    from cavra.store.migrate import alembic_config, head_revision

    script = ScriptDirectory.from_config(alembic_config())
    history = [r.revision for r in script.iterate_revisions(head_revision(), "base")]
    for revision in history[1:]:  # newest first, the head itself excluded
        path = _cache_file(cache, records, revision)
        if path.exists() and path.with_suffix(".json").exists():
            return path, revision
    return None


def _upgrade_cached(section: Section, db: Path, older: tuple[Path, str], cached: Path) -> int:
    """Copy an older revision's cached dataset to ``db``, upgrade it to the head with the store's own
    migrations, and put it in the cache in place of the older file."""
    from cavra.store import current_revision, upgrade

    path, revision = older
    built = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    shutil.copyfile(path, db)
    url = f"sqlite:///{db}"
    found = current_revision(url)
    if found != revision:
        raise RuntimeError(f"{path}: the cached dataset is at revision {found}, its name says {revision}")
    log.info("  upgrading the cached dataset %s from revision %s", path, revision)
    t0 = time.perf_counter()
    now = upgrade(url)
    seconds = time.perf_counter() - t0
    built = built | {
        "revision": now,
        "upgraded_from": revision,
        "upgraded_at": now_iso(),
        "upgrade_seconds": seconds,
    }
    _cache_put(db, cached, built)
    path.unlink()
    path.with_suffix(".json").unlink()
    section.notes.append(f"dataset reused from {path}: {_described(built)}; now cached as {cached}")
    log.info("  upgraded to %s in %.1f s; cached as %s (the older file removed)", now, seconds, cached)
    return int(built["records"])


def _cache_put(db: Path, cached: Path, info: dict[str, Any]) -> None:
    """Copy ``db`` into the cache as ``cached`` (through a temporary name, so a partial copy is never
    taken for a dataset) and write its info beside it."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(cached.name + ".partial")
    shutil.copyfile(db, partial)
    partial.replace(cached)
    cached.with_suffix(".json").write_text(json.dumps(info), encoding="utf-8")


def _build(section: Section, db: Path, records: int) -> tuple[int, float, float]:
    """Build the dataset in ``db`` through the store's write path (:func:`bench.loaders.load_sql`);
    return the records loaded, the rate (records/s) and the seconds it took."""
    from cavra.store import open_store

    store = open_store(f"sqlite:///{db}")
    t0 = time.perf_counter()
    loaded = load_sql(store, iter(Generator(records)), build=True)
    seconds = time.perf_counter() - t0
    store.close()
    rate = loaded / seconds
    section.figure(
        "load_sqlite", "dataset load into SQLite (generate + build + insert, batched)", "records/s"
    ).add(rate)
    log.info("  loaded %d records into SQLite in %.1f s (%.0f records/s)", loaded, seconds, rate)
    return loaded, rate, seconds


def _rows(store: Any) -> int:
    from cavra.store import DeliveryFilter

    return int(store.count_provider_deliveries(DeliveryFilter()))
