"""API tokens and roles.

Three roles, each including the ones below it: ``auditor`` (read history, dashboards, evidence),
``operator`` (deliver and publish; register release records), ``admin`` (integrations and configuration).

Tokens come from a file (``CAVRA_API_TOKENS_FILE`` or ``cavra serve --tokens FILE``) holding only SHA-256
hashes, or from environment variables ``CAVRA_API_TOKEN_ADMIN``/``_OPERATOR``/``_AUDITOR`` (plain values,
hashed on load and then forgotten). A presented token is hashed and compared with every known hash in
constant time, so neither the comparison nor the number of tokens tried leaks which one nearly matched.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from cavra.errors import ConfigError

Role = Literal["auditor", "operator", "admin"]
ROLES: tuple[Role, ...] = ("auditor", "operator", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}

TOKENS_FILE_ENV = "CAVRA_API_TOKENS_FILE"
TOKEN_ENV = {role: f"CAVRA_API_TOKEN_{role.upper()}" for role in ROLES}

#: plain tokens shorter than this are refused: they could be guessed
MIN_TOKEN_LENGTH = 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256 (tokens are random, so no salt or stretching is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "cavra_" + secrets.token_urlsafe(32)


def role_allows(have: Role, need: Role) -> bool:
    return _RANK[have] >= _RANK[need]


def roles_allowed(need: Role) -> list[Role]:
    """The roles that may call a route needing ``need`` (for messages)."""
    return [r for r in ROLES if role_allows(r, need)]


@dataclass(frozen=True)
class ApiToken:
    """A known token: a name safe to show, its role and its hash. The plain value is never kept."""

    name: str
    role: Role
    sha256: str

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, role={self.role!r})"


@dataclass(frozen=True)
class TokenSet:
    """Every configured token. Empty means protected mode (loopback clients only)."""

    tokens: tuple[ApiToken, ...] = ()

    @property
    def protected_mode(self) -> bool:
        return not self.tokens

    def authenticate(self, presented: str) -> ApiToken | None:
        """The token matching ``presented``; every hash is compared, in constant time."""
        digest = hash_token(presented).encode("ascii")
        found: ApiToken | None = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.sha256.encode("ascii")):
                found = token
        return found

    @classmethod
    def load(cls, path: str | None = None, environ: Mapping[str, str] | None = None) -> TokenSet:
        """Tokens from the file (``path`` or ``$CAVRA_API_TOKENS_FILE``) and the role variables."""
        env = os.environ if environ is None else environ
        tokens: list[ApiToken] = []
        chosen = path or env.get(TOKENS_FILE_ENV)
        if chosen:
            tokens.extend(_load_file(Path(chosen), env))
        for role, var in TOKEN_ENV.items():
            value = env.get(var)
            if value is not None:
                tokens.append(ApiToken(var.lower(), role, _plain_hash(value, var)))
        names = [t.name for t in tokens]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"API tokens: the name {dup!r} is used more than once")
        return cls(tuple(tokens))


def _plain_hash(value: str, where: str) -> str:
    value = value.strip()
    if len(value) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{where}: an API token must have at least {MIN_TOKEN_LENGTH} characters")
    return hash_token(value)


def _load_file(path: Path, env: Mapping[str, str]) -> list[ApiToken]:
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{src}: API token file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{src}: API token file cannot be read ({type(exc).__name__})") from None
    try:
        data: Any = yaml.safe_load(text) if src.endswith((".yaml", ".yml")) else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError):
        raise ConfigError(f"{src}: not valid JSON or YAML") from None
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        raise ConfigError(f"{src}: must be a mapping with a 'tokens' list")
    out: list[ApiToken] = []
    for i, item in enumerate(data["tokens"]):
        where = f"{src}: tokens[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a mapping")
        unknown = set(item) - {"name", "role", "sha256", "token_env"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        name, role = item.get("name"), item.get("role")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}.name: required; letters, digits and ._@- (at most 64)")
        if role not in ROLES:
            raise ConfigError(f"{where}.role: must be one of {', '.join(ROLES)}")
        if ("sha256" in item) == ("token_env" in item):
            raise ConfigError(f"{where}: give exactly one of sha256 or token_env")
        if "sha256" in item:
            digest = item["sha256"]
            if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
                raise ConfigError(f"{where}.sha256: must be 64 hexadecimal characters")
            digest = digest.lower()
        else:
            var = item["token_env"]
            if not isinstance(var, str) or not var:
                raise ConfigError(f"{where}.token_env: must name an environment variable")
            if not env.get(var):
                raise ConfigError(f"{where}.token_env: environment variable {var} is not set")
            digest = _plain_hash(env[var], f"{where}.token_env ({var})")
        out.append(ApiToken(name, role, digest))
    return out


def is_loopback(host: str | None) -> bool:
    """Whether a client or bind address is loopback (127.0.0.0/8, ::1, IPv4-mapped loopback)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback
