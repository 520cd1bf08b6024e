"""CAVRA's own delivery paths, each persisting every delivery record it makes.

* ``cavra_integration_seq`` / ``cavra_integration_32``: an events file delivered through an integration,
  the service call that ``POST /integrations/{id}/deliver`` makes (``governance.deliver_integration``:
  connector → engine → transport, then the record appended to the chain and the integration's
  ``last_delivery`` updated), one event after another, or 32 in flight: the loop a caller of that route
  runs over a file of events.
* ``cavra_integration_file``: the same JSON-lines events file through ``cavra integration deliver
  EVENTS.jsonl --output DIR`` as the command runs it: ``events.load_events_file`` (every event validated),
  ``service.deliver_events`` (``deliver_one`` 32 in flight per provider; SIEM targets would use
  ``deliver_batch``), then one evidence file per event (``service.write_evidence_many``: each fsynced and
  linked atomically, 16 at once).
* ``cavra_engine_32``: the engine alone (``deliver_one``: connector, redactor, transport, verdict, attempt
  evidence), 32 in flight, persisting nothing: what CAVRA's delivery costs before the store.
* ``cavra_worker_<backend>``: the outbox path (enqueue → worker claims → delivers → record with the job's
  completion), see :mod:`bench.contestants.worker_path`.

Every run checks that each event was delivered and that one more record per event was persisted (in the
store, or as an evidence file).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_SIGNING_SECRET
from bench.contestants import Contestant, Measured

INTEGRATION_ID = "bench-webhook"


def webhook_connectors(base_url: str) -> dict[str, Any]:
    """The connector config: the webhook connector (signed) aimed at the sink."""
    return {
        "connectors": {
            "webhook": {
                "url": base_url + "/hook",
                "signing_secret": BENCH_SIGNING_SECRET,
                "allow_http": True,
                "timeout_seconds": 10,
            }
        }
    }


def write_events_file(path: Path, events: list[dict[str, Any]]) -> None:
    """A JSON-lines events file (one event per line)."""
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, separators=(",", ":")) + "\n")


def read_events_file(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class IntegrationDeliver(Contestant):
    """An events file through ``governance.deliver_integration`` on a store (SQLite unless ``store_url``)."""

    def __init__(self, base_url: str, *, concurrency: int, store_url: str | None = None) -> None:
        super().__init__()
        self.base_url = base_url
        self.concurrency = concurrency
        self.store_url = store_url
        suffix = "seq" if concurrency == 1 else str(concurrency)
        self.key = f"cavra_integration_{suffix}"
        what = "one at a time" if concurrency == 1 else f"{concurrency} in flight"
        self.label = f"CAVRA integration deliver, events file, {what} (SQLite, persisted)"

    def setup(self) -> None:
        from cavra.config import config_from_data
        from cavra.governance import service as governance
        from cavra.store import open_store

        self._tmp = tempfile.TemporaryDirectory(prefix="cavra-bench-integration-")
        url = self.store_url or f"sqlite:///{Path(self._tmp.name) / 'metadata.db'}"
        self.store = open_store(url)
        self.config = config_from_data(webhook_connectors(self.base_url), "bench")
        governance.upsert_integration(
            self.store, {"integration_id": INTEGRATION_ID, "provider": "webhook", "status": "active"}
        )
        self._governance = governance
        #: the server's delivery runtime: its requests share the writers, the guard and the tokens
        self._runtime = governance.delivery_runtime()

    def _count(self) -> int:
        from cavra.store import INTEGRATION_DELIVERY, DeliveryFilter

        flt = DeliveryFilter(metadata_kinds=(INTEGRATION_DELIVERY,), integration_id=INTEGRATION_ID)
        return self.store.count_provider_deliveries(flt)

    def run(self, events: list[dict[str, Any]]) -> Measured:
        path = Path(self._tmp.name) / "events.jsonl"
        write_events_file(path, events)
        before = self._count()
        delivered, seconds = asyncio.run(self._run(path))
        stored = self._count() - before
        if stored != delivered:
            raise RuntimeError(f"{stored} records stored for {delivered} events delivered")
        return delivered, seconds

    async def _run(self, path: Path) -> Measured:
        from cavra.transport import AiohttpTransport

        async with AiohttpTransport() as transport:
            t0 = time.perf_counter()
            events = read_events_file(path)  # reading the file is part of the job
            queue = iter(events)
            failed: list[str] = []
            done = 0

            async def lane() -> None:
                nonlocal done
                for event in queue:
                    answer = await self._governance.deliver_integration(
                        self.store,
                        self.config,
                        INTEGRATION_ID,
                        event,
                        retries=1,
                        transport=transport,
                        runtime=self._runtime,
                    )
                    if not answer.get("success"):
                        failed.append(str(answer.get("errors")))
                    done += 1
                    if self.over_budget():
                        return

            await asyncio.gather(*(lane() for _ in range(self.concurrency)))
            elapsed = time.perf_counter() - t0
        if failed:
            raise RuntimeError(f"{len(failed)} deliveries failed: {failed[0][:200]}")
        return done, elapsed

    def teardown(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
        if hasattr(self, "_tmp"):
            self._tmp.cleanup()


class IntegrationFile(Contestant):
    """A JSON-lines events file through ``service.deliver_events`` (what ``cavra integration deliver
    EVENTS.jsonl --provider webhook --output DIR`` runs), one evidence file written per event."""

    key = "cavra_integration_file"
    label = "CAVRA integration deliver EVENTS.jsonl --output DIR (batch input, 32 in flight, evidence files)"

    #: the file is delivered in slices of this many events so a run can stop at its time budget
    SLICE = 1000

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def setup(self) -> None:
        from cavra.config import config_from_data

        self._tmp = tempfile.TemporaryDirectory(prefix="cavra-bench-integration-file-")
        self.config = config_from_data(webhook_connectors(self.base_url), "bench")
        self.runs = 0

    def run(self, events: list[dict[str, Any]]) -> Measured:
        self.runs += 1
        root = Path(self._tmp.name)
        path, out = root / f"events-{self.runs}.jsonl", root / f"evidence-{self.runs}"
        write_events_file(path, events)
        delivered, seconds = asyncio.run(self._run(path, out))
        written = len(list(out.glob("*-connector-delivery.json"))) if out.exists() else 0
        if written != delivered:
            raise RuntimeError(f"{written} evidence files written for {delivered} events delivered")
        return delivered, seconds

    async def _run(self, path: Path, out: Path) -> Measured:
        from cavra import service
        from cavra.events import load_events_file
        from cavra.transport import AiohttpTransport

        async with AiohttpTransport() as transport:
            t0 = time.perf_counter()
            events, _many = load_events_file(str(path))  # reading and validating the file is part of the job
            service.ensure_output_dir(out)
            failed: list[str] = []
            done = 0
            for start in range(0, len(events), self.SLICE):
                records = await service.deliver_events(
                    events[start : start + self.SLICE],
                    self.config,
                    ["webhook"],
                    retries=1,
                    transport=transport,
                )
                failed.extend(str(r["errors"]) for r in records if not r["success"])
                service.write_evidence_many(out, records)
                done += len(records)
                if self.over_budget():
                    break
            elapsed = time.perf_counter() - t0
        if failed:
            raise RuntimeError(f"{len(failed)} deliveries failed: {failed[0][:200]}")
        return done, elapsed

    def teardown(self) -> None:
        if hasattr(self, "_tmp"):
            self._tmp.cleanup()


class EngineOnly(Contestant):
    """``deliver_one`` to the webhook target, ``concurrency`` in flight, no store (the engine's ceiling)."""

    key = "cavra_engine_32"
    label = "CAVRA engine only, 32 in flight (no persistence)"

    def __init__(self, base_url: str, concurrency: int = 32) -> None:
        super().__init__()
        self.base_url = base_url
        self.concurrency = concurrency

    def setup(self) -> None:
        from cavra.config import target_from_mapping

        self.target = target_from_mapping(
            "webhook", webhook_connectors(self.base_url)["connectors"]["webhook"]
        )

    def run(self, events: list[dict[str, Any]]) -> Measured:
        return asyncio.run(self._run(events))

    async def _run(self, events: list[dict[str, Any]]) -> Measured:
        from cavra.delivery.engine import deliver_one
        from cavra.delivery.policy import RetryPolicy
        from cavra.transport import AiohttpTransport

        policy = RetryPolicy(retries=1)
        async with AiohttpTransport() as transport:
            queue = iter(events)
            failed: list[str] = []
            done = 0

            async def lane() -> None:
                nonlocal done
                for event in queue:
                    result = await deliver_one(self.target, event, policy=policy, transport=transport)
                    if not result.success:
                        failed.append(str(result.error))
                    done += 1
                    if done % 64 == 0 and self.over_budget():
                        return

            t0 = time.perf_counter()
            await asyncio.gather(*(lane() for _ in range(self.concurrency)))
            elapsed = time.perf_counter() - t0
        if failed:
            raise RuntimeError(f"{len(failed)} deliveries failed: {failed[0][:200]}")
        return done, elapsed
