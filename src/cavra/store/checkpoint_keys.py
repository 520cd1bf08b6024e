"""The keys that sign and verify chain checkpoints: Ed25519 (``cryptography``) or HMAC-SHA256.

Where a key comes from (the first one set wins; see docs/store.md, "Signed checkpoints")::

    CAVRA_CHECKPOINT_KEY              the key material itself (an Ed25519 private key, or an HMAC secret)
    CAVRA_CHECKPOINT_KEY_FILE         a file holding it (or --key-file on the commands)
    CAVRA_CHECKPOINT_PUBLIC_KEY       Ed25519 public key(s): verification only, no signing
    CAVRA_CHECKPOINT_PUBLIC_KEY_FILE  a file holding them (or --public-key-file)
    CAVRA_CHECKPOINT_ALGORITHM        ed25519 | hmac-sha256: only needed for a raw Ed25519 seed
    CAVRA_CHECKPOINT_OLD_KEY_FILE     retired keys (either type), to verify only: after a rotation

The type is read from the material: a PEM or OpenSSH Ed25519 private key (``openssl genpkey -algorithm
ed25519``, ``ssh-keygen -t ed25519``) signs with Ed25519; a PEM ``PUBLIC KEY`` or an ``ssh-ed25519 …`` line
verifies only; anything else is an HMAC-SHA256 secret (at least 32 characters, e.g. ``openssl rand -hex
32``). With ``CAVRA_CHECKPOINT_ALGORITHM=ed25519`` a 32-byte seed in hex or base64 is an Ed25519 key.

A key is known by its id, never by its value: ``ed25519:`` + the first 32 hex digits of the SHA-256 of the
raw public key (its fingerprint), ``hmac-sha256:`` + the first 32 hex digits of an HMAC of a fixed label
under the key. Errors name the variable or file, never the material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cavra.errors import ConfigError
from cavra.secrets import Secret

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"
ALGORITHMS = (ED25519, HMAC_SHA256)

ENV_KEY = "CAVRA_CHECKPOINT_KEY"
ENV_KEY_FILE = "CAVRA_CHECKPOINT_KEY_FILE"
ENV_PUBLIC_KEY = "CAVRA_CHECKPOINT_PUBLIC_KEY"
ENV_PUBLIC_KEY_FILE = "CAVRA_CHECKPOINT_PUBLIC_KEY_FILE"
ENV_ALGORITHM = "CAVRA_CHECKPOINT_ALGORITHM"
ENV_OLD_KEY_FILE = "CAVRA_CHECKPOINT_OLD_KEY_FILE"
#: the shortest HMAC secret accepted (characters): a guessable secret would make signatures forgeable
MIN_HMAC_CHARS = 32
_HMAC_ID_LABEL = b"cavra.evidence.checkpoint key id"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)


class CheckpointKey:
    """One key: ``algorithm``, ``key_id``, whether it can sign, and sign/verify of a payload."""

    algorithm: str = ""
    key_id: str = ""
    can_sign: bool = False

    def sign(self, payload: bytes) -> bytes:
        raise NotImplementedError

    def verify(self, payload: bytes, signature: bytes) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_id})"


class Ed25519Key(CheckpointKey):
    algorithm = ED25519

    def __init__(self, public: Ed25519PublicKey, private: Ed25519PrivateKey | None = None) -> None:
        self._public = public
        self._private = private
        self.can_sign = private is not None
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = f"{ED25519}:{hashlib.sha256(raw).hexdigest()[:32]}"

    def sign(self, payload: bytes) -> bytes:
        if self._private is None:
            raise ConfigError(f"checkpoint key {self.key_id} is a public key: it verifies but cannot sign")
        return self._private.sign(payload)

    def verify(self, payload: bytes, signature: bytes) -> bool:
        try:
            self._public.verify(signature, payload)
        except InvalidSignature:
            return False
        return True

    def public_only(self) -> Ed25519Key:
        return Ed25519Key(self._public)

    def public_pem(self) -> str:
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


class HmacKey(CheckpointKey):
    algorithm = HMAC_SHA256
    can_sign = True

    def __init__(self, secret: Secret) -> None:
        self._secret = secret
        self._mac = hmac.new(secret.reveal().encode("utf-8"), digestmod=hashlib.sha256)
        tag = self.sign(_HMAC_ID_LABEL).hex()
        self.key_id = f"{HMAC_SHA256}:{tag[:32]}"

    def sign(self, payload: bytes) -> bytes:
        mac = self._mac.copy()  # the key schedule is computed once
        mac.update(payload)
        return mac.digest()

    def verify(self, payload: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(payload), signature)


@dataclass(frozen=True)
class CheckpointKeys:
    """The configured keys: the one that signs (if any) and every key that verifies, by key id."""

    signer: CheckpointKey | None = None
    verifiers: Mapping[str, CheckpointKey] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.verifiers)

    def describe(self) -> str:
        return ", ".join(self.verifiers) or "none"


def _ed25519_private(obj: object, where: str) -> Ed25519Key:
    if not isinstance(obj, Ed25519PrivateKey):
        raise ConfigError(f"{where}: only Ed25519 private keys sign checkpoints (found {type(obj).__name__})")
    return Ed25519Key(obj.public_key(), obj)


def _ed25519_public(obj: object, where: str) -> Ed25519Key:
    if not isinstance(obj, Ed25519PublicKey):
        raise ConfigError(
            f"{where}: only Ed25519 public keys verify checkpoints (found {type(obj).__name__})"
        )
    return Ed25519Key(obj)


def _pem_keys(text: str, where: str) -> list[Ed25519Key]:
    keys: list[Ed25519Key] = []
    for m in _PEM_BLOCK.finditer(text):
        block, label = m.group(0).encode(), m.group(1)
        try:
            if label == "OPENSSH PRIVATE KEY":
                keys.append(_ed25519_private(serialization.load_ssh_private_key(block, None), where))
            elif label.endswith("PRIVATE KEY"):
                keys.append(_ed25519_private(serialization.load_pem_private_key(block, None), where))
            elif label == "PUBLIC KEY":
                keys.append(_ed25519_public(serialization.load_pem_public_key(block), where))
            else:
                raise ConfigError(f"{where}: unsupported PEM block {label!r} (expected an Ed25519 key)")
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ConfigError(f"{where}: not a readable unencrypted Ed25519 key ({label.lower()})") from None
    if not keys:
        raise ConfigError(f"{where}: no complete PEM block found")
    return keys


def _seed(text: str, where: str) -> Ed25519Key:
    raw: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raw = bytes.fromhex(text)
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise ConfigError(
            f"{where}: {ENV_ALGORITHM}={ED25519} needs a PEM/OpenSSH Ed25519 key or a 32-byte seed "
            "(64 hex digits or base64)"
        )
    return _ed25519_private(Ed25519PrivateKey.from_private_bytes(raw), where)


def parse_key_material(text: str, where: str, *, algorithm: str | None = None) -> list[CheckpointKey]:
    """The key(s) in ``text`` (from ``where``, named in errors); see the module docstring for the forms."""
    material = text.strip()
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ConfigError(
            f"{ENV_ALGORITHM}: unknown algorithm {algorithm!r} (expected {' or '.join(ALGORITHMS)})"
        )
    if not material:
        raise ConfigError(f"{where}: the checkpoint key is empty")
    is_pem = "-----BEGIN " in material
    is_ssh = material.startswith("ssh-ed25519 ")
    if algorithm == HMAC_SHA256 and (is_pem or is_ssh):
        raise ConfigError(f"{where}: {ENV_ALGORITHM}={HMAC_SHA256} but the material is an Ed25519 key")
    if is_pem:
        return list(_pem_keys(material, where))
    if is_ssh:
        out: list[CheckpointKey] = []
        for line in material.splitlines():
            if not line.strip():
                continue
            try:
                out.append(_ed25519_public(serialization.load_ssh_public_key(line.strip().encode()), where))
            except (ValueError, UnsupportedAlgorithm):
                raise ConfigError(f"{where}: not a readable ssh-ed25519 public key line") from None
        return out
    if algorithm == ED25519:
        return [_seed(material, where)]
    if len(material) < MIN_HMAC_CHARS:
        raise ConfigError(
            f"{where}: an HMAC-SHA256 checkpoint key must be at least {MIN_HMAC_CHARS} characters "
            "(e.g. `openssl rand -hex 32`), or give an Ed25519 key"
        )
    return [HmacKey(Secret(material, source=where))]


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text (PEM, OpenSSH or a text secret)") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror})") from None


def _retired(files: Sequence[str], env: Mapping[str, str], algorithm: str | None) -> list[CheckpointKey]:
    """Retired keys (``--old-key-file``, else ``CAVRA_CHECKPOINT_OLD_KEY_FILE``, several joined by the
    path separator): any key material, used only to verify checkpoints signed before a rotation."""
    named = [(p, f"--old-key-file {p}") for p in files]
    if not files and env.get(ENV_OLD_KEY_FILE, "").strip():
        paths = [p.strip() for p in env[ENV_OLD_KEY_FILE].split(os.pathsep) if p.strip()]
        named = [(p, f"{ENV_OLD_KEY_FILE} {p}") for p in paths]
    out: list[CheckpointKey] = []
    for path, where in named:
        for key in parse_key_material(_read(path, where.split(" ")[0]), where, algorithm=algorithm):
            out.append(key.public_only() if isinstance(key, Ed25519Key) else _VerifyOnly(key))
    return out


class _VerifyOnly(CheckpointKey):
    """A retired key: it verifies what it signed, and never signs again."""

    def __init__(self, key: CheckpointKey) -> None:
        self._key = key
        self.algorithm = key.algorithm
        self.key_id = key.key_id

    def verify(self, payload: bytes, signature: bytes) -> bool:
        return self._key.verify(payload, signature)


def load_keys(
    *,
    key_file: str | None = None,
    public_key_files: Sequence[str] = (),
    old_key_files: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> CheckpointKeys:
    """The configured checkpoint keys (none configured: ``CheckpointKeys()``, which verifies order only).

    ``key_file`` (``--key-file``) replaces the environment's signing key; ``public_key_files``
    (``--public-key-file``) add verification keys (and replace the environment's public keys);
    ``old_key_files`` (``--old-key-file``) add retired keys of either type, to verify only."""
    env = os.environ if environ is None else environ
    algorithm = (env.get(ENV_ALGORITHM) or "").strip().lower() or None
    keys: list[CheckpointKey] = []
    if key_file is not None:
        keys += parse_key_material(
            _read(key_file, "--key-file"), f"--key-file {key_file}", algorithm=algorithm
        )
    elif env.get(ENV_KEY, "").strip():
        keys += parse_key_material(env[ENV_KEY], f"environment variable {ENV_KEY}", algorithm=algorithm)
    elif env.get(ENV_KEY_FILE, "").strip():
        path = env[ENV_KEY_FILE].strip()
        keys += parse_key_material(
            _read(path, f"{ENV_KEY_FILE}:"), f"{ENV_KEY_FILE} {path}", algorithm=algorithm
        )
    public: list[tuple[str, str]] = [
        (_read(p, "--public-key-file"), f"--public-key-file {p}") for p in public_key_files
    ]
    if not public_key_files:
        if env.get(ENV_PUBLIC_KEY, "").strip():
            public.append((env[ENV_PUBLIC_KEY], f"environment variable {ENV_PUBLIC_KEY}"))
        if env.get(ENV_PUBLIC_KEY_FILE, "").strip():
            path = env[ENV_PUBLIC_KEY_FILE].strip()
            public.append((_read(path, f"{ENV_PUBLIC_KEY_FILE}:"), f"{ENV_PUBLIC_KEY_FILE} {path}"))
    for text, where in public:
        found = parse_key_material(text, where, algorithm=ED25519)
        if any(k.can_sign for k in found):
            raise ConfigError(
                f"{where}: holds a private key; give it as the checkpoint key, not a public key"
            )
        keys += found
    signers = [k for k in keys if k.can_sign]
    keys += [k for k in _retired(old_key_files, env, algorithm) if k.key_id not in {s.key_id for s in keys}]
    if len(signers) > 1:
        raise ConfigError("the checkpoint key holds more than one private key; give exactly one")
    return CheckpointKeys(signer=signers[0] if signers else None, verifiers={k.key_id: k for k in keys})
