"""SIEM batching: events/s into the Splunk HEC and Datadog Logs formats, one event per request or batched.

"Batching on" is CAVRA's batch path, :func:`cavra.delivery.engine.deliver_batch` (what the worker runs for
due jobs of a batching target): every event encoded once by the connector, cut into requests within the
provider's limits, sent by CAVRA's transport, judged by the connector, and one result (with its redacted
attempt evidence) per event:

* HEC: envelopes concatenated one per line (HEC's batch format), ``batch`` per request;
* Datadog: a JSON array of log entries, ``batch`` per request (the intake takes up to 1000 entries and
  5 MB per request).

"Batching off" is CAVRA's engine (``deliver_one``: connector, redactor, transport, verdict, attempt
evidence) for each event, one after another. Neither side persists here: section 1 measures persistence.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import BENCH_TOKEN
from bench.contestants import Contestant, Measured


def siem_target(provider: str, base_url: str, **extra: Any) -> Any:
    from cavra.config import target_from_mapping

    raw: dict[str, Any]
    if provider == "splunk":
        raw = {"url": base_url + "/services/collector", "token": BENCH_TOKEN, "index": "cavra"}
    else:
        raw = {"url": base_url, "api_key": BENCH_TOKEN, "service": "cavra", "tags": ["env:bench"]}
    return target_from_mapping(provider, {**raw, "allow_http": True, "timeout_seconds": 10, **extra})


class EngineSingle(Contestant):
    """One request per event through ``deliver_one`` (batching off)."""

    def __init__(self, provider: str, base_url: str) -> None:
        super().__init__()
        self.provider = provider
        self.base_url = base_url
        self.key = f"{'hec' if provider == 'splunk' else 'datadog'}_single"
        fmt = "HEC" if provider == "splunk" else "Datadog"
        self.label = f"CAVRA {fmt}, one event per request (engine)"

    def setup(self) -> None:
        self.target = siem_target(self.provider, self.base_url)

    def run(self, events: list[dict[str, Any]]) -> Measured:
        return asyncio.run(self._run(events))

    async def _run(self, events: list[dict[str, Any]]) -> Measured:
        from cavra.delivery.engine import deliver_one
        from cavra.delivery.policy import RetryPolicy
        from cavra.transport import AiohttpTransport

        policy = RetryPolicy(retries=1)
        async with AiohttpTransport() as transport:
            t0 = time.perf_counter()
            done = 0
            for event in events:
                result = await deliver_one(self.target, event, policy=policy, transport=transport)
                if not result.success:
                    raise RuntimeError(f"not delivered: {result.error}")
                done += 1
                if done % 128 == 0 and self.over_budget():
                    break
            return done, time.perf_counter() - t0


class Batched(Contestant):
    """``batch`` events per request through ``deliver_batch`` (batching on)."""

    def __init__(self, provider: str, base_url: str, batch: int) -> None:
        super().__init__()
        self.provider = provider
        self.base_url = base_url
        self.batch = batch
        self.key = f"{'hec' if provider == 'splunk' else 'datadog'}_batch"
        fmt = "HEC" if provider == "splunk" else "Datadog"
        self.label = f"CAVRA {fmt}, {batch} events per request (deliver_batch)"

    def setup(self) -> None:
        self.target = siem_target(self.provider, self.base_url, batch_max_events=self.batch)

    def run(self, events: list[dict[str, Any]]) -> Measured:
        return asyncio.run(self._run(events))

    async def _run(self, events: list[dict[str, Any]]) -> Measured:
        from cavra.delivery.engine import deliver_batch
        from cavra.delivery.policy import RetryPolicy
        from cavra.transport import AiohttpTransport

        policy = RetryPolicy(retries=1)
        async with AiohttpTransport() as transport:
            t0 = time.perf_counter()
            done = 0
            for start in range(0, len(events), self.batch):
                chunk = events[start : start + self.batch]
                results = await deliver_batch(self.target, chunk, policy=policy, transport=transport)
                failed = [r for r in results if not r.success]
                if failed:
                    raise RuntimeError(f"not delivered: {failed[0].error}")
                done += len(chunk)
                if self.over_budget():
                    break
            return done, time.perf_counter() - t0
