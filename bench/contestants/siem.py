"""SIEM batching: events/s into the Splunk HEC and Datadog Logs formats, one event per request or batched.

CAVRA has no batch path yet (issue 6 item 5), so "batching on" is built here from the connectors' own
pieces: the request the connector prepares for the first event of a batch (URL, auth, channel headers)
with its body replaced by the batch, sent by CAVRA's transport and judged by the connector's
``interpret``:

* HEC: the envelopes of :func:`cavra.connectors.splunk.envelope`, concatenated (HEC's batch format:
  JSON objects one after another in one request);
* Datadog: a JSON array of :func:`cavra.connectors.datadog.log_entry` entries (the intake takes up to
  1000 entries and 5 MB per request).

"Batching off" is CAVRA's engine (``deliver_one``: connector, redactor, transport, verdict, attempt
evidence) for each event, one after another. Neither side persists here: section 1 measures persistence.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

from bench.common import BENCH_TOKEN
from bench.contestants import Contestant, Measured


def siem_target(provider: str, base_url: str) -> Any:
    from cavra.config import target_from_mapping

    raw: dict[str, Any]
    if provider == "splunk":
        raw = {"url": base_url + "/services/collector", "token": BENCH_TOKEN, "index": "cavra"}
    else:
        raw = {"url": base_url, "api_key": BENCH_TOKEN, "service": "cavra", "tags": ["env:bench"]}
    return target_from_mapping(provider, {**raw, "allow_http": True, "timeout_seconds": 10})


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
    """``batch`` events per request, from the connector's own envelope (batching on)."""

    def __init__(self, provider: str, base_url: str, batch: int) -> None:
        super().__init__()
        self.provider = provider
        self.base_url = base_url
        self.batch = batch
        self.key = f"{'hec' if provider == 'splunk' else 'datadog'}_batch"
        fmt = "HEC" if provider == "splunk" else "Datadog"
        self.label = f"CAVRA {fmt}, {batch} events per request"
        self.note = "built from the connector's envelope/log entry: CAVRA has no batch path yet"

    def setup(self) -> None:
        self.target = siem_target(self.provider, self.base_url)

    def _body(self, chunk: list[dict[str, Any]], now: float) -> bytes:
        settings = self.target.settings
        if self.provider == "splunk":
            from cavra.connectors.splunk import envelope

            return "\n".join(
                json.dumps(envelope(e, settings, now), ensure_ascii=False, default=str) for e in chunk
            ).encode("utf-8")
        from cavra.connectors.datadog import log_entry

        entries = [log_entry(e, settings) for e in chunk]
        return json.dumps(entries, ensure_ascii=False, default=str).encode("utf-8")

    def run(self, events: list[dict[str, Any]]) -> Measured:
        return asyncio.run(self._run(events))

    async def _run(self, events: list[dict[str, Any]]) -> Measured:
        from cavra.connectors.base import Context, Delivered
        from cavra.transport import AiohttpTransport

        connector, settings = self.target.connector, self.target.settings
        async with AiohttpTransport() as transport:
            t0 = time.perf_counter()
            done = 0
            for start in range(0, len(events), self.batch):
                chunk = events[start : start + self.batch]
                ctx = Context(delivery_key=self.target.delivery_key(str(chunk[0]["event_id"])))
                first = connector.prepare(chunk[0], settings, ctx, None)
                request = replace(first, body=self._body(chunk, ctx.now))
                response = await transport.send(request, self.target.options)
                verdict = connector.interpret(request, response, settings, ctx, None)
                if not isinstance(verdict, Delivered):
                    raise RuntimeError(f"batch not delivered: {verdict}")
                done += len(chunk)
                if self.over_budget():
                    break
            return done, time.perf_counter() - t0
