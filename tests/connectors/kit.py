"""The shared test kit every connector runs: events per category, emulator wiring, secrets of a target, and
the contract's recorded flows replayed through :class:`cavra.transport.MockTransport`.

Everything here is derived from each connector's ``ProviderSpec`` (docs/connectors/adding-a-provider.md):
``tests/leak/test_no_canary.py`` runs the canary leak check for every registered provider through
:data:`EMULATORS`, so a new connector is covered once its emulator writes a demo config entry."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from cavra.config import Target, target_from_mapping
from cavra.connectors.base import PreparedRequest, Response
from cavra.connectors.registry import PROVIDERS, registered
from cavra.delivery.engine import deliver_one
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.server import EmulatorServer
from cavra.transport import AiohttpTransport, SendOptions, Transport, TransportError
from tests.connectors.twelfth.connector import SPEC as TWELFTH

#: providers that exist only in the tests, registered (``registered(spec)``) for the test or the recording
#: that names them and unregistered after it, so no other test sees them
TEST_PROVIDERS = {TWELFTH.name: TWELFTH}


def kit_providers() -> list[str]:
    """Every provider the shared kit runs: the registered ones and the test-only ones."""
    return sorted({*PROVIDERS, *TEST_PROVIDERS})


@contextmanager
def available(provider: str) -> Iterator[None]:
    """``provider`` registered for the block when it is a test-only one (a built-in one always is)."""
    if provider in TEST_PROVIDERS and provider not in PROVIDERS:
        with registered(TEST_PROVIDERS[provider]):
            yield
    else:
        yield


class _Emulators(Mapping[str, tuple[list[str], str]]):
    """provider -> the emulators it needs (token issuers first) and the emulator that answers its
    deliveries, from its ``ProviderSpec`` (a provider registered in a test is here while it is registered)."""

    def __getitem__(self, provider: str) -> tuple[list[str], str]:
        spec = PROVIDERS[provider]
        return list(spec.emulators), spec.mount

    def __iter__(self) -> Iterator[str]:
        return iter(PROVIDERS)

    def __len__(self) -> int:
        return len(PROVIDERS)


EMULATORS: Mapping[str, tuple[list[str], str]] = _Emulators()


def takes_publications(provider: str) -> bool:
    """An endpoint-management provider: it takes the export's publication, not an evidence event."""
    return not PROVIDERS[provider].takes_event("cavra.evidence_bundle")


def evidence_event(event_id: str = "evt_kit_bundle") -> dict[str, Any]:
    return {
        "event_type": "cavra.evidence_bundle",
        "event_id": event_id,
        "session_id": "demo-session",
        "decision_count": 7,
        "blocked_count": 4,
        "approval_required_count": 1,
        "max_severity": "high",
    }


def publication_event(event_id: str = "evt_kit_publication") -> dict[str, Any]:
    content = b"#!/bin/sh\necho governed runtime\n"
    return {
        "event_type": "cavra.endpoint_management.publication",
        "event_id": event_id,
        "export_id": "eme_kit",
        "release": "2026.11.1",
        "channel": "stable",
        "approval": {"status": "approved", "approver": "release-board"},
        "artifacts": [
            {
                "name": "runtime-policy.sh",
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
                "content_base64": base64.b64encode(content).decode(),
            }
        ],
    }


def event_for(provider: str, event_id: str | None = None) -> dict[str, Any]:
    if takes_publications(provider):
        return publication_event(event_id or f"evt_kit_{provider}")
    return evidence_event(event_id or f"evt_kit_{provider}")


def target_for(server: EmulatorServer, provider: str, **extra: Any) -> tuple[Target, dict[str, str]]:
    """The target the emulator's demo config describes, and the secrets (env values) it holds."""
    config, env = server.demo_environment()
    raw = {**config["connectors"][provider], **extra}
    target = target_from_mapping(provider, raw, environ=env)
    used = {v for v in raw.values() if isinstance(v, str)}  # the variables this destination names
    url_secret = PROVIDERS[provider].url_secret  # the URL itself is the credential (Slack, Teams)
    secrets = {k: v for k, v in env.items() if k in used and (url_secret or not k.endswith("_URL"))}
    return target, secrets


# -- the contract: a recorded happy flow per provider, replayed through MockTransport ----------------------
# (tests/connectors/test_kit_contract.py). Kept apart from the leak helpers above.

#: steps that fetch a credential; the contract faults the first *write* after them (the delivery itself)
TOKEN_STEPS = frozenset({"token"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Flow:
    """One provider's happy delivery as the emulator answered it: the target and each exchange in order."""

    provider: str
    target: Target
    exchanges: tuple[tuple[PreparedRequest, Response], ...]

    @property
    def delivery_step(self) -> str:
        """The step that hands the event to the provider: the first write that is not a token request."""
        for request, _ in self.exchanges:
            if request.method in WRITE_METHODS and request.step not in TOKEN_STEPS:
                return request.step
        raise AssertionError(f"{self.provider}: no write step in {[r.step for r, _ in self.exchanges]}")

    def answer(self, step: str) -> Response:
        """The emulator's (first) answer to ``step``."""
        return next(resp for req, resp in self.exchanges if req.step == step)


class _Recorder:
    """A transport that forwards to a real one and keeps every exchange.

    With ``drop_step``, the first request of that step is not sent: it fails as a refused connection, so the
    connector's own recovery path (a recheck before writing again) is recorded against the emulator too.
    """

    def __init__(self, inner: Transport, drop_step: str | None = None) -> None:
        self.inner = inner
        self.drop_step = drop_step
        self.log: list[tuple[PreparedRequest, Response]] = []

    async def send(self, request: PreparedRequest, options: SendOptions) -> Response:
        if request.step == self.drop_step:
            self.drop_step = None
            raise TransportError("connect", "cannot connect: dropped by the kit's recorder")
        response = await self.inner.send(request, options)
        self.log.append((request, response))
        return response

    async def close(self) -> None:
        return None


async def _record(provider: str, real: Transport, drop_step: str | None) -> Flow:
    names, _ = EMULATORS[provider]
    async with EmulatorServer(providers=names) as srv:
        target, _secrets = target_for(srv, provider)
        recorder = _Recorder(real, drop_step)
        policy = RetryPolicy(retries=0 if drop_step is None else 1, base_delay=0.0, max_delay=0.0)
        d = await deliver_one(target, event_for(provider), policy=policy, transport=recorder)
        assert d.success, f"{provider}: the recorded flow failed: {d.error}"
        return Flow(provider, target, tuple(recorder.log))


async def record_flows(providers: list[str]) -> dict[str, Flow]:
    """Deliver to each provider's emulator over loopback and record the exchanges: once straight through,
    once with the delivery step's first try lost (which records the steps a retry takes)."""
    flows: dict[str, Flow] = {}
    async with AiohttpTransport() as real:
        for provider in providers:
            with available(provider):
                happy = await _record(provider, real, None)
                retried = await _record(provider, real, happy.delivery_step)
            seen = {req.step for req, _ in happy.exchanges}
            extra = tuple((req, resp) for req, resp in retried.exchanges if req.step not in seen)
            flows[provider] = Flow(provider, happy.target, happy.exchanges + extra)
    return flows


class Replay:
    """A MockTransport handler answering each step as the emulator did, with one fault at ``fault_step``.

    The fault (a status answer, or a :class:`TransportError` to raise) is given the first time the step is
    asked; every other request gets the recorded answer of its step (the last one once they run out). A
    step that was never recorded fails the test (the connector took a path the kit does not know).
    """

    def __init__(
        self, flow: Flow, fault_step: str | None = None, fault: Response | TransportError | None = None
    ) -> None:
        self.answers: dict[str, list[Response]] = {}
        for request, response in flow.exchanges:
            self.answers.setdefault(request.step, []).append(response)
        self.fault_step = fault_step
        self.fault: Response | TransportError | None = fault
        self.asked: list[str] = []

    def __call__(self, request: PreparedRequest) -> Response:
        self.asked.append(request.step)
        if request.step == self.fault_step and self.fault is not None:
            fault, self.fault = self.fault, None
            if isinstance(fault, TransportError):
                raise fault
            return fault
        queue = self.answers.get(request.step)
        if not queue:
            raise AssertionError(f"step {request.step!r} was never recorded")
        return queue.pop(0) if len(queue) > 1 else queue[0]


class Sleeps:
    """A sleep that only records how long the engine asked to wait (no timers: the contract is instant)."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def with_status(response: Response, status: int, headers: dict[str, str] | None = None) -> Response:
    """The recorded answer with another status (and headers, when given)."""
    return replace(response, status=status, headers=headers if headers is not None else response.headers)
