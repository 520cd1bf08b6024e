"""The governance façade against real stores (SQLite and the JSON file) and real emulators on loopback."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cavra.config import LoadedConfig, config_from_data
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.errors import ConfigError, ConflictError, InputError, NotFoundError
from cavra.governance import service as gov
from cavra.governance.events import PublicationRefused
from cavra.store import Store, open_store
from cavra.transport import Transport
from tests.governance.test_records import EXAMPLES, example

FAST = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.05)


@pytest.fixture(params=["sqlite", "json"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        st = open_store(str(tmp_path / "metadata.db"))
    else:
        st = open_store(metadata_json=str(tmp_path / "metadata.json"))
    with st:
        yield st


@pytest.fixture
async def emulators() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(providers=["webhook", "jamf"]) as srv:
        yield srv


@pytest.fixture
def config(emulators: EmulatorServer) -> LoadedConfig:
    data, env = emulators.demo_environment()
    return config_from_data(data, "test-connectors.json", environ=env)


def state(st: Store) -> tuple[int, list[tuple[str, list[dict[str, Any]]]]]:
    """Chain length and every plain record: what 'the store unchanged' compares."""
    kinds = (
        "integration",
        "promotion_execution",
        "rollback_execution",
        "endpoint_export",
        "endpoint_publication",
    )
    return st.verify_chain().count, [(k, st.list_records(k)) for k in kinds]


# --- records ---------------------------------------------------------------------------------------------
def test_register_and_get_records(store: Store) -> None:
    record = gov.register_record(store, "promotion_execution", example("promotion_execution"))
    assert gov.get_record(store, "promotion_execution", "rpe_prod") == record
    gov.register_record(store, "promotion-execution", example("promotion_execution") | {"status": "failed"})
    assert gov.get_record(store, "promotion_execution", "rpe_prod")["status"] == "failed"
    with pytest.raises(NotFoundError, match="promotion execution 'rpe_nope' not found"):
        gov.get_record(store, "promotion_execution", "rpe_nope")
    with pytest.raises(NotFoundError):
        gov.get_record(store, "rollback_execution", "rpe_prod")
    before = state(store)
    with pytest.raises(InputError, match="request body: field release"):
        gov.register_record(store, "promotion_execution", example("promotion_execution") | {"release": ""})
    assert state(store) == before


# --- release deliveries ----------------------------------------------------------------------------------
async def test_promotion_audit_by_id_is_stored_and_in_history(
    store: Store, config: LoadedConfig, emulators: EmulatorServer, transport: Transport
) -> None:
    gov.register_record(store, "promotion_execution", example("promotion_execution"))
    result = await gov.deliver_promotion_audit(
        store, config, "rpe_prod", provider="webhook", retries=1, transport=transport, policy=FAST
    )
    assert result["success"] is True
    assert result["metadata_kind"] == "release-connector-delivery"
    assert result["delivery_id"] == result["id"] and result["delivery_id"].startswith("dlv_")
    assert len(result["record_sha256"]) == 64
    assert (result["subject_kind"], result["subject_id"]) == ("promotion_execution", "rpe_prod")
    assert store.get_delivery(result["delivery_id"]) is not None

    received = emulators.hub.received("webhook")
    assert len(received) == 1 and b"cavra.release.promotion_audit" in received[0].body

    page = gov.connector_delivery_history(store, provider="webhook")
    assert page["total"] == 1 and page["items"][0]["delivery_id"] == result["delivery_id"]
    assert page["items"][0]["event_type"] == "cavra.release.promotion_audit"
    assert gov.endpoint_publication_history(store)["total"] == 0
    board = gov.connector_delivery_dashboard(store)
    assert board["totals"]["succeeded"] == 1 and board["alerts"] == []


async def test_rollback_failure_is_stored_and_alerts_until_delivered(
    store: Store, config: LoadedConfig, emulators: EmulatorServer, transport: Transport
) -> None:
    emulators.hub.add_fault("webhook", Fault(status=503, count=2))
    failed = await gov.deliver_rollback_execution(
        store,
        config,
        example("rollback_execution"),
        provider="webhook",
        retries=1,
        transport=transport,
        policy=FAST,
    )
    assert failed["success"] is False and failed["deliveries"][0]["attempt_count"] == 2
    assert gov.get_record(store, "rollback_execution", "rre_prod")["execution_id"] == "rre_prod"
    codes = {a["code"] for a in gov.connector_delivery_dashboard(store)["alerts"]}
    assert {"provider_delivery_failing", "rollback_delivery_failed"} <= codes
    assert gov.connector_delivery_history(store, success=False)["total"] == 1

    # the same request again re-arms the same job (its run failed) and delivers now
    assert failed["job"]["state"] == "queued" and len(emulators.hub.received("webhook")) == 2
    ok = await gov.deliver_rollback_execution(
        store, config, "rre_prod", provider="webhook", retries=1, transport=transport, policy=FAST
    )
    assert ok["success"] is True and ok["job"]["job_id"] == failed["job"]["job_id"]
    assert ok["delivery_id"] != failed["delivery_id"] and ok["job"]["state"] == "succeeded"
    assert ok["job"]["run"] == failed["job"]["run"] + 1 and len(emulators.hub.received("webhook")) == 3
    # and once it succeeded, the same request is the same job again: nothing is sent twice
    again = await gov.deliver_rollback_execution(
        store, config, "rre_prod", provider="webhook", retries=1, transport=transport, policy=FAST
    )
    assert again["delivery_id"] == ok["delivery_id"] and len(emulators.hub.received("webhook")) == 3
    codes = {a["code"] for a in gov.connector_delivery_dashboard(store)["alerts"]}
    assert not {"provider_delivery_failing", "rollback_delivery_failed"} & codes
    # re-delivering the same record keeps the event id (the providers' idempotency key)
    assert ok["event_id"] == failed["event_id"]


@pytest.mark.parametrize(
    ("execution", "provider", "error"),
    [
        ("rpe_unknown", "webhook", NotFoundError),
        (example("rollback_execution"), "webhook", InputError),
        (example("promotion_execution") | {"status": "?"}, "webhook", InputError),
        (example("promotion_execution"), "nosuch", InputError),
        (example("promotion_execution"), "splunk", ConfigError),
    ],
)
async def test_bad_input_leaves_the_store_unchanged(
    store: Store,
    config: LoadedConfig,
    emulators: EmulatorServer,
    transport: Transport,
    execution: Any,
    provider: str,
    error: type[Exception],
) -> None:
    before = state(store)
    with pytest.raises(error):
        await gov.deliver_promotion_audit(
            store, config, execution, provider=provider, retries=1, transport=transport, policy=FAST
        )
    with pytest.raises(InputError, match="--retries"):
        await gov.deliver_promotion_audit(
            store, config, example("promotion_execution"), provider="webhook", retries=99, transport=transport
        )
    assert state(store) == before
    assert emulators.hub.received() == []


# --- publication -----------------------------------------------------------------------------------------
@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    target = tmp_path / "export"
    shutil.copytree(EXAMPLES["endpoint_export"].parent, target)
    return target


async def test_publish_an_approved_export(
    store: Store, config: LoadedConfig, emulators: EmulatorServer, transport: Transport, export_dir: Path
) -> None:
    result = await gov.publish_endpoint_export(
        store, config, example("endpoint_export"), provider="jamf", retries=1, base_dir=export_dir,
        transport=transport, policy=FAST,
    )  # fmt: skip
    assert result["success"] is True, result["errors"]
    assert result["metadata_kind"] == "endpoint-management-publication-delivery"
    assert result["event_type"] == "cavra.endpoint_management.publication"
    publication = store.get_record("endpoint_publication", "eme_stable")
    assert publication is not None and publication["published"] is True
    assert publication["providers"]["jamf"]["delivery_id"] == result["delivery_id"]
    board = gov.endpoint_publication_dashboard(store)
    assert board["exports"] == {"total": 1, "published": 1, "unpublished": 0}


@pytest.mark.parametrize("problem", ["pending", "sha", "missing"])
async def test_refusals_are_recorded_and_nothing_is_sent(
    store: Store,
    config: LoadedConfig,
    emulators: EmulatorServer,
    transport: Transport,
    export_dir: Path,
    problem: str,
) -> None:
    manifest = example("endpoint_export")
    if problem == "pending":
        manifest["approval"] = {"status": "pending"}
    elif problem == "sha":
        (export_dir / "artifacts/runtime-policy.json").write_text("{}")
    else:
        (export_dir / "artifacts/cavra-runtime.sh").unlink()
    gov.register_record(store, "endpoint_export", manifest)
    with pytest.raises(PublicationRefused) as err:
        await gov.publish_endpoint_export(
            store, config, "eme_stable", provider="jamf", retries=1, base_dir=export_dir, transport=transport
        )
    assert isinstance(err.value, InputError)
    assert emulators.hub.received("jamf") == []
    delivery_id = err.value.delivery_id
    assert delivery_id is not None and delivery_id in str(err.value)
    stored = store.get_delivery(delivery_id)
    assert stored is not None and stored["success"] is False
    assert stored["metadata_kind"] == "endpoint-management-publication-delivery"
    assert stored["subject_id"] == "eme_stable"
    assert stored["errors"][0]["provider"] == "jamf" and err.value.reason in stored["errors"][0]["error"]
    page = gov.endpoint_publication_history(store, provider="jamf", success=False)
    assert page["total"] == 1 and page["items"][0]["attempt_count"] == 0
    publication = store.get_record("endpoint_publication", "eme_stable")
    assert publication is not None and publication["published"] is False
    assert store.verify_chain().ok


async def test_provider_not_meant_for_the_export_is_bad_input(
    store: Store, config: LoadedConfig, transport: Transport, export_dir: Path
) -> None:
    before = state(store)
    with pytest.raises(InputError, match="'webhook' is not one of them"):
        await gov.publish_endpoint_export(
            store, config, example("endpoint_export"), provider="webhook", retries=1, base_dir=export_dir
        )
    assert state(store) == before


# --- integrations ----------------------------------------------------------------------------------------
SPLUNKLIKE = {"integration_id": "hooks", "provider": "webhook", "category": "siem", "status": "active"}


def test_integration_crud(store: Store) -> None:
    created = gov.upsert_integration(store, {"integration_id": "hooks", "provider": "webhook"})
    assert created["category"] == "siem" and created["status"] == "active"
    assert created["health_status"] == "unknown" and created["created_at"]
    updated = gov.upsert_integration(store, SPLUNKLIKE | {"health_status": "healthy"})
    assert updated["health_status"] == "healthy" and updated["created_at"] == created["created_at"]
    assert [i["integration_id"] for i in gov.list_integrations(store)] == ["hooks"]
    assert gov.get_integration(store, "hooks")["provider"] == "webhook"
    gov.delete_integration(store, "hooks")
    with pytest.raises(NotFoundError):
        gov.get_integration(store, "hooks")
    with pytest.raises(NotFoundError):
        gov.delete_integration(store, "hooks")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (SPLUNKLIKE | {"category": "itsm"}, "category: 'itsm' does not match provider 'webhook'"),
        (SPLUNKLIKE | {"provider": "no-such-provider"}, "unknown provider 'no-such-provider'"),
        (SPLUNKLIKE | {"status": "paused"}, "field status"),
        (SPLUNKLIKE | {"health_status": "fine"}, "field health_status"),
        (SPLUNKLIKE | {"integration_id": "a b"}, "field integration_id"),
        (SPLUNKLIKE | {"last_delivery": {}}, "last_delivery"),
        (SPLUNKLIKE | {"extra": 1}, "field extra: unknown field"),
    ],
)
def test_integration_validation(store: Store, body: dict[str, Any], expected: str) -> None:
    with pytest.raises(InputError, match=expected.replace("(", r"\(")):
        gov.upsert_integration(store, body)
    assert gov.list_integrations(store) == []


async def test_deliver_through_an_integration(
    store: Store, config: LoadedConfig, emulators: EmulatorServer, transport: Transport
) -> None:
    event = json.loads((EXAMPLES["evidence_bundle"].parent / "siem-event.json").read_text())
    gov.upsert_integration(store, SPLUNKLIKE | {"status": "inactive"})
    with pytest.raises(ConflictError, match="'hooks' is inactive; only an active integration delivers"):
        await gov.deliver_integration(store, config, "hooks", event, retries=1, transport=transport)
    with pytest.raises(NotFoundError):
        await gov.deliver_integration(store, config, "nope", event, retries=1, transport=transport)
    assert store.verify_chain().count == 0

    gov.upsert_integration(store, SPLUNKLIKE)
    with pytest.raises(InputError, match="event_type"):
        await gov.deliver_integration(store, config, "hooks", {"x": 1}, retries=1, transport=transport)
    result = await gov.deliver_integration(
        store, config, "hooks", event, retries=1, transport=transport, policy=FAST
    )
    assert result["success"] is True and result["metadata_kind"] == "integration-delivery"
    assert result["integration_id"] == "hooks"
    history = gov.connector_delivery_history(store)
    assert history["total"] == 0  # integration deliveries are not release deliveries
    last = gov.get_integration(store, "hooks")["last_delivery"]
    assert last["delivery_id"] == result["delivery_id"] and last["success"] is True
    # an update by an operator keeps the last delivery
    assert gov.upsert_integration(store, SPLUNKLIKE)["last_delivery"] == last


async def test_integration_timeout_override(
    store: Store, config: LoadedConfig, emulators: EmulatorServer, transport: Transport
) -> None:
    gov.upsert_integration(store, SPLUNKLIKE)
    event = {"event_type": "cavra.test", "session_id": "s"}
    with pytest.raises(InputError, match="timeout_seconds"):
        await gov.deliver_integration(store, config, "hooks", event, retries=0, timeout_seconds=0)
    emulators.hub.add_fault("webhook", Fault(delay=2.0))
    started = time.monotonic()
    result = await gov.deliver_integration(
        store, config, "hooks", event, retries=0, timeout_seconds=0.3, transport=transport,
        policy=RetryPolicy(retries=0),
    )  # fmt: skip
    assert time.monotonic() - started < 1.5
    assert result["success"] is False and result["deliveries"][0]["attempt_count"] == 1
    assert gov.get_integration(store, "hooks")["last_delivery"]["success"] is False
