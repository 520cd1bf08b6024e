"""The store-at-scale dataset: delivery records with a realistic spread, and how they get into a store.

Records are real ``cavra.connector.delivery.v1`` records: :class:`~cavra.delivery.record.ProviderDelivery`
and :class:`~cavra.delivery.record.Attempt` values with request evidence made by the
:class:`~cavra.redaction.Redactor`, turned into records by ``build_record``. The spread, fixed by a seed:

* metadata kinds: 55 % release connector deliveries, 35 % integration deliveries, 10 % endpoint
  publications (to jamf, intune or linux only);
* providers weighted as a SIEM-heavy installation uses them; 8 % of release records go to two providers;
* outcomes: about 92 % delivered (15 % of them after a retry), 7 % failed (2-3 attempts), 1 % pending,
  with outage stretches (a provider failing for a run of consecutive deliveries);
* times spread evenly over the 90 days before the run, in append order.

The first 20,000 records are built one by one through the record classes; the rest reuse them in turn
(``_restamp``), each with its own event id, times (shifted by the same amount; each template's times
are parsed once), delivery keys, remote ids and subject; the unchanged parts (request evidence, texts)
are shared with the template, not copied: ~11 µs a record, ~12 s of a million-record build. (The output is
the same as before the times were parsed once, so ``DATASET_VERSION`` is unchanged.)

:mod:`bench.loaders` writes them through the store's own batch append (``append_batch``: documents,
hashes, index rows, aggregates and chain head, exactly as ``append_delivery`` and worker completions
write them), 20,000 records per transaction, with the garbage collector paused and, for the bench's
throwaway SQLite file, no rollback journal and no syncing; the chain is valid (``verify_chain`` passes on
it, as the quick bench checks). ``bench.store_scale`` caches the built file, and upgrades a file cached at
an older schema revision with the store's migrations instead of building it again.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import BENCH_TOKEN, sample_event

SEED = 20251128
DATASET_VERSION = 1
SIEM = ("splunk", "webhook", "datadog", "sentinel")
PROVIDER_WEIGHTS = {
    "splunk": 22,
    "webhook": 18,
    "datadog": 12,
    "sentinel": 10,
    "slack": 12,
    "teams": 8,
    "jira": 7,
    "servicenow": 6,
}
ENDPOINT = ("jamf", "intune", "linux")
URLS = {
    "splunk": "https://splunk.example.com:8088/services/collector/event",
    "webhook": "https://hooks.example.com/cavra/evidence",
    "datadog": "https://http-intake.logs.datadoghq.com/api/v2/logs",
    "sentinel": "https://dce.westeurope.ingest.monitor.azure.com/dataCollectionRules/dcr-1/streams/Custom",
    "slack": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
    "teams": "https://example.webhook.office.com/webhookb2/abc/IncomingWebhook/def",
    "jira": "https://example.atlassian.net/rest/api/3/issue",
    "servicenow": "https://example.service-now.com/api/now/table/change_request",
    "jamf": "https://example.jamfcloud.com/api/v1/packages",
    "intune": "https://graph.microsoft.com/beta/deviceAppManagement/mobileApps",
    "linux": "https://awx.example.com/api/v2/job_templates/7/launch/",
}
CATEGORY = {p: "siem" for p in SIEM} | {
    "slack": "chatops",
    "teams": "chatops",
    "jira": "itsm",
    "servicenow": "itsm",
    "jamf": "endpoint",
    "intune": "endpoint",
    "linux": "endpoint",
}


@dataclass(frozen=True)
class Planned:
    """One record to store and how to index it."""

    record: dict[str, Any]
    metadata_kind: str
    subject_kind: str | None
    subject_id: str | None
    integration_id: str | None
    created_at: datetime


class Generator:
    """Deterministic stream of :class:`Planned` records ending at ``end`` (default: now)."""

    def __init__(self, count: int, *, end: datetime | None = None, seed: int = SEED) -> None:
        from cavra.redaction import Redactor

        self.count = count
        self.end = end or datetime.now(UTC)
        self.start = self.end - timedelta(days=90)
        self.rng = random.Random(seed)
        self.redactor = Redactor([BENCH_TOKEN])
        self._outage: dict[str, int] = {}
        self._providers = list(PROVIDER_WEIGHTS)
        self._weights = list(PROVIDER_WEIGHTS.values())
        self._requests: dict[str, Any] = {}
        self._texts: dict[str, Any] = {}

    def _text(self, text: str) -> Any:
        """The redacted form of a text (the redactor's answer, kept: the texts repeat)."""
        found = self._texts.get(text)
        if found is None:
            found = self._texts[text] = self.redactor.text(text)
        return found

    def _request(self, provider: str) -> Any:
        found = self._requests.get(provider)
        if found is None:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_TOKEN}"}
            found = self._requests[provider] = self.redactor.request("POST", URLS[provider], headers)
        return found

    def _status(self, provider: str) -> str:
        left = self._outage.get(provider, 0)
        if left > 0:
            self._outage[provider] = left - 1
            return "failed"
        roll = self.rng.random()
        if roll < 0.0004:  # an outage begins: the next deliveries to this provider fail
            self._outage[provider] = self.rng.randint(5, 60)
            return "failed"
        if roll < 0.065:
            return "failed"
        if roll < 0.075 and CATEGORY[provider] in ("itsm", "endpoint"):
            return "pending"
        return "delivered"

    def _delivery(self, provider: str, when: datetime, event_id: str) -> Any:
        from cavra.delivery.record import Attempt, ProviderDelivery

        status = self._status(provider)
        if status == "delivered":
            tries = 2 if self.rng.random() < 0.15 else 1
        elif status == "failed":
            tries = self.rng.choice((1, 2, 3))
        else:
            tries = 1
        request = self._request(provider)
        attempts = []
        t = when
        for n in range(1, tries + 1):
            last = n == tries
            ok = last and status != "failed"
            code = (200 if provider != "datadog" else 202) if ok else (503 if not last else 500)
            if status == "pending" and last:
                code = 202
            ms = self.rng.uniform(20, 400)
            attempts.append(
                Attempt(
                    number=n,
                    step="send",
                    started_at=t,
                    duration_ms=ms,
                    verdict="delivered" if ok and status == "delivered" else "pending" if ok else "retry",
                    reason=self._text(f"HTTP {code}"),
                    request=request,
                    status_code=code,
                    response_excerpt=self._text('{"code":0}' if ok else "Service Unavailable"),
                    waited_ms=0.0 if last else 500.0,
                )
            )
            t += timedelta(milliseconds=ms + (0 if last else 500))
        error = None
        if status == "failed":
            error = self._text(f"gave up after {tries} attempts: HTTP 500 from {provider}")
        elif status == "pending":
            error = self._text("accepted, processing not confirmed yet")
        return ProviderDelivery(
            provider=provider,
            category=CATEGORY[provider],
            delivery_key=f"dk_{event_id[-24:]}{provider}",
            started_at=when,
            completed_at=t,
            status=status,
            attempts=attempts,
            error=error,
            remote_id=self.redactor.text(f"{provider}-{event_id[-8:]}") if status == "delivered" else None,
        )

    def __iter__(self) -> Iterator[Planned]:
        """The first :data:`TEMPLATES` records are built through the record classes; later ones reuse
        them in turn with their own event id, times and subject (:func:`_restamp`: the same spread at
        ~11 µs a record)."""
        span = (self.end - self.start).total_seconds()
        templates: list[_Template] = []
        for i in range(self.count):
            when = self.start + timedelta(seconds=span * (i + 1) / (self.count + 1))
            if i < TEMPLATES:
                built = self._build(i, when)
                templates.append(_Template.of(built))
                yield built
            else:
                yield _restamp(templates[i % TEMPLATES], i, when)

    def _build(self, i: int, when: datetime) -> Planned:
        from cavra.delivery.record import build_record
        from cavra.store import INTEGRATION_DELIVERY, PUBLICATION_DELIVERY, RELEASE_DELIVERY

        rng = self.rng
        roll = rng.random()
        event = sample_event(i, kind=0 if roll >= 0.55 else (2 if rng.random() < 0.12 else 1))
        event["generated_at"] = _z(when)
        subject_kind = subject_id = integration_id = None
        if roll < 0.55:
            kind = RELEASE_DELIVERY
            providers = [rng.choices(self._providers, self._weights)[0]]
            if rng.random() < 0.08:
                providers.append("slack" if providers[0] != "slack" else "splunk")
            subject_kind = (
                "rollback_execution" if "rollback" in event["event_type"] else "promotion_execution"
            )
            subject_id = f"{'rre' if subject_kind == 'rollback_execution' else 'rpe'}_{i:010d}"
        elif roll < 0.90:
            kind = INTEGRATION_DELIVERY
            providers = [rng.choices(self._providers, self._weights)[0]]
            integration_id = f"int-{providers[0]}-{rng.randint(1, 3)}"
            subject_kind, subject_id = "integration", integration_id
        else:
            kind = PUBLICATION_DELIVERY
            providers = [rng.choice(ENDPOINT)]
            event["event_type"] = "cavra.endpoint_management.publication"
            subject_kind, subject_id = "endpoint_export", f"eme_{i // 3:010d}"
        items = [self._delivery(p, when, event["event_id"]) for p in providers]
        record = build_record(event, items, generated_at=when)
        return Planned(record, kind, subject_kind, subject_id, integration_id, when)


#: records built through the record classes before the generator reuses them
TEMPLATES = 20_000


@dataclass(frozen=True)
class _Template:
    """A record built through the record classes, with its times parsed once for :func:`_restamp`."""

    planned: Planned
    #: per provider delivery: its completion time and its attempts' start times (as built)
    times: tuple[tuple[datetime, tuple[datetime, ...]], ...]

    @classmethod
    def of(cls, planned: Planned) -> _Template:
        return cls(
            planned,
            tuple(
                (_parse(item["completed_at"]), tuple(_parse(a["started_at"]) for a in item["attempts"]))
                for item in planned.record["deliveries"]
            ),
        )


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _restamp(tpl: _Template, i: int, when: datetime) -> Planned:
    """A copy of a template record for record ``i`` at ``when``: only what differs is copied (the event
    id, the times, shifted by the same amount, the delivery keys, remote ids and subject ids); the rest
    (request evidence, texts) is shared with the template."""
    base = tpl.planned
    old_tail = str(base.record["event_id"])[-8:]
    event_id = f"evt_bench_{i:09d}"
    tail = event_id[-8:]
    shift = when - base.created_at
    stamp = _z(when)
    items = []
    for item, (completed, starts) in zip(base.record["deliveries"], tpl.times, strict=True):
        remote = item.get("remote_id")
        items.append(
            item
            | {
                "started_at": stamp,
                "completed_at": _z(completed + shift),
                "delivery_key": f"dk_{event_id[-24:]}{item['provider']}",
                "remote_id": None if remote is None else str(remote).replace(old_tail, tail),
                "attempts": [
                    a | {"started_at": _z(t + shift)} for a, t in zip(item["attempts"], starts, strict=True)
                ],
            }
        )
    record = base.record | {"event_id": event_id, "generated_at": stamp, "deliveries": items}
    subject_id = base.subject_id
    if base.subject_kind in ("promotion_execution", "rollback_execution"):
        subject_id = f"{str(subject_id)[:4]}{i:010d}"
    elif base.subject_kind == "endpoint_export":
        subject_id = f"eme_{i // 3:010d}"
    return Planned(record, base.metadata_kind, base.subject_kind, subject_id, base.integration_id, when)
