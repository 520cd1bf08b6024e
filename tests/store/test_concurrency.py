"""Two processes appending at once to one store produce one intact chain and lose nothing.

Each worker is a separate Python process that waits on a start file, then opens the store (so fresh-store
migrations race too) and appends its records one by one. Afterwards the chain must hold every record of
both workers, verify end to end, and the history must count each worker's deliveries exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cavra.history import query_history
from cavra.store import DeliveryFilter, Store

from .conftest import Target, make_record

PER_WORKER = 1000

_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from cavra.store import open_store

    spec, tag, count, go = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    # open (and migrate) first, then start together: what is tested is concurrent appends
    store = open_store(spec["url"], metadata_json=spec["metadata_json"])
    open(go + "." + tag, "w").close()  # ready
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("start file never appeared")
        time.sleep(0.002)
    started = time.time()
    for i in range(count):
        ok = i % 7 != 0
        store.append_delivery(
            {
                "schema_version": "cavra.connector.delivery.v1",
                "event_type": "cavra.release.promotion_execution",
                "event_id": f"{tag}-{i}",
                "success": ok,
                "deliveries": [
                    {"provider": tag, "success": ok, "status": "delivered" if ok else "failed",
                     "status_code": 200 if ok else 503, "attempt_count": 1}
                ],
            },
            metadata_kind="release-connector-delivery",
            integration_id=tag,
        )
    store.close()
    with open(os.path.join(os.path.dirname(go), "span." + tag), "w") as fh:
        fh.write(f"{started} {time.time()}")
    """
)


@pytest.mark.slow
def test_two_processes_append_to_one_chain(target: Target, tmp_path: Path) -> None:
    go = tmp_path / "go"
    spec = json.dumps(target.spec)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, spec, tag, str(PER_WORKER), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("alpha", "beta")
    ]
    deadline = time.monotonic() + 60  # both stores are open and migrated, then they start together
    while not all((tmp_path / f"go.{tag}").exists() for tag in ("alpha", "beta")):
        assert time.monotonic() < deadline, "the workers never became ready"
        assert all(w.poll() is None for w in workers), "a worker ended before starting"
        time.sleep(0.01)
    go.touch()
    for w in workers:
        _out, err = w.communicate(timeout=110)
        assert w.returncode == 0, err[-2000:]

    with target.open() as store:
        report = store.verify_chain()
        assert report.ok, report.first_bad
        assert report.count == 2 * PER_WORKER
        for tag in ("alpha", "beta"):
            assert store.count_provider_deliveries(DeliveryFilter(provider=tag)) == PER_WORKER
            failed = store.count_provider_deliveries(DeliveryFilter(provider=tag, success=False))
            assert failed == len(range(0, PER_WORKER, 7))
        page = query_history(store, metadata_kinds=["release-connector-delivery"], limit=1)
        assert page.total == 2 * PER_WORKER
    # the two workers really ran at the same time (the lock need not be fair, so the chain order may not
    # interleave; the time spans must overlap)
    spans = [tuple(map(float, (tmp_path / f"span.{tag}").read_text().split())) for tag in ("alpha", "beta")]
    assert max(s[0] for s in spans) < min(s[1] for s in spans), spans


def test_threads_share_one_store(store: Store) -> None:
    """API workers call the sync store from a thread pool; appends from many threads stay one chain."""

    def work(n: int) -> None:
        for i in range(25):
            store.append_delivery(
                make_record(f"p{n}", event_id=f"{n}-{i}"), metadata_kind="integration-delivery"
            )
            store.count_provider_deliveries(DeliveryFilter(provider=f"p{n}"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, range(4)))
    report = store.verify_chain()
    assert report.ok and report.count == 100
    assert [store.count_provider_deliveries(DeliveryFilter(provider=f"p{n}")) for n in range(4)] == [25] * 4


_OPENER = textwrap.dedent(
    """
    import os, sys, time
    from cavra.store import open_store

    url, go, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    while not os.path.exists(go):
        time.sleep(0.001)
    with open_store(url) as store:
        store.put_record("integration", tag, {"integration_id": tag})
    """
)


def test_many_processes_open_a_new_sqlite_file_at_once(tmp_path: Path) -> None:
    """Every process races to create the schema and switch the new file to WAL; none may fail."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, url, str(go), f"p{i}"], stderr=subprocess.PIPE, text=True
        )
        for i in range(6)
    ]
    time.sleep(0.5)
    go.touch()
    for p in procs:
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-2000:]
    from cavra.store import open_store

    with open_store(url) as store:
        assert len(store.list_records("integration")) == 6
