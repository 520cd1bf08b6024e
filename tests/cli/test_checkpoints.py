"""``cavra evidence checkpoint`` and ``cavra evidence verify --checkpoint/--witness``: exported and
SIEM-witnessed checkpoints catch what the order-only chain cannot (a deleted tail with a rewritten head,
records rewritten with recomputed hashes); without a key ``verify`` says it checks order only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cavra.cli.main import app
from cavra.store import Store, open_store
from tests.cli.release_helpers import ThreadedEmulators, make_project
from tests.store.conftest import make_record
from tests.store.tamper import delete_tail, forge_session, rewrite_from

STORES = [("--store", "evidence.db"), ("--metadata-json", "metadata.json")]
HMAC_KEY = "fedcba9876543210" * 4


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def open_args(args: tuple[str, str]) -> Store:
    return open_store(args[1]) if args[0] == "--store" else open_store(metadata_json=args[1])


def fill(args: tuple[str, str], n: int, start: int = 0) -> None:
    with open_args(args) as store:
        for i in range(start, start + n):
            store.append_delivery(make_record(event_id=f"evt-{i}"), metadata_kind="integration-delivery")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CAVRA_CHECKPOINT_KEY", "CAVRA_CHECKPOINT_KEY_FILE", "CAVRA_CHECKPOINT_PUBLIC_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    key = Ed25519PrivateKey.generate()
    (tmp_path / "private.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "public.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return tmp_path


@pytest.mark.parametrize("args", STORES)
def test_verify_without_a_key_says_it_checks_order_only(project: Path, args: tuple[str, str]) -> None:
    fill(args, 2)
    result = cli("evidence", "verify", *args)
    assert result.exit_code == 0, result.output
    assert "chain intact (order only)" in result.stdout and "not that they are authentic" in result.stdout
    report = json.loads(cli("evidence", "verify", *args, "--json").stdout)
    assert report["mode"] == "order-only" and report["authenticity"].startswith("order only:")
    assert report["keys"] == [] and report["checkpoints"] == []


@pytest.mark.parametrize("args", STORES)
def test_a_deleted_tail_fails_against_the_exported_checkpoint(
    project: Path, args: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY_FILE", "private.pem")
    fill(args, 5)
    exported = cli("evidence", "checkpoint", *args, "--output", "kept/cp.json")
    assert exported.exit_code == 0, exported.output
    assert "checkpoint #5" in exported.stdout and "wrote kept/cp.json" in exported.stdout
    saved = json.loads(Path("kept/cp.json").read_text())
    assert saved["schema_version"] == "cavra.evidence.checkpoint.v1" and saved["count"] == 5
    with open_args(args) as store:
        delete_tail(store, 3)
    # the verifier holds only the public key
    monkeypatch.delenv("CAVRA_CHECKPOINT_KEY_FILE")
    assert cli("evidence", "verify", *args).exit_code == 0  # order only: what verify said before
    monkeypatch.setenv("CAVRA_CHECKPOINT_PUBLIC_KEY_FILE", "public.pem")
    result = cli("evidence", "verify", *args, "--checkpoint", "kept/cp.json")
    assert result.exit_code == 1, result.output
    assert "chain broken:" in result.stderr and "record #4 is missing" in result.stderr
    report = json.loads(cli("evidence", "verify", *args, "--checkpoint", "kept/cp.json", "--json").stdout)
    assert report["ok"] is False and report["mode"] == "signed"
    assert report["first_bad"]["reason"] == "missing/reordered" and report["first_bad"]["sequence"] == 4
    assert [c["ok"] for c in report["checkpoints"]] == [False, False]


@pytest.mark.parametrize("args", STORES)
def test_rewritten_records_fail_and_name_the_first_index(
    project: Path, args: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY", HMAC_KEY)
    fill(args, 3)
    assert cli("evidence", "checkpoint", *args, "--output", "at3.json").exit_code == 0
    fill(args, 3, start=3)
    assert cli("evidence", "verify", *args, "--checkpoint", "at3.json").exit_code == 0
    with open_args(args) as store:
        rewrite_from(store, 5, forge_session)
    result = cli("evidence", "verify", *args, "--checkpoint", "at3.json")
    assert result.exit_code == 1
    assert "chain broken: record #4 or a later one is rewritten" in result.stderr
    assert "#4…#6" in result.stderr and HMAC_KEY not in result.output


def test_checkpoint_needs_a_key_and_never_overwrites(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(STORES[0], 1)
    result = cli("evidence", "checkpoint", "--store", "evidence.db", "--output", "cp.json")
    assert result.exit_code == 2 and "no signing key configured" in result.stderr
    assert not Path("cp.json").exists()
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY_FILE", "private.pem")
    Path("cp.json").write_text("an older checkpoint")
    result = cli("evidence", "checkpoint", "--store", "evidence.db", "--output", "cp.json")
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert Path("cp.json").read_text() == "an older checkpoint"
    assert (
        cli("evidence", "checkpoint", "--store", "evidence.db", "--output", "cp.json", "--force").exit_code
        == 0
    )
    assert json.loads(Path("cp.json").read_text())["count"] == 1


def test_checkpoint_files_need_a_key_to_be_checked(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(STORES[0], 1)
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY_FILE", "private.pem")
    assert cli("evidence", "checkpoint", "--store", "evidence.db", "--output", "cp.json").exit_code == 0
    monkeypatch.delenv("CAVRA_CHECKPOINT_KEY_FILE")
    result = cli("evidence", "verify", "--store", "evidence.db", "--checkpoint", "cp.json")
    assert result.exit_code == 2 and "no checkpoint key is configured" in result.stderr


def test_a_forged_checkpoint_or_another_key_fails(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY_FILE", "private.pem")
    fill(STORES[0], 2)
    assert cli("evidence", "checkpoint", "--store", "evidence.db", "--output", "cp.json").exit_code == 0
    forged = json.loads(Path("cp.json").read_text()) | {"count": 1}
    Path("forged.json").write_text(json.dumps(forged))
    result = cli("evidence", "verify", "--store", "evidence.db", "--checkpoint", "forged.json")
    assert result.exit_code == 1 and "checkpoint rejected:" in result.stderr and "forged" in result.stderr
    monkeypatch.delenv("CAVRA_CHECKPOINT_KEY_FILE")
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY", HMAC_KEY)  # the wrong key
    result = cli("evidence", "verify", "--store", "evidence.db", "--checkpoint", "cp.json")
    assert result.exit_code == 1 and "not a configured checkpoint key" in result.stderr


def test_a_bad_key_is_one_line_naming_the_variable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY", "too-short-secret")
    result = cli("evidence", "verify", "--store", "evidence.db")
    assert result.exit_code == 2
    assert "CAVRA_CHECKPOINT_KEY" in result.stderr and "at least 32" in result.stderr
    assert "too-short-secret" not in result.output


# --- delivered to a SIEM, witnessed back ------------------------------------------------------------------
@pytest.fixture(scope="module")
def splunk() -> Iterator[ThreadedEmulators]:
    emu = ThreadedEmulators(["splunk"]).start()
    try:
        yield emu
    finally:
        emu.stop()


def test_checkpoints_delivered_to_splunk_witness_the_chain(
    project: Path, splunk: ThreadedEmulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in make_project(project, splunk).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY_FILE", "private.pem")
    splunk.reset()
    for n in range(3):
        fill(STORES[0], 2, start=2 * n)
        result = cli(
            "evidence", "checkpoint", "--store", "evidence.db", "--deliver", "splunk",
            "--config", ".cavra/connectors.json", "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["checkpoint"]["count"] == 2 * (n + 1) and out["delivery"]["success"] is True
    # what the SIEM holds: the HEC envelopes it received, exported as JSON lines
    bodies = [r.body.decode() for r in splunk.received("splunk") if r.method == "POST"]
    events = [json.loads(b) for b in bodies]
    assert [e["event"]["event_type"] for e in events] == ["cavra.evidence.checkpoint"] * 3
    Path("splunk-export.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    monkeypatch.delenv("CAVRA_CHECKPOINT_KEY_FILE")
    monkeypatch.setenv("CAVRA_CHECKPOINT_PUBLIC_KEY_FILE", "public.pem")
    ok = cli("evidence", "verify", "--store", "evidence.db", "--witness", "splunk-export.jsonl")
    assert ok.exit_code == 0, ok.output
    assert "chain intact and signed" in ok.stdout and ok.stdout.count("holds") == 4
    with open_args(STORES[0]) as store:
        rewrite_from(store, 3, forge_session)
    bad = cli("evidence", "verify", "--store", "evidence.db", "--witness", "splunk-export.jsonl", "--json")
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert [c["ok"] for c in report["checkpoints"]] == [False, True, False, False]
    assert report["first_bad"]["reason"] == "rewritten" and report["first_bad"]["sequence"] == 3


def test_the_worker_delivers_checkpoints_on_a_schedule(
    project: Path, splunk: ThreadedEmulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in make_project(project, splunk).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY", HMAC_KEY)
    fill(STORES[0], 3)
    splunk.reset()
    args = ("worker", "--store", "evidence.db", "--config", ".cavra/connectors.json", "--once")
    bad = cli(*args, "--checkpoint-every", "soon")
    assert bad.exit_code == 2 and "--checkpoint-every: 'soon' is not an interval" in bad.stderr
    result = cli(*args, "--checkpoint-every", "1h", "--checkpoint-provider", "splunk")
    assert result.exit_code == 0, result.output
    assert "checkpoints delivered: 1" in result.stderr
    sent = [json.loads(r.body) for r in splunk.received("splunk") if r.method == "POST"]
    assert [s["event"]["checkpoint"]["count"] for s in sent] == [3]
    assert HMAC_KEY not in json.dumps(sent)
