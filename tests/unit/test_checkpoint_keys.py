"""Checkpoint keys: the type is read from the material, ids never reveal a key, errors never print one."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cavra.errors import ConfigError, InputError
from cavra.store.checkpoint import find_checkpoints, parse_checkpoint, sign_head, signature_problem
from cavra.store.checkpoint_keys import ED25519, HMAC_SHA256, CheckpointKeys, load_keys

SECRET = "s3cr3t-" + "x" * 40
SHA = "ab" * 32


def _pair() -> tuple[Ed25519PrivateKey, bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pem, pub


def test_hmac_from_the_environment_signs_and_verifies() -> None:
    keys = load_keys(environ={"CAVRA_CHECKPOINT_KEY": SECRET})
    assert keys.signer is not None and keys.signer.algorithm == HMAC_SHA256
    assert keys.signer.key_id.startswith("hmac-sha256:") and SECRET not in repr(keys)
    cp = sign_head(keys.signer, 3, "dlv_x", SHA)
    assert signature_problem(cp, keys) is None
    other = load_keys(environ={"CAVRA_CHECKPOINT_KEY": SECRET + "y"})
    assert "not a configured checkpoint key" in str(signature_problem(cp, other))


def test_ed25519_pem_signs_and_the_public_key_alone_verifies(tmp_path: Path) -> None:
    _key, pem, pub = _pair()
    (tmp_path / "k.pem").write_bytes(pem)
    (tmp_path / "p.pem").write_bytes(pub)
    signing = load_keys(environ={"CAVRA_CHECKPOINT_KEY_FILE": str(tmp_path / "k.pem")})
    assert signing.signer is not None and signing.signer.algorithm == ED25519
    cp = sign_head(signing.signer, 1, "dlv_a", SHA)
    verifying = load_keys(environ={"CAVRA_CHECKPOINT_PUBLIC_KEY_FILE": str(tmp_path / "p.pem")})
    assert verifying.signer is None and list(verifying.verifiers) == [signing.signer.key_id]
    assert signature_problem(cp, verifying) is None
    tampered = parse_checkpoint(cp.to_dict() | {"count": 2}, source="t")
    assert "does not verify" in str(signature_problem(tampered, verifying))


def test_openssh_keys_and_a_raw_seed(tmp_path: Path) -> None:
    key, _pem, _pub = _pair()
    ssh_priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    ssh_pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    a = load_keys(environ={"CAVRA_CHECKPOINT_KEY": ssh_priv})
    b = load_keys(environ={"CAVRA_CHECKPOINT_PUBLIC_KEY": ssh_pub.decode()})
    c = load_keys(environ={"CAVRA_CHECKPOINT_KEY": seed.hex(), "CAVRA_CHECKPOINT_ALGORITHM": "ed25519"})
    d = load_keys(
        environ={
            "CAVRA_CHECKPOINT_KEY": base64.b64encode(seed).decode(),
            "CAVRA_CHECKPOINT_ALGORITHM": "ed25519",
        }
    )
    assert a.signer is not None
    assert a.signer.key_id == next(iter(b.verifiers)) == c.signer.key_id == d.signer.key_id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CAVRA_CHECKPOINT_KEY": "short-" + "k" * 10}, "at least 32 characters"),
        ({"CAVRA_CHECKPOINT_KEY": "g" * 64, "CAVRA_CHECKPOINT_ALGORITHM": "ed25519"}, "32-byte seed"),
        ({"CAVRA_CHECKPOINT_KEY": "k" * 40, "CAVRA_CHECKPOINT_ALGORITHM": "rsa"}, "unknown algorithm"),
        ({"CAVRA_CHECKPOINT_KEY_FILE": "/nonexistent/key"}, "does not exist"),
        (
            {"CAVRA_CHECKPOINT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
            "Ed25519",
        ),
    ],
)
def test_bad_keys_are_config_errors_that_never_print_the_material(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_keys(environ=environ)
    assert message in str(err.value)
    material = environ.get("CAVRA_CHECKPOINT_KEY")
    assert material is None or material not in str(err.value)


def test_a_private_key_given_as_public_is_refused(tmp_path: Path) -> None:
    _key, pem, _pub = _pair()
    with pytest.raises(ConfigError, match="holds a private key"):
        load_keys(environ={"CAVRA_CHECKPOINT_PUBLIC_KEY": pem.decode()})


def test_an_rsa_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    done = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("openssl is not available to make an RSA key")
    with pytest.raises(ConfigError, match="only Ed25519"):
        load_keys(key_file=str(path), environ={})


def test_find_checkpoints_in_wrapped_exports() -> None:
    keys = load_keys(environ={"CAVRA_CHECKPOINT_KEY": SECRET})
    assert keys.signer is not None
    cps = [sign_head(keys.signer, n, f"dlv_{n}", SHA) for n in (1, 2, 3)]
    text = "\n".join(
        [
            json.dumps(cps[0].to_dict()),
            json.dumps(
                {"event": {"event_type": "cavra.evidence.checkpoint", "checkpoint": cps[1].to_dict()}}
            ),
            json.dumps({"result": {"_raw": json.dumps({"checkpoint": cps[2].to_dict()})}}),
            json.dumps({"result": {"_raw": json.dumps({"checkpoint": cps[2].to_dict()})}}),  # a duplicate
        ]
    )
    assert [c.count for c in find_checkpoints(text, source="w")] == [1, 2, 3]
    assert [c.count for c in find_checkpoints(json.dumps([c.to_dict() for c in cps]), source="w")] == [
        1,
        2,
        3,
    ]
    with pytest.raises(InputError, match=r"no cavra\.evidence\.checkpoint\.v1 checkpoint found"):
        find_checkpoints('{"event": {}}', source="w")
    with pytest.raises(InputError, match="w: line 2: not valid JSON"):
        find_checkpoints('{"a": 1}\n{nope', source="w")
    bad = cps[0].to_dict() | {"head_sha256": "XYZ"}
    with pytest.raises(InputError, match="head_sha256 must be 64 lowercase hex digits"):
        find_checkpoints(json.dumps(bad), source="w")


def test_no_keys_configured() -> None:
    keys = load_keys(environ={})
    assert keys == CheckpointKeys() and not keys.configured


def test_a_checkpoint_matches_its_schema_and_verifies_as_the_docs_show(tmp_path: Path) -> None:
    from importlib import resources

    import jsonschema
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    schema = json.loads(resources.files("cavra").joinpath("schemas/evidence-checkpoint.v1.json").read_text())
    _key, pem, pub = _pair()
    (tmp_path / "k.pem").write_bytes(pem)
    signer = load_keys(key_file=str(tmp_path / "k.pem"), environ={}).signer
    assert signer is not None
    cp = sign_head(signer, 5, "dlv_a", SHA).to_dict()
    jsonschema.validate(cp, schema)
    jsonschema.validate(sign_head(signer, 0, None, "0" * 64).to_dict(), schema)
    # docs/schemas/evidence-checkpoint.md: an auditor's own check, without CAVRA
    signed = {k: v for k, v in cp.items() if k != "signature"}
    payload = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    load_pem_public_key(pub).verify(base64.b64decode(cp["signature"]), payload)  # type: ignore[union-attr]
