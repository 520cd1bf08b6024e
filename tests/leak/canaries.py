"""Canary secrets: every secret of every configured connector, and every form it can take in text.

The emulators' demo credentials are distinctive values used nowhere else, so they serve as canaries;
the generic webhook URL is replaced by one that carries a password in its user-info and a token in its
path. Tokens the emulated identity providers issue during the run are canaries too.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from cavra.connectors.registry import PROVIDERS

WEBHOOK_USER = "hookuser"
WEBHOOK_PASSWORD = "canaryHookPass-77x"
WEBHOOK_PATH_TOKEN = "canaryPathToken9f8e7d6c"


def webhook_url(base_url: str) -> str:
    host = urlsplit(base_url).netloc
    return f"http://{WEBHOOK_USER}:{WEBHOOK_PASSWORD}@{host}/webhook/ingest/{WEBHOOK_PATH_TOKEN}"


def url_secrets(url: str, *, secret_path: bool) -> tuple[set[str], set[str]]:
    """The secret parts of a configured URL (the user-info password; path segments of a webhook URL:
    ``T…/B…/secret``, a workflow id, a path token; Teams' ``sig``), and its ``user:password`` pair."""
    parts = urlsplit(url)
    found: set[str] = set()
    pairs: set[str] = set()
    if parts.password:
        found.add(unquote(parts.password))
        pairs.add(f"{unquote(parts.username or '')}:{unquote(parts.password)}")
    segments = [s for s in parts.path.split("/") if s]
    for marker, count in (("services", 3), ("workflows", 1), ("ingest", 1)):
        if secret_path and marker in segments:
            start = segments.index(marker) + 1
            found |= {s for s in segments[start : start + count] if len(s) >= 8}
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if key == "sig":
            found.add(value)
    return found, pairs


def provider_canaries(
    provider: str, entry: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[set[str], set[str]]:
    """The secret values one connector entry holds (``*_env`` keys) and URL parts, and its Basic pairs."""
    found: set[str] = set()
    pairs: set[str] = set()
    users = [str(entry[k]) for k in ("email", "username") if k in entry]
    for key, name in entry.items():
        if not key.endswith("_env"):
            continue
        value = env[name]
        if value.startswith("http"):
            secrets, url_pairs = url_secrets(value, secret_path=PROVIDERS[provider].secret_url_path)
            found |= secrets
            pairs |= url_pairs
        else:
            found.add(value)
            pairs |= {f"{user}:{value}" for user in users}
    return found, pairs


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def forms(canary: str) -> set[str]:
    """Every form a canary may leak in: raw, URL-encoded, base64 (at every byte alignment inside a longer
    base64 text, which covers a Basic pair whatever the user), with a Bearer scheme, and base64 of that."""
    raw = canary.encode()
    out = {canary, quote(canary, safe=""), quote_plus(canary), b64(raw).rstrip("=")}
    for skip in (1, 2):  # the canary inside a longer base64 text, not on a 3-byte boundary
        middle = raw[skip:]
        middle = middle[: len(middle) - len(middle) % 3]
        out.add(b64(middle))
    whole = raw[: len(raw) - len(raw) % 3]
    out.add(b64(whole))
    out.add(f"Bearer {canary}")
    out.add(b64(f"Bearer {canary}".encode())[12:-4])  # the groups that hold only the token's bytes
    return {f for f in out if len(f) >= 8}


#: a stretch of a secret form this long found anywhere is a leak (a cut secret, a long token's middle)
CHUNK = 20


class Detector:
    """Finds canaries in text: any of their forms whole, or any ``CHUNK``-character stretch of one (a long
    token cut short by a clip still leaks most of itself). Basic pairs are looked for whole only: their
    user part is not secret, and their secret part is a canary of its own."""

    def __init__(self, canaries: Iterable[str], pairs: Iterable[str] = ()) -> None:
        self.whole: dict[str, str] = {}
        self.chunks: dict[str, str] = {}
        for canary in canaries:
            for form in forms(canary):
                self.whole[form] = canary
                if form.startswith("Bearer "):
                    continue
                for i in range(len(form) - CHUNK + 1):
                    self.chunks.setdefault(form[i : i + CHUNK], canary)
        for pair in pairs:
            for form in forms(pair):
                self.whole.setdefault(form, pair)

    def scan(self, text: str) -> dict[str, str]:
        """canary -> the first form or stretch of it found in ``text``."""
        found: dict[str, str] = {}
        for form, canary in self.whole.items():
            if canary not in found and form in text:
                found[canary] = form
        chunks = self.chunks
        for i in range(len(text) - CHUNK + 1):
            canary = chunks.get(text[i : i + CHUNK])
            if canary is not None and canary not in found:
                found[canary] = text[i : i + CHUNK]
        return found


def echo_blob(canaries: Iterable[str]) -> str:
    """Every canary of every connector in every form: what an answer echoing another target's request
    (or reflecting its own in another encoding) could hold."""
    parts: list[str] = []
    for canary in sorted(canaries):
        raw = canary.encode()
        parts += [
            canary,
            quote(canary, safe=""),
            b64(raw),
            f"Bearer {canary}",
            b64(f"Basic x{canary}".encode()),
        ]
    return " ".join(parts)
