"""Every form a secret can take on the wire, and safe cutting.

The redactor (:mod:`cavra.redaction`) scrubs the forms built here:

* :func:`encoded_forms`: the value whole, URL-encoded, JSON-escaped and base64-encoded, the base64 forms at
  the three byte alignments (so the value is found inside the base64 of a longer text: a Basic pair
  ``user:secret`` whatever the user, ``Bearer <token>``, a whole echoed body);
* :func:`secret_parts`: the secret parts of a value: of a URL its user-info (user, password, the
  ``user:password`` pair that an HTTP client turns into a Basic header), its credential-named or
  credential-shaped query values and credential-shaped path segments (Slack's ``T…/B…/secret``, Teams'
  workflow id and ``sig``); of a header value ``<scheme> <credential>`` the credential (bare, without its
  scheme), and of a Basic credential the decoded pair and its password;
* :func:`url_path_secrets`: for providers whose URL path is the credential (Slack, Teams, generic webhook),
  the whole path;
* :func:`basic_pairs`: ``user:secret`` for the user names a settings object holds.

Text is cut with :func:`clip` (or :func:`clip_bytes`), which marks the cut with :data:`CUT`; the redactor
removes a partial secret form that ends at a cut mark, so a secret straddling a cut never gets through
even when a connector (which never holds the redactor) shortens provider text before it is redacted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

#: The shortest secret that is scrubbed as a substring; shorter ones are refused by the config loader.
MIN_SECRET_LENGTH = 4
#: A derived part (URL segment, query value) shorter than this is not treated as a secret on its own.
MIN_PART_LENGTH = 8
#: marks where :func:`clip` cut a text
CUT = "…"

_URL_RE = re.compile(r"^https?://", re.IGNORECASE)
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,19})\s+(\S{4,})$")
#: words that make a query key a credential's (``sig``, ``X-Amz-Signature``, ``access_token``, ``apikey``)
_CREDENTIAL_KEY_WORDS = ("sig", "token", "key", "secret", "password", "passwd", "auth", "code")
#: settings keys whose value is a user name paired with a secret in a Basic credential
USER_FIELDS = ("username", "email", "user")


def is_url(value: str) -> bool:
    return _URL_RE.match(value) is not None


def _b64_alignments(raw: bytes) -> set[str]:
    """The base64 of ``raw`` alone (unpadded: a padded text holds it too) and as it appears inside the base64
    of a longer text at each byte alignment (at most the 2 bytes that share a group with their neighbours
    are not covered)."""
    found = {
        base64.b64encode(raw).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
    }
    for skip in (0, 1, 2):
        middle = raw[skip:]
        middle = middle[: len(middle) - len(middle) % 3]
        if len(middle) >= 6:
            found.add(base64.b64encode(middle).decode("ascii"))
            found.add(base64.urlsafe_b64encode(middle).decode("ascii"))
    return found


def encoded_forms(value: str) -> set[str]:
    """The encoded forms a secret may take on the wire or in text. A URL is not looked for in base64 (no
    client encodes one; its secret parts, learned on their own, are)."""
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    if not is_url(value):
        forms |= _b64_alignments(value.encode("utf-8"))
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _credential_shaped(part: str) -> bool:
    """A URL part that looks like a credential rather than a word (``services``, ``invoke``, ``v2``)."""
    if len(part) < MIN_PART_LENGTH:
        return False
    if len(part) >= 16:
        return True
    return any(c.isdigit() for c in part) or any(c.isupper() for c in part)


def _url_parts(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return set()
    found: set[str] = set()
    for value in (user, password):
        if value:
            found |= {value, unquote(value)}
    if user is not None and password is not None:
        found |= {f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"}
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if any(word in key.lower() for word in _CREDENTIAL_KEY_WORDS):
            found |= {value, quote(value, safe="")}
    for segment in parts.path.split("/"):
        if _credential_shaped(unquote(segment)):
            found |= {segment, unquote(segment)}
    return {f for f in found if len(f) >= MIN_SECRET_LENGTH}


def _scheme_parts(value: str) -> set[str]:
    match = _SCHEME_RE.match(value)
    if match is None:
        return set()
    scheme, credential = match.groups()
    found = {credential}
    if scheme.lower() == "basic":
        try:
            pair = base64.b64decode(credential, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return found
        _user, sep, password = pair.partition(":")
        if sep:
            found.add(pair)
            if len(password) >= MIN_SECRET_LENGTH:
                found.add(password)
    return found


def secret_parts(value: str) -> set[str]:
    """The parts of a secret value that are secrets on their own (see the module docstring)."""
    parts = _url_parts(value) if is_url(value) else _scheme_parts(value)
    parts.discard(value)
    return parts


def url_path_secrets(url: str) -> list[str]:
    """For a provider whose URL path is the credential: the path, whole (a path too plain to be learned
    segment by segment, ``/hooks/abcdefg``, is still scrubbed where it is echoed)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    path = parts.path
    return [path] if len(path) >= MIN_PART_LENGTH else []


def basic_pairs(users: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """``user:secret`` for every user name and every secret that is not a URL."""
    plain = [s for s in secrets if not is_url(s)]
    return [f"{user}:{secret}" for user in users if user for secret in plain]


# -- cutting ---------------------------------------------------------------------------------------------
def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters; a cut is marked with :data:`CUT`, which tells the redactor that
    a secret form may end there partially (it scrubs such a partial form)."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit)] + CUT


def clip_bytes(body: bytes, limit: int) -> str:
    """The first ``limit`` bytes of ``body`` as text (invalid UTF-8 replaced), cut as :func:`clip` does."""
    text = body[:limit].decode("utf-8", errors="replace")
    return text + CUT if len(body) > limit else text


def drop_partials(text: str, prefixes: frozenset[str], longest: int) -> str:
    """Replace, before each cut mark, the longest tail that is the beginning of a secret form."""
    from cavra.secrets import REDACTED

    out: list[str] = []
    start = 0
    pos = text.find(CUT)
    while pos != -1:
        segment = text[start:pos]
        low = max(0, len(segment) - longest)
        for s in range(low, len(segment) - MIN_SECRET_LENGTH + 1):
            if segment[s:] in prefixes:
                segment = segment[:s] + REDACTED
                break
        out.append(segment + CUT)
        start = pos + len(CUT)
        pos = text.find(CUT, start)
    out.append(text[start:])
    return "".join(out)


def prefixes_of(forms: Iterable[str]) -> tuple[frozenset[str], int]:
    """The proper beginnings (at least :data:`MIN_SECRET_LENGTH` long) of the forms, and the longest."""
    found: set[str] = set()
    longest = 0
    for form in forms:
        for n in range(MIN_SECRET_LENGTH, len(form)):
            found.add(form[:n])
        longest = max(longest, len(form) - 1)
    return frozenset(found), longest
