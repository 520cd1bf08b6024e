"""``cavra release``: the seed's commands as written (real processes), failures, alerts, refusals, bad input.

The webhook and Jamf emulators run in-process on a background thread (tests/cli/release_helpers.py);
the seed's commands run as real ``cavra`` processes, the other cases through Typer's CliRunner.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import jsonschema
import pytest
from typer.testing import CliRunner

from cavra.cli.main import app
from cavra.store.jsonfile import JsonFileStore
from tests.cli.conftest import run_cavra
from tests.cli.release_helpers import (
    MANIFEST,
    METADATA,
    PROMOTION,
    ROLLBACK,
    ThreadedEmulators,
    make_project,
    secret_values,
)

SCHEMA = json.loads((Path(__file__).parents[2] / "src/cavra/schemas/connector-delivery.v1.json").read_text())
CONFIG = ".cavra/connectors.json"


@pytest.fixture(scope="module")
def emulators() -> Iterator[ThreadedEmulators]:
    emu = ThreadedEmulators(["webhook", "jamf"]).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def project(
    tmp_path: Path, emulators: ThreadedEmulators, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, str]]:
    emulators.reset()
    env = make_project(tmp_path, emulators)
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CAVRA_STORE_URL", raising=False)
    monkeypatch.delenv("CAVRA_CONNECTOR_CONFIG", raising=False)
    return tmp_path, env


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def deliver(command: str, path: str, provider: str, *extra: str) -> Any:
    return cli(
        "release", command, path, "--config", CONFIG, "--provider", provider, "--retries", "1",
        "--metadata-json", METADATA, *extra,
    )  # fmt: skip


def assert_no_secrets(env: dict[str, str], *texts: str) -> None:
    for secret in secret_values(env):
        for text in texts:
            assert secret not in text


# --- the seed, as written -------------------------------------------------------------------------------
def test_seed_release_commands_as_written(
    project: tuple[Path, dict[str, str]], emulators: ThreadedEmulators
) -> None:
    cwd, env = project
    outputs: list[str] = []

    def run(*args: str) -> Any:
        result = run_cavra(*args, cwd=cwd, env=env)
        outputs.extend([result.stdout, result.stderr])
        return result

    promo = run(
        "release", "deliver-promotion-audit",
        ".cavra/release/rollout-promotion-execution/rollout-promotion-execution.json",
        "--config", ".cavra/connectors.json",
        "--provider", "webhook",
        "--retries", "1",
        "--metadata-json", ".cavra/evidence/metadata.json",
    )  # fmt: skip
    assert promo.returncode == 0, promo.stderr + promo.stdout
    assert "webhook" in promo.stdout and "delivered" in promo.stdout
    assert "release-connector-delivery" in promo.stdout

    rollback = run(
        "release", "deliver-rollback-execution",
        ".cavra/release/rollout-rollback-execution/rollout-rollback-execution.json",
        "--config", ".cavra/connectors.json",
        "--provider", "webhook",
        "--retries", "1",
        "--metadata-json", ".cavra/evidence/metadata.json",
    )  # fmt: skip
    assert rollback.returncode == 0, rollback.stderr + rollback.stdout

    export = run(
        "release", "deliver-endpoint-export",
        ".cavra/release/endpoint-management-export/endpoint-management-export-manifest.json",
        "--config", ".cavra/connectors.json",
        "--provider", "jamf",
        "--retries", "1",
        "--metadata-json", ".cavra/evidence/metadata.json",
    )  # fmt: skip
    assert export.returncode == 0, export.stderr + export.stdout
    assert "jamf" in export.stdout and "delivered" in export.stdout

    # what the providers received
    hooks = [json.loads(r.body) for r in emulators.received("webhook")]
    types = [json.dumps(h) for h in hooks]
    assert len(hooks) == 2
    assert "cavra.release.promotion_audit" in types[0] and "rpe_prod" in types[0]
    assert "cavra.release.rollback_execution" in types[1] and "rre_prod" in types[1]
    jamf_posts = [
        r for r in emulators.received("jamf") if r.method == "POST" and "osxconfigurationprofiles" in r.path
    ]
    assert len(jamf_posts) == 1 and b"eme_stable" in jamf_posts[0].body

    # the seed's review commands, as written
    hist = run(
        "release", "connector-delivery-history", "--metadata-json", ".cavra/evidence/metadata.json",
        "--provider", "webhook", "--no-success",
    )  # fmt: skip
    assert hist.returncode == 0 and "no provider deliveries match" in hist.stdout
    dash = run("release", "connector-delivery-dashboard", "--metadata-json", ".cavra/evidence/metadata.json")
    assert dash.returncode == 0 and "webhook" in dash.stdout and "alerts: none" in dash.stdout
    pub_hist = run(
        "release", "endpoint-publication-history", "--metadata-json", ".cavra/evidence/metadata.json",
        "--provider", "jamf", "--no-success",
    )  # fmt: skip
    assert pub_hist.returncode == 0 and "no provider deliveries match" in pub_hist.stdout
    pub_dash = run(
        "release", "endpoint-publication-dashboard", "--metadata-json", ".cavra/evidence/metadata.json"
    )
    assert pub_dash.returncode == 0 and "1 published" in pub_dash.stdout

    # the records are in history and the dashboard with metadata_kind=release-connector-delivery
    page = cli_json(
        "release", "connector-delivery-history", "--metadata-json", METADATA, "--provider", "webhook"
    )
    assert page["total"] == 2
    assert {i["metadata_kind"] for i in page["items"]} == {"release-connector-delivery"}
    assert {i["subject_id"] for i in page["items"]} == {"rpe_prod", "rre_prod"}
    assert all(i["success"] and i["status_code"] == 200 for i in page["items"])
    board = cli_json("release", "connector-delivery-dashboard", "--metadata-json", METADATA)
    assert board["metadata_kinds"] == ["release-connector-delivery"]
    assert board["totals"]["deliveries"] == 2 and board["totals"]["succeeded"] == 2
    assert board["alerts"] == [] and board["status"] == "ok"
    pubs = cli_json("release", "endpoint-publication-history", "--metadata-json", METADATA)
    assert [i["metadata_kind"] for i in pubs["items"]] == ["endpoint-management-publication-delivery"]
    assert pubs["items"][0]["provider"] == "jamf" and pubs["items"][0]["success"] is True

    # stored documents are valid delivery records, and no secret is anywhere
    metadata_text = (cwd / METADATA).read_text()
    for doc in json.loads(metadata_text)["deliveries"]:
        jsonschema.validate(doc, SCHEMA)
    assert_no_secrets(env, metadata_text, *outputs)


def test_json_output_is_the_stored_record(project: tuple[Path, dict[str, str]]) -> None:
    result = deliver("deliver-promotion-audit", PROMOTION, "webhook", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    jsonschema.validate(record, SCHEMA)
    assert record["metadata_kind"] == "release-connector-delivery"
    assert record["delivery_id"] == record["id"] and len(record["record_sha256"]) == 64
    assert record["subject_kind"] == "promotion_execution" and record["subject_id"] == "rpe_prod"
    assert record["event_type"] == "cavra.release.promotion_audit"
    headers = record["deliveries"][0]["request"]["headers"]
    assert "webhook-signature" in {k.lower() for k in headers}


# --- failures and alerts --------------------------------------------------------------------------------
def _alerts(kind: str, code: str) -> list[dict[str, Any]]:
    board = cli_json("release", kind, "--metadata-json", METADATA)
    return [a for a in board["alerts"] if a["code"] == code]


def test_failed_deliveries_raise_alerts_that_clear_after_success(
    project: tuple[Path, dict[str, str]], emulators: ThreadedEmulators
) -> None:
    _, env = project
    emulators.fault("webhook", status=503, count=2)
    failed = deliver("deliver-rollback-execution", ROLLBACK, "webhook")
    assert failed.exit_code == 1
    assert "503" in failed.stdout and "failed" in failed.stdout
    assert len(emulators.received("webhook")) == 2  # first attempt and one retry

    page = cli_json(
        "release", "connector-delivery-history", "--metadata-json", METADATA, "--provider", "webhook",
        "--no-success",
    )  # fmt: skip
    assert page["total"] == 1
    item = page["items"][0]
    assert item["success"] is False and item["status_code"] == 503 and item["attempt_count"] == 2
    assert item["event_type"] == "cavra.release.rollback_execution"

    failing = _alerts("connector-delivery-dashboard", "provider_delivery_failing")
    assert [a["provider"] for a in failing] == ["webhook"]
    rollback_alerts = _alerts("connector-delivery-dashboard", "rollback_delivery_failed")
    assert rollback_alerts and rollback_alerts[0]["level"] == "critical"
    # the alert names the rollback execution, not the event's hash, and links its record and history
    assert rollback_alerts[0]["message"].startswith("rollback execution rre_prod was not delivered")
    assert rollback_alerts[0]["subject_id"] == "rre_prod" and rollback_alerts[0]["delivery_id"]
    assert rollback_alerts[0]["history"] == {"event_id": item["event_id"], "provider": "webhook"}
    shown = cli("release", "connector-delivery-dashboard", "--metadata-json", METADATA)
    assert "CRITICAL" in shown.stdout and "rollback_delivery_failed" in shown.stdout
    assert "rollback execution rre_prod" in " ".join(shown.stdout.split())

    ok = deliver("deliver-rollback-execution", ROLLBACK, "webhook")
    assert ok.exit_code == 0, ok.output
    assert _alerts("connector-delivery-dashboard", "provider_delivery_failing") == []
    assert _alerts("connector-delivery-dashboard", "rollback_delivery_failed") == []
    successes = cli_json("release", "connector-delivery-history", "--metadata-json", METADATA, "--success")
    assert successes["total"] == 1
    assert_no_secrets(env, failed.output, ok.output, (project[0] / METADATA).read_text())


def test_history_filters_and_paging(project: tuple[Path, dict[str, str]]) -> None:
    assert deliver("deliver-promotion-audit", PROMOTION, "webhook").exit_code == 0
    assert deliver("deliver-rollback-execution", ROLLBACK, "webhook").exit_code == 0
    base = ("release", "connector-delivery-history", "--metadata-json", METADATA)
    by_type = cli_json(*base, "--event-type", "cavra.release.rollback_execution")
    assert [i["subject_id"] for i in by_type["items"]] == ["rre_prod"]
    first = cli_json(*base, "--limit", "1")
    assert first["count"] == 1 and first["total"] == 2 and first["next_cursor"]
    second = cli_json(*base, "--limit", "1", "--cursor", first["next_cursor"])
    assert second["items"][0]["delivery_id"] != first["items"][0]["delivery_id"]
    assert second["next_cursor"] is None
    assert cli_json(*base, "--since", "2999-01-01T00:00:00Z")["total"] == 0
    assert cli_json(*base, "--until", "2000-01-01T00:00:00Z")["total"] == 0
    bad = cli(*base, "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.stderr


# --- endpoint-management publication refusals -----------------------------------------------------------
def _manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / MANIFEST).read_text())
    return data


def test_publication_refusals_are_recorded_as_failed_deliveries(
    project: tuple[Path, dict[str, str]], emulators: ThreadedEmulators
) -> None:
    root, _ = project
    export_dir = (root / MANIFEST).parent

    pending = _manifest(root) | {"export_id": "eme_pending", "approval": {"status": "pending"}}
    (export_dir / "pending.json").write_text(json.dumps(pending))
    refused = deliver("deliver-endpoint-export", str(export_dir / "pending.json"), "jamf")
    assert refused.exit_code == 2
    assert "eme_pending: publication refused: approval is 'pending'" in refused.stderr

    (export_dir / "artifacts/cavra-runtime.sh").write_text("#!/bin/sh\necho tampered\n")
    mismatch = deliver("deliver-endpoint-export", MANIFEST, "jamf")
    assert mismatch.exit_code == 2
    assert "artifact cavra-runtime.sh: sha256 of artifacts/cavra-runtime.sh" in mismatch.stderr

    (export_dir / "artifacts/runtime-policy.json").unlink()
    missing = deliver("deliver-endpoint-export", MANIFEST, "jamf")
    assert missing.exit_code == 2
    assert "artifact runtime-policy.json: file artifacts/runtime-policy.json not found" in missing.stderr

    assert emulators.received("jamf") == []  # nothing was sent
    page = cli_json(
        "release", "endpoint-publication-history", "--metadata-json", METADATA, "--provider", "jamf",
        "--no-success",
    )  # fmt: skip
    assert page["total"] == 3
    errors = [i["error"] for i in page["items"]]
    assert "approval is 'pending'" in errors[2] and "sha256" in errors[1] and "not found" in errors[0]
    assert {i["attempt_count"] for i in page["items"]} == {0}
    assert {i["metadata_kind"] for i in page["items"]} == {"endpoint-management-publication-delivery"}
    for message, item in zip((missing, mismatch, refused), page["items"], strict=True):
        assert item["delivery_id"] in message.stderr
    board = cli_json("release", "endpoint-publication-dashboard", "--metadata-json", METADATA)
    assert board["exports"] == {"total": 2, "published": 0, "unpublished": 2}
    assert any(a["code"] == "provider_delivery_failing" for a in board["alerts"])


# --- bad input: exit 2, one line, store unchanged -------------------------------------------------------
def _snapshot(root: Path) -> bytes | None:
    path = root / METADATA
    return path.read_bytes() if path.exists() else None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("deliver-promotion-audit", ROLLBACK, "webhook"), "this is a rollback execution"),
        (("deliver-rollback-execution", PROMOTION, "webhook"), "this is a promotion execution"),
        (("deliver-promotion-audit", "missing.json", "webhook"), "missing.json: file not found"),
        (("deliver-promotion-audit", PROMOTION, "nosuch"), "unknown provider 'nosuch'"),
        (("deliver-promotion-audit", PROMOTION, "splunk"), "provider 'splunk' is not configured"),
        (("deliver-endpoint-export", MANIFEST, "webhook"), "'webhook' is not one of them"),
    ],
)
def test_bad_input_exits_2_and_leaves_the_store_unchanged(
    project: tuple[Path, dict[str, str]],
    emulators: ThreadedEmulators,
    args: tuple[str, str, str],
    expected: str,
) -> None:
    root, _ = project
    assert deliver("deliver-promotion-audit", PROMOTION, "webhook").exit_code == 0
    before = _snapshot(root)
    result = deliver(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert _snapshot(root) == before
    assert len(emulators.received("webhook")) == 1


def test_schema_errors_name_the_file_and_field(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    record = json.loads((root / PROMOTION).read_text())
    del record["release"]
    record["gates"][1]["status"] = "maybe"
    (root / "bad.json").write_text(json.dumps(record))
    result = deliver("deliver-promotion-audit", "bad.json", "webhook")
    assert result.exit_code == 2
    assert "bad.json: field release: Field required" in result.stderr
    assert "field gates[1].status" in result.stderr
    assert _snapshot(root) is None


def test_store_problems_exit_2(
    project: tuple[Path, dict[str, str]], emulators: ThreadedEmulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = project
    (root / METADATA).write_text('{"format": "cavra.evidence.metadata.v1", "deliveries": [')
    corrupt = deliver("deliver-promotion-audit", PROMOTION, "webhook")
    assert corrupt.exit_code == 2 and "metadata.json" in corrupt.stderr
    assert (root / METADATA).read_text().endswith("[")
    history = cli("release", "connector-delivery-history", "--metadata-json", METADATA)
    assert history.exit_code == 2

    (root / METADATA).unlink()
    assert deliver("deliver-promotion-audit", PROMOTION, "webhook").exit_code == 0
    before = _snapshot(root)
    monkeypatch.setattr(JsonFileStore.__init__, "__kwdefaults__", {"lock_timeout": 0.2})
    with filelock.FileLock(str(root / METADATA) + ".lock"):
        locked = deliver("deliver-rollback-execution", ROLLBACK, "webhook")
    assert locked.exit_code == 2 and "locked by another process" in locked.stderr
    assert _snapshot(root) == before
    assert len(emulators.received("webhook")) == 1  # the locked store stopped it before anything was sent

    both = cli("release", "connector-delivery-dashboard", "--metadata-json", "x.json", "--store", "y.db")
    assert both.exit_code == 2 and "not both" in both.stderr

    pg = "postgresql://cavra:pg-Secret-Pw-9@127.0.0.1:9/cavra?connect_timeout=2"
    unreachable = cli(
        "release",
        "deliver-promotion-audit",
        PROMOTION,
        "--config",
        CONFIG,
        "--provider",
        "webhook",
        "--store",
        pg,
    )
    assert unreachable.exit_code == 2
    assert "pg-Secret-Pw-9" not in unreachable.output + unreachable.stderr


def test_default_store_is_sqlite_under_dot_cavra(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    result = cli("release", "deliver-promotion-audit", PROMOTION, "--config", CONFIG, "--provider", "webhook")
    assert result.exit_code == 0, result.output
    assert (root / ".cavra/evidence/metadata.db").exists()
    page = cli_json("release", "connector-delivery-history")
    assert page["total"] == 1 and page["items"][0]["metadata_kind"] == "release-connector-delivery"
    sqlite = cli_json(
        "release", "connector-delivery-history", "--store", f"sqlite:///{root}/.cavra/evidence/metadata.db"
    )
    assert sqlite["total"] == 1
