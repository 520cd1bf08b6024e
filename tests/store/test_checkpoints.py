"""Signed checkpoints: tampering that the unkeyed chain cannot see (tail deleted and head rewritten, records
rewritten with every hash recomputed) fails against the store's signed checkpoint and against exported and
witnessed ones, on SQLite, PostgreSQL and the JSON file. Each scenario first shows that the order-only
check (what ``cavra evidence verify`` did before checkpoints) still calls the tampered chain intact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cavra.errors import ConfigError
from cavra.governance.checkpoints import (
    ORDER_ONLY,
    REWRITTEN,
    current_checkpoint,
    export_checkpoint,
    verify_evidence,
)
from cavra.store import Store
from cavra.store.checkpoint import CHECKPOINT_SCHEMA, checkpoint_event
from cavra.store.checkpoint_keys import CheckpointKeys, load_keys

from .conftest import Target, make_record
from .tamper import delete_tail, drop_stored_checkpoint, forge_session, put_stored_checkpoint, rewrite_from

MISSING = "missing/reordered"


def ed25519_pem() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


HMAC_KEY = "0123456789abcdef" * 4


@pytest.fixture(params=["ed25519", "hmac-sha256"])
def keys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CheckpointKeys:
    """A checkpoint key in the environment (as an operator sets it): the store opened now signs."""
    if request.param == "ed25519":
        private, _public = ed25519_pem()
        path = tmp_path / "checkpoint-key.pem"
        path.write_text(private)
        monkeypatch.setenv("CAVRA_CHECKPOINT_KEY_FILE", str(path))
    else:
        monkeypatch.setenv("CAVRA_CHECKPOINT_KEY", HMAC_KEY)
    return load_keys()


@pytest.fixture
def signed(target: Target, keys: CheckpointKeys) -> Iterator[Store]:
    s = target.open()
    assert s.checkpoint_signer is not None and s.checkpoint_signer.key_id == keys.signer.key_id  # type: ignore[union-attr]
    try:
        yield s
    finally:
        s.close()


def fill(store: Store, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        store.append_delivery(make_record(event_id=f"evt-{i}"), metadata_kind="release-connector-delivery")


def export(store: Store, keys: CheckpointKeys, path: Path) -> Path:
    export_checkpoint(store, keys, str(path))
    return path


# --- the store signs its head ----------------------------------------------------------------------------
def test_every_append_batch_signs_the_head(signed: Store, keys: CheckpointKeys) -> None:
    fill(signed, 3)
    head, stored = signed.signed_head()
    assert stored is not None and stored["schema_version"] == CHECKPOINT_SCHEMA
    assert (stored["count"], stored["last_id"], stored["head_sha256"]) == (3, head.last_id, head.last_sha256)
    assert stored["key_id"] == keys.signer.key_id  # type: ignore[union-attr]
    result = verify_evidence(signed, keys)
    assert result.ok and result.mode == "signed", result.to_dict()
    assert [c.ok for c in result.checkpoints] == [True]


def test_without_a_key_verify_says_it_checks_order_only(store: Store) -> None:
    fill(store, 2)
    result = verify_evidence(store, CheckpointKeys())
    assert result.ok and result.mode == ORDER_ONLY
    data = result.to_dict()
    assert data["mode"] == "order-only" and data["authenticity"].startswith("order only:")
    assert "not that they are authentic" in data["authenticity"]


# --- tamper scenarios ------------------------------------------------------------------------------------
def test_deleting_the_tail_and_rewriting_the_head(
    signed: Store, keys: CheckpointKeys, tmp_path: Path
) -> None:
    fill(signed, 5)
    saved = export(signed, keys, tmp_path / "cp.json")
    delete_tail(signed, 3)
    assert signed.verify_chain().ok  # the unkeyed chain cannot see it (what verify said before)
    result = verify_evidence(signed, keys, checkpoint_files=[str(saved)])
    assert not result.ok
    bad = result.report.first_bad
    assert bad is not None and (bad.reason, bad.sequence) == (MISSING, 4)
    assert "record #4 is missing" in bad.detail
    assert [c.ok for c in result.checkpoints] == [False, False]  # the store's and the exported one


def test_an_honest_append_after_tampering_does_not_sign_over_it(signed: Store, keys: CheckpointKeys) -> None:
    fill(signed, 5)
    delete_tail(signed, 3)
    fill(signed, 2, start=10)  # the appender finds a head its checkpoint did not sign: it does not sign
    result = verify_evidence(signed, keys)
    assert not result.ok
    bad = result.report.first_bad
    assert bad is not None and bad.reason == REWRITTEN and "#1…#5" in bad.detail


def test_a_replayed_older_checkpoint_is_caught_by_the_exported_one(
    signed: Store, keys: CheckpointKeys, tmp_path: Path
) -> None:
    fill(signed, 3)
    older = signed.signed_head()[1]
    assert older is not None
    fill(signed, 2, start=3)
    saved = export(signed, keys, tmp_path / "cp.json")
    delete_tail(signed, 3)
    put_stored_checkpoint(signed, older)  # a genuine checkpoint of #3: the store's own check is satisfied
    fill(signed, 2, start=10)  # and honest appends sign onward from it
    assert verify_evidence(signed, keys).ok
    result = verify_evidence(signed, keys, checkpoint_files=[str(saved)])
    assert not result.ok
    bad = result.report.first_bad
    # record #5 is not the one signed; the store's checkpoint (#5, signed after the replay) is not below it
    assert bad is not None and bad.reason == REWRITTEN and bad.sequence == 1 and "#1…#5" in bad.detail


def test_rewriting_the_last_records_with_recomputed_hashes(
    signed: Store, keys: CheckpointKeys, tmp_path: Path
) -> None:
    fill(signed, 3)
    early = export(signed, keys, tmp_path / "early.json")
    fill(signed, 2, start=3)
    rewrite_from(signed, 4, forge_session)
    assert signed.verify_chain().ok  # every hash and the head were recomputed
    result = verify_evidence(signed, keys, checkpoint_files=[str(early)])
    assert not result.ok
    bad = result.report.first_bad
    # the checkpoint at #3 still holds, the store's at #5 does not: the rewrite is in #4…#5
    assert bad is not None and bad.reason == REWRITTEN and bad.sequence == 4
    assert "#4…#5" in bad.detail


def test_rewriting_a_middle_record(signed: Store, keys: CheckpointKeys) -> None:
    fill(signed, 5)
    rewrite_from(signed, 3, forge_session)
    assert signed.verify_chain().ok
    result = verify_evidence(signed, keys)
    assert not result.ok
    bad = result.report.first_bad
    assert bad is not None and bad.reason == REWRITTEN
    assert "record #5" in bad.detail and "not the record the store's checkpoint signed" in bad.detail


def test_removing_the_stored_checkpoint_is_caught(signed: Store, keys: CheckpointKeys) -> None:
    fill(signed, 2)
    drop_stored_checkpoint(signed)
    fill(signed, 1, start=5)  # and the next append does not start a new checkpoint over it
    assert signed.signed_head()[1] is None
    result = verify_evidence(signed, keys)
    assert not result.ok and "holds no signed checkpoint" in result.rejected[0].detail


def test_a_forged_checkpoint_signature_is_rejected(
    signed: Store, keys: CheckpointKeys, tmp_path: Path
) -> None:
    fill(signed, 4)
    saved = export(signed, keys, tmp_path / "cp.json")
    delete_tail(signed, 2)
    forged = json.loads(saved.read_text())
    forged["count"], forged["last_id"] = 2, signed.signed_head()[0].last_id
    forged["head_sha256"] = signed.signed_head()[0].last_sha256  # the attacker's own "checkpoint"
    fake = tmp_path / "forged.json"
    fake.write_text(json.dumps(forged))
    result = verify_evidence(signed, keys, checkpoint_files=[str(fake)])
    assert not result.ok
    assert any("does not verify" in c.detail and "forged" in c.detail for c in result.rejected)


def test_a_checkpoint_of_another_key_is_rejected(target: Target, tmp_path: Path) -> None:
    private, _ = ed25519_pem()
    theirs = tmp_path / "theirs.pem"
    theirs.write_text(private)
    mine = load_keys(environ={"CAVRA_CHECKPOINT_KEY": HMAC_KEY})
    other = load_keys(key_file=str(theirs), environ={})
    with target.open() as s:
        s.checkpoint_signer = other.signer
        fill(s, 2)
        saved = export(s, other, tmp_path / "cp.json")
        result = verify_evidence(s, mine, checkpoint_files=[str(saved)])
    assert not result.ok
    assert all("not a configured checkpoint key" in c.detail for c in result.rejected)
    assert HMAC_KEY not in json.dumps(result.to_dict())


def test_a_witness_file_with_one_violated_checkpoint(
    signed: Store, keys: CheckpointKeys, tmp_path: Path
) -> None:
    events = []
    for n in range(3):
        fill(signed, 2, start=2 * n)
        events.append(checkpoint_event(current_checkpoint(signed, keys)))
    lines = [
        json.dumps(events[0]["checkpoint"]),  # bare
        json.dumps({"time": 1, "sourcetype": "cavra", "event": events[1]}),  # Splunk HEC envelope
        json.dumps({"preview": False, "result": {"_raw": json.dumps(events[2]), "host": "h"}}),  # export
    ]
    witness = tmp_path / "siem-export.jsonl"
    witness.write_text("\n".join(lines) + "\n")
    assert verify_evidence(signed, keys, witness_files=[str(witness)]).ok
    rewrite_from(signed, 5, forge_session)
    assert signed.verify_chain().ok
    result = verify_evidence(signed, keys, witness_files=[str(witness)])
    assert not result.ok
    assert [c.ok for c in result.report.claims] == [False, True, True, False]  # store's, #2, #4, #6
    bad = result.report.first_bad
    assert bad is not None and bad.reason == REWRITTEN and bad.sequence == 5 and "#5…#6" in bad.detail


# --- export ----------------------------------------------------------------------------------------------
def test_export_signs_an_unsigned_head_only_after_the_chain_verifies(
    target: Target, keys: CheckpointKeys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with target.open() as s:
        s.checkpoint_signer = None  # appended by a process without the key
        fill(s, 3)
        assert not verify_evidence(s, keys).ok  # no signed checkpoint covers the records
        cp = current_checkpoint(s, keys)  # adopts the verified head
        assert cp.count == 3 and verify_evidence(s, keys).ok
        rewrite_from(s, 1, lambda d: d.__setitem__("event_id", "evt-X"))  # breaks the index: order check
        s.checkpoint_signer = None
        fill(s, 1, start=5)
        with pytest.raises(Exception, match="does not verify"):
            current_checkpoint(s, keys)


def test_export_never_overwrites_and_needs_a_key(target: Target, tmp_path: Path) -> None:
    with target.open() as s:
        fill(s, 1)
        with pytest.raises(ConfigError, match="no signing key configured"):
            export_checkpoint(s, CheckpointKeys(), str(tmp_path / "cp.json"))
        assert not (tmp_path / "cp.json").exists()
        keys = load_keys(environ={"CAVRA_CHECKPOINT_KEY": HMAC_KEY})
        (tmp_path / "cp.json").write_text("keep me")
        with pytest.raises(Exception, match="already exists"):
            export_checkpoint(s, keys, str(tmp_path / "cp.json"))
        assert (tmp_path / "cp.json").read_text() == "keep me"
        export_checkpoint(s, keys, str(tmp_path / "cp.json"), force=True)
        assert json.loads((tmp_path / "cp.json").read_text())["count"] == 1
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_refused_signature_is_logged_once(
    signed: Store, keys: CheckpointKeys, caplog: pytest.LogCaptureFixture
) -> None:
    fill(signed, 2)
    drop_stored_checkpoint(signed)
    with caplog.at_level("ERROR", logger="cavra.store"):
        fill(signed, 3, start=5)
    refusals = [r for r in caplog.records if "not signing the chain head" in r.getMessage()]
    assert len(refusals) == 1 and "holds no signed checkpoint but 2 records" in refusals[0].getMessage()


@pytest.mark.parametrize("old_kind", ["ed25519", "hmac-sha256"])
def test_rotating_the_key(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old_kind: str
) -> None:
    old_file = tmp_path / "old.key"
    old_file.write_text(ed25519_pem()[0] if old_kind == "ed25519" else HMAC_KEY)
    new_file = tmp_path / "new.pem"
    new_file.write_text(ed25519_pem()[0])
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY_FILE", str(old_file))
    with target.open() as s:
        fill(s, 2)
        old_keys = load_keys()
        before = export(s, old_keys, tmp_path / "before-rotation.json")
    # the new key alone: the appender cannot check the old key's checkpoint, so it does not sign over it
    monkeypatch.setenv("CAVRA_CHECKPOINT_KEY_FILE", str(new_file))
    with target.open() as s:
        fill(s, 1, start=2)
        assert s.signed_head()[1]["count"] == 2  # type: ignore[index]
        assert "not a configured checkpoint key" in verify_evidence(s, load_keys()).rejected[0].detail
    # with the old key kept to verify (CAVRA_CHECKPOINT_OLD_KEY_FILE), appends sign on with the new key
    monkeypatch.setenv("CAVRA_CHECKPOINT_OLD_KEY_FILE", str(old_file))
    with target.open() as s:
        keys = load_keys()
        assert keys.signer is not None and keys.signer.key_id != old_keys.signer.key_id  # type: ignore[union-attr]
        assert current_checkpoint(s, keys).count == 3  # adopts #3 (its chain verifies) with the new key
        fill(s, 1, start=3)
        stored = s.signed_head()[1]
        assert stored is not None and stored["count"] == 4 and stored["key_id"] == keys.signer.key_id
        result = verify_evidence(s, keys, checkpoint_files=[str(before)])
        assert result.ok, result.to_dict()
        old_only = load_keys(environ={"CAVRA_CHECKPOINT_OLD_KEY_FILE": str(old_file)})
        assert old_only.signer is None  # a retired key never signs
