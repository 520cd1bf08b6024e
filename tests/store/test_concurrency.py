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
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("start file never appeared")
        time.sleep(0.002)
    store = open_store(spec["url"], metadata_json=spec["metadata_json"])
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
    time.sleep(0.3)  # both interpreters are up and polling
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
        # the two workers really interleaved: both appear in the first half of the chain
        first_half = {
            r.provider
            for r in store.page_provider_deliveries(DeliveryFilter(), limit=PER_WORKER, offset=PER_WORKER)
        }
        assert first_half == {"alpha", "beta"}


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
