"""SIEM batching in the engine: many events per request within each provider's limits, one result per event.

Runs against the real emulators over loopback: Splunk HEC (concatenated envelopes, partial-batch resend
after ``invalid-event-number``), Datadog (≤ 1000 entries / 5 MB per payload) and Sentinel (≤ 1 MB per call,
one Entra token for the whole batch).
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from importlib import resources
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest

from cavra.config import target_from_mapping
from cavra.connectors.base import BatchLimits
from cavra.delivery.engine import batching, deliver_batch
from cavra.delivery.policy import RetryPolicy
from cavra.delivery.record import build_record
from cavra.emulators import datadog as intake
from cavra.emulators import sentinel as dcr
from cavra.emulators import splunk as hec
from cavra.emulators.framework import Fault, decode_body
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError
from cavra.transport import AiohttpTransport

from .kit import evidence_event, target_for

SCHEMA = json.loads(resources.files("cavra").joinpath("schemas/connector-delivery.v1.json").read_text())
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
HEC_TOKEN = "5ec7e7a1-0b1d-4c2e-9f3a-1eaac0ffee99"


def events(n: int, prefix: str = "evt_batch", **extra: Any) -> list[dict[str, Any]]:
    return [{**evidence_event(f"{prefix}_{i:05d}"), **extra} for i in range(n)]


def hec_server(**overrides: Any) -> EmulatorServer:
    tokens = {HEC_TOKEN: {"name": "cavra", "indexes": ["main", "cavra"]}}
    return EmulatorServer(providers=["splunk"], overrides={"splunk": {"tokens": tokens, **overrides}})


def hec_target(srv: EmulatorServer, **extra: Any) -> Any:
    raw = {
        "url": srv.base_url + "/splunk/services/collector",
        "token": HEC_TOKEN,
        "index": "cavra",
        "allow_http": True,
        **extra,
    }
    return target_from_mapping("splunk", raw)


def body_of(received: Any) -> bytes:
    headers = {k.lower(): v for k, v in received.headers.items()}
    return decode_body(
        received.body, headers.get("content-encoding"), 50_000_000, accepted=("gzip", "deflate")
    )


def indexed_ids(srv: EmulatorServer) -> Counter[str]:
    return Counter(str(e.event["event_id"]) for e in hec.state(srv.hub).events)


# -- planning ------------------------------------------------------------------------------------------------
def test_plan_respects_count_and_bytes() -> None:
    limits = BatchLimits(max_items=3, max_bytes=2 + 10 + 1 + 10)  # "[a,b]" of two 10-byte items
    assert limits.plan([10] * 7) == [[0, 1], [2, 3], [4, 5], [6]]
    assert BatchLimits(max_items=3, max_bytes=10_000).plan([10] * 7) == [[0, 1, 2], [3, 4, 5], [6]]
    # an item larger than the byte budget goes alone (encode refuses what cannot be sent at all)
    assert limits.plan([5, 50, 5]) == [[0], [1], [2]]
    assert limits.plan([]) == []


def test_batch_size_comes_from_the_target_settings() -> None:
    raw = {"url": "https://splunk.example:8088", "token": HEC_TOKEN}
    assert batching(target_from_mapping("splunk", raw)) == 100
    assert batching(target_from_mapping("splunk", {**raw, "batch_max_events": 1})) == 1
    assert batching(target_from_mapping("webhook", {"url": "https://hooks.example/x"})) == 1
    dd = target_from_mapping("datadog", {"api_key": "k" * 32})
    assert batching(dd) == 1000
    with pytest.raises(ConfigError, match="batch_max_events"):
        target_from_mapping("datadog", {"api_key": "k" * 32, "batch_max_events": 1001})


# -- Splunk HEC --------------------------------------------------------------------------------------------
async def test_hec_sends_concatenated_envelopes_and_records_each_event() -> None:
    async with hec_server() as srv, AiohttpTransport() as tr:
        tgt = hec_target(srv, batch_max_events=100)
        results = await deliver_batch(tgt, events(250), policy=POLICY, transport=tr)
        requests = srv.hub.received("splunk")
    assert [r.status for r in results] == ["delivered"] * 250
    assert len(requests) == 3  # 100 + 100 + 50
    assert [r.body.count(b"\n") + 1 for r in requests] == [100, 100, 50]
    assert indexed_ids(srv) == Counter({f"evt_batch_{i:05d}": 1 for i in range(250)})
    first, last = results[0].to_dict(), results[-1].to_dict()
    assert first["detail"]["batch_size"] == "100" and first["detail"]["batch_position"] == "0"
    assert last["detail"]["batch_size"] == "50" and last["detail"]["batch_position"] == "49"
    assert first["delivery_key"] != last["delivery_key"]  # each event keeps its own identity
    assert first["attempt_count"] == 1 and first["status_code"] == 200


async def test_hec_batches_are_cut_by_bytes_too() -> None:
    async with hec_server() as srv, AiohttpTransport() as tr:
        tgt = hec_target(srv, batch_max_bytes=20_000)
        results = await deliver_batch(tgt, events(60, note="x" * 1000), policy=POLICY, transport=tr)
        sizes = [len(r.body) for r in srv.hub.received("splunk")]
    assert all(r.success for r in results)
    assert len(sizes) > 3 and max(sizes) <= 20_000


async def test_hec_partial_batch_resends_only_what_was_not_indexed() -> None:
    """HEC refuses event 37: 0..36 were indexed, 37 fails alone, 38.. go again once."""
    bad = "evt_batch_00037"
    async with hec_server(unparsable_event_ids=frozenset({bad})) as srv, AiohttpTransport() as tr:
        tgt = hec_target(srv)
        results = await deliver_batch(tgt, events(80), policy=POLICY, transport=tr)
        requests = srv.hub.received("splunk")
    statuses = [r.status for r in results]
    assert (
        statuses[:37] == ["delivered"] * 37
        and statuses[37] == "failed"
        and statuses[38:] == ["delivered"] * 42
    )
    assert [r.status for r in requests] == [400, 200]
    assert requests[1].body.count(b"\n") + 1 == 42  # only the events after the bad one
    counts = indexed_ids(srv)
    assert bad not in counts and set(counts.values()) == {1} and len(counts) == 79  # no duplicates
    failed = results[37].to_dict()
    assert "code 6" in failed["error"] and "event number 37" in failed["error"]
    assert failed["attempt_count"] == 1
    early, late = results[0].to_dict(), results[60].to_dict()
    assert early["attempt_count"] == 1 and early["attempts"][0]["verdict"] == "split"
    assert "partly refused" in early["proof"]
    assert late["attempt_count"] == 2 and late["attempts"][-1]["verdict"] == "delivered"
    assert late["detail"]["batch_size"] == "42"
    for result, event in zip(results, events(80), strict=True):  # each a valid record of its own event
        jsonschema.validate(build_record(event, [result]), SCHEMA)


async def test_hec_batch_retried_whole_on_503_then_delivered() -> None:
    async with hec_server() as srv, AiohttpTransport() as tr:
        srv.hub.add_fault("splunk", Fault(status=503, body='{"text":"Server is busy","code":9}'))
        results = await deliver_batch(hec_target(srv), events(30), policy=POLICY, transport=tr)
    assert all(r.success and r.attempt_count == 2 for r in results)
    assert set(indexed_ids(srv).values()) == {1} and len(indexed_ids(srv)) == 30


async def test_hec_batch_with_indexer_ack_is_proven_once_for_all() -> None:
    ack_token = "0acc0acc-1111-4222-8333-444455556666"
    tokens = {ack_token: {"name": "acked", "ack": True}}
    async with hec_server(tokens=tokens) as srv, AiohttpTransport() as tr:
        tgt = hec_target(srv, token=ack_token, index=None, ack=True, ack_poll_seconds=0.01)
        results = await deliver_batch(tgt, events(20), policy=POLICY, transport=tr)
        steps = [r.path.rsplit("/", 1)[-1] for r in srv.hub.received("splunk")]
    assert steps == ["event", "ack"]
    assert all(r.success for r in results)
    assert all((r.proof is not None and "acknowledged ackId 0" in str(r.proof)) for r in results)


async def test_an_oversized_event_fails_alone() -> None:
    async with hec_server() as srv, AiohttpTransport() as tr:
        batch = events(5)
        batch[2] = {**batch[2], "blob": "y" * 1_000_000}
        results = await deliver_batch(hec_target(srv), batch, policy=POLICY, transport=tr)
        sent = srv.hub.received("splunk")
    assert [r.status for r in results] == ["delivered", "delivered", "failed", "delivered", "delivered"]
    assert results[2].attempt_count == 0 and "not sent" in str(results[2].error)
    assert len(sent) == 1 and sent[0].body.count(b"\n") == 3


# -- Datadog -----------------------------------------------------------------------------------------------
async def test_datadog_at_most_1000_entries_per_payload() -> None:
    async with EmulatorServer(providers=["datadog"]) as srv, AiohttpTransport() as tr:
        tgt, _ = target_for(srv, "datadog")
        results = await deliver_batch(tgt, events(2100), policy=POLICY, transport=tr)
        counts = [len(json.loads(body_of(r))) for r in srv.hub.received("datadog")]
        stored = intake.state(srv.hub).logs
    assert all(r.success for r in results)
    assert sorted(counts) == [100, 1000, 1000]  # the requests after the first go concurrently
    assert len(stored) == 2100 and len({s.entry["event_id"] for s in stored}) == 2100


async def test_datadog_payloads_stay_under_5_mb() -> None:
    async with EmulatorServer(providers=["datadog"]) as srv, AiohttpTransport() as tr:
        tgt, _ = target_for(srv, "datadog")
        big = events(12, note="z" * 900_000)  # ~0.9 MB each: 4 per 4.25 MB payload
        results = await deliver_batch(tgt, big, policy=POLICY, transport=tr)
        sizes = [len(body_of(r)) for r in srv.hub.received("datadog")]
    assert all(r.success for r in results)
    assert len(sizes) == 3 and max(sizes) <= 4_250_000


async def test_datadog_refused_payload_fails_every_event_in_it() -> None:
    async with EmulatorServer(providers=["datadog"]) as srv, AiohttpTransport() as tr:
        tgt, _ = target_for(srv, "datadog")
        srv.hub.add_fault("datadog", Fault(status=400, body='{"errors":[{"status":"400","detail":"bad"}]}'))
        results = await deliver_batch(tgt, events(10), policy=POLICY, transport=tr)
    assert [r.status for r in results] == ["failed"] * 10
    assert all("HTTP 400" in str(r.error) for r in results)


# -- Sentinel ----------------------------------------------------------------------------------------------
async def test_sentinel_one_token_and_calls_under_1_mb() -> None:
    async with EmulatorServer(providers=["entra", "sentinel"]) as srv, AiohttpTransport() as tr:
        tgt, _ = target_for(srv, "sentinel")
        results = await deliver_batch(tgt, events(40, note="s" * 60_000), policy=POLICY, transport=tr)
        calls = srv.hub.received("sentinel")
        tokens = srv.hub.received("entra")
        rows = [row for found in dcr.state(srv.hub).rows.values() for row in found]
    assert all(r.success for r in results)
    assert len(tokens) == 1  # the whole batch shares one Entra token
    assert len(calls) >= 3 and max(len(body_of(c)) for c in calls) <= 1_048_576
    assert len(rows) == 40 and len({r["EventId"] for r in rows}) == 40


# -- secrets -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["splunk", "datadog", "sentinel"])
async def test_batch_records_never_show_a_secret(provider: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emulators = {"splunk": ["splunk"], "datadog": ["datadog"], "sentinel": ["entra", "sentinel"]}[provider]
    async with EmulatorServer(providers=emulators) as srv, AiohttpTransport() as tr:
        tgt, secrets = target_for(srv, provider)
        ok = await deliver_batch(tgt, events(5, "ok"), policy=POLICY, transport=tr)
        echo = " ".join(secrets.values())
        srv.hub.add_fault(emulators[-1], Fault(status=500, count=5, body=json.dumps({"echo": echo})))
        down = await deliver_batch(tgt, events(5, "down"), policy=POLICY, transport=tr)
    assert all(r.success for r in ok) and not any(r.success for r in down)
    texts = [json.dumps(r.to_dict()) for r in ok + down] + [caplog.text]
    for secret in secrets.values():
        if len(secret) < 8:
            continue
        for form in (secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()):
            for text in texts:
                assert form not in text, f"{provider}: a secret leaked into a batch record or log"


async def test_a_target_that_does_not_batch_gets_one_request_per_event_with_a_bound() -> None:
    """deliver_batch given a webhook target: one request per event, never more than 16 in flight."""
    from cavra.delivery.engine import UNBATCHED_CONCURRENCY
    from cavra.transport import PreparedRequest, Response, SendOptions

    class Counting:
        def __init__(self, inner: AiohttpTransport) -> None:
            self.inner, self.now, self.most = inner, 0, 0

        async def send(self, request: PreparedRequest, options: SendOptions) -> Response:
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                return await self.inner.send(request, options)
            finally:
                self.now -= 1

        async def close(self) -> None:
            await self.inner.close()

    async with EmulatorServer(providers=["webhook"]) as srv, AiohttpTransport() as tr:
        counting = Counting(tr)
        tgt, _secrets = target_for(srv, "webhook")
        results = await deliver_batch(tgt, events(60), policy=POLICY, transport=counting)
    assert [r.success for r in results] == [True] * 60
    assert [r.detail.get("batch_size") for r in results] == [None] * 60
    assert len(srv.hub.received("webhook")) == 60
    assert 1 < counting.most <= UNBATCHED_CONCURRENCY
