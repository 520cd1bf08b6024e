"""The one redactor.

Everything that leaves the delivery engine as evidence, error text or log line passes through a
:class:`Redactor`. It knows every configured secret of every target in every form it can take on the wire
(:mod:`cavra.secretforms`: encoded forms, URL parts, bare credentials of header values, Basic pairs; the
configuration builds one redactor for all targets and gives each target that one with its own rules) and
applies fixed rules: credential headers, URL query values, URL user-info, and secret URL paths (Slack,
Teams and generic webhook URLs).

Text is redacted first, then cut (:meth:`Redactor.clip`, :meth:`Redactor.excerpt`). A connector, which has
no redactor, cuts provider text with :func:`cavra.secretforms.clip`, which marks the cut; the redactor
scrubs a partial secret form that ends at such a mark.

:class:`Redacted` strings can only be built here, so a field typed ``Redacted`` cannot receive raw text by
mistake; mypy catches the bypass.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from cavra.secretforms import (
    CUT,
    MIN_SECRET_LENGTH,
    clip,
    clip_bytes,
    drop_partials,
    encoded_forms,
    is_url,
    prefixes_of,
    secret_parts,
)
from cavra.secrets import REDACTED, Secret

__all__ = ["CUT", "MIN_SECRET_LENGTH", "Redacted", "RedactedRequest", "Redactor", "clip", "clip_bytes"]

_TOKEN = object()

#: Headers whose value is a credential whatever the provider.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "dd-api-key",
        "dd-application-key",
        "x-auth-token",
        "x-splunk-token",
        "x-functions-key",
        "x-ms-shared-key",
        "private-token",
    }
)

# Defence in depth: shapes that are credentials even when nobody told us the value.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "<scheme> <value>" when the value looks like a credential (an upper-case letter, digit or base64
    # sign in it), so prose such as "Basic authentication failed" stays readable
    (
        re.compile(r"\b((?i:bearer|basic))\s+(?=[A-Za-z0-9._~+/=:-]*[A-Z0-9+/=])[A-Za-z0-9._~+/=:-]{8,}"),
        r"\1 " + REDACTED,
    ),
    # "Splunk <token>" and "SharedKey <account:signature>" only where an Authorization value stands (the
    # start of the text, a quote, or after "Authorization:" / "authorization="): "provider=splunk
    # event_id=evt_…" in a log line is not a credential
    (
        re.compile(
            r"((?:^|[\"']|\b(?i:authorization)[\"']?\s*[:=]\s*[\"']?)(?i:splunk|sharedkey))\s+"
            r"(?=[A-Za-z0-9._~+/=:-]*[A-Z0-9+/=])[A-Za-z0-9._~+/=:-]{8,}"
        ),
        r"\1 " + REDACTED,
    ),
    (re.compile(r"\b((?i:token))\s+(?=[A-Za-z0-9._~+/=:-]*\d)[A-Za-z0-9._~+/=:-]{16,}"), r"\1 " + REDACTED),
    (
        re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),
        "https://hooks.slack.com/" + REDACTED,
    ),
    (
        re.compile(
            r"(?i)((?:^|[?&\s;,])(?:sig|signature|code|token|api_key|apikey|key|access_token)=)[^&\s\"']+"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"whsec_[A-Za-z0-9+/=]{8,}"), REDACTED),
    # a JSON credential field; the closing quote may be missing when the text was cut inside the value (a
    # 2 KB Entra token in a 1 KB excerpt window)
    (
        re.compile(
            r"(?i)(\"(?:access_token|refresh_token|client_secret|password|token)\"\s*:\s*\")[^\"]*(\"?)"
        ),
        r"\1" + REDACTED + r"\2",
    ),
)

#: For each pattern above, lower-case words of which (ASCII) text must hold one for the pattern to match at
#: all. Skipping a pattern whose words are absent is the redactor's fast path: most texts (status lines,
#: header values, provider answers) hold none of them, and a regex scan costs far more than ``in``. A
#: replacement only inserts ``**REDACTED**`` (``*`` at both ends), so it never creates a word for a later
#: pattern. Text that is not ASCII runs every pattern: ``(?i)`` also matches non-ASCII case variants
#: (the long s U+017F for ``s``, the Kelvin sign U+212A for ``k``) that ``str.lower`` does not fold.
_GATES: tuple[tuple[str, ...], ...] = (
    ("bearer", "basic"),
    ("splunk", "sharedkey"),
    ("token",),
    ("hooks.slack.com/services/",),
    ("sig=", "signature=", "code=", "token=", "key="),
    ("whsec_",),
    ('token"', 'client_secret"', 'password"'),
)
assert len(_GATES) == len(_PATTERNS)
_GATED = tuple((pattern, repl, gate) for (pattern, repl), gate in zip(_PATTERNS, _GATES, strict=True))


#: any gate word at all: most texts hold none, and one scan for all of them costs less than a test per word
_ANY_GATE = re.compile("|".join(re.escape(word) for gate in _GATES for word in gate))


def _defence(text: str) -> str:
    """Apply the defence-in-depth patterns, skipping those that cannot match."""
    if text.isascii():
        lower = text.lower()
        if _ANY_GATE.search(lower) is None:
            return text
        for pattern, repl, gate in _GATED:
            if any(word in lower for word in gate):
                text = pattern.sub(repl, text)
        return text
    for pattern, repl, _gate in _GATED:
        text = pattern.sub(repl, text)
    return text


class Redacted(str):
    """Text that has been through the redactor. Build it with :class:`Redactor`, never directly."""

    __slots__ = ()

    def __new__(cls, value: str, _token: object = None) -> Redacted:
        if _token is not _TOKEN:
            raise TypeError("Redacted text can only be built by cavra.redaction.Redactor")
        return super().__new__(cls, value)


@dataclass(frozen=True)
class RedactedRequest:
    """What an auditor may see of a request: method, redacted URL, redacted headers."""

    method: str
    url: Redacted
    headers: dict[str, Redacted]

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "url": str(self.url),
            "headers": {k: str(v) for k, v in self.headers.items()},
        }


#: the encoded forms of one secret (kept under this name for the property tests)
_forms = encoded_forms


class Redactor:
    """Redacts text, URLs, headers and requests for one target (or several, merged).

    A secret is learned with every form it can take on the wire (:mod:`cavra.secretforms`): encoded forms,
    and the secret parts of URLs, ``<scheme> <credential>`` header values and Basic credentials.
    """

    def __init__(
        self,
        secrets: Iterable[Secret | str] = (),
        *,
        secret_url_path: bool = False,
        extra_credential_headers: Iterable[str] = (),
    ) -> None:
        self._originals: list[Secret | str] = []
        self._known: set[str] = set()
        self._forms: set[str] = set()
        self._whole_urls: set[str] = set()
        self._secret_url_path = secret_url_path
        self._credential_headers = CREDENTIAL_HEADERS | {h.lower() for h in extra_credential_headers}
        self._learn(secrets)
        self._index()

    def _learn(self, secrets: Iterable[Secret | str]) -> bool:
        """Add secrets (their forms and secret parts, built once here); whether any was new."""
        new = False
        for s in secrets:
            plain = s.reveal() if isinstance(s, Secret) else s
            if not plain or len(plain) < MIN_SECRET_LENGTH or plain in self._known:
                continue
            if self._covered(plain):
                self._known.add(plain)
                continue
            new = True
            self._originals.append(s)
            self._known.add(plain)
            forms = encoded_forms(plain)
            self._forms |= forms
            if is_url(plain):
                self._whole_urls |= forms
            for part in secret_parts(plain):
                if part not in self._known:
                    self._known.add(part)
                    self._forms |= encoded_forms(part)
        return new

    def _covered(self, plain: str) -> bool:
        """A header value ``<scheme> <credential>`` whose credential is already known adds nothing: its raw
        and URL-encoded forms hold a known form, and its base64 holds one at some alignment (likewise a
        path made of known segments). Knowing this keeps the hot path from building a new redactor for
        every request's ``Authorization`` header or webhook URL."""
        if "/" in plain and all(p in self._known for p in plain.split("/") if p):
            return True  # a webhook path's parts (Slack's T…/B…/secret), each already known
        scheme, sep, credential = plain.partition(" ")
        return (
            bool(sep)
            and scheme.isalpha()
            and len(scheme) <= 20
            and len(credential) >= 12
            and (credential in self._forms or credential.rstrip("=") in self._forms)
        )

    def _index(self) -> None:
        """The lookup lists, built once per secret set (a redactor never changes after this)."""
        # longest first, so a secret containing another is replaced whole
        self._values = sorted(self._forms, key=len, reverse=True)
        # A configured URL is scrubbed whole wherever it is echoed, but the URL shown as request evidence is
        # redacted by the URL rules (user-info, query values, secret paths) so the host stays visible.
        self._url_values = sorted(self._forms - self._whole_urls, key=len, reverse=True)
        # negated lengths (ascending), to skip at once the forms longer than a text
        self._value_keys = [-len(v) for v in self._values]
        self._url_value_keys = [-len(v) for v in self._url_values]
        self._prefixes: tuple[frozenset[str], int] | None = None

    def _copy(self) -> Redactor:
        merged = Redactor.__new__(Redactor)
        merged._originals = list(self._originals)
        merged._known = set(self._known)
        merged._forms = set(self._forms)
        merged._whole_urls = set(self._whole_urls)
        merged._secret_url_path = self._secret_url_path
        merged._credential_headers = self._credential_headers
        return merged

    def with_secrets(self, secrets: Iterable[Secret | str]) -> Redactor:
        """A redactor that also knows these secrets (for example a token fetched during delivery).

        The encoded forms already built are reused; when every secret is already known the answer is this
        redactor itself (redactors never change once built, so sharing one is safe)."""
        merged = self._copy()
        if not merged._learn(secrets):
            return self
        merged._index()
        return merged

    def configured(
        self, *, secret_url_path: bool = False, extra_credential_headers: Iterable[str] = ()
    ) -> Redactor:
        """This redactor's secrets (the lookup lists shared, not rebuilt) with one target's URL and header
        rules: how a configuration-wide redactor becomes each target's."""
        out = Redactor.__new__(Redactor)
        out.__dict__.update(self.__dict__)
        out._secret_url_path = secret_url_path
        out._credential_headers = CREDENTIAL_HEADERS | {h.lower() for h in extra_credential_headers}
        return out

    # -- text -----------------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        return self._scrub(text, self._values, self._value_keys)

    def _scrub(self, text: str, values: list[str], keys: list[int]) -> str:
        # values is longest first; those longer than the text cannot be in it (nor in the text after a
        # replacement: replacements happen only once every longer value has been looked for)
        for value in values[bisect_left(keys, -len(text)) :]:
            if value in text:
                text = text.replace(value, REDACTED)
        if CUT in text and values:
            text = self._drop_partials(text)
        return _defence(text)

    def _drop_partials(self, text: str) -> str:
        """A secret form cut short (by :func:`clip`) at a cut mark is scrubbed too."""
        if self._prefixes is None:  # built on first need: most texts are never cut
            self._prefixes = prefixes_of(self._values)
        prefixes, longest = self._prefixes
        return drop_partials(text, prefixes, longest)

    def text(self, text: str) -> Redacted:
        return Redacted(self.scrub(text), _TOKEN)

    def clip(self, text: str, limit: int) -> Redacted:
        """Redact first, then cut to ``limit`` characters (a cut is marked with ``…``)."""
        return Redacted(clip(self.scrub(text), limit), _TOKEN)

    def excerpt(self, body: bytes, limit: int = 512, *, truncated: bool = False) -> Redacted:
        """A redacted, bounded excerpt of a response body, for evidence: redacted first, then cut.

        Only the first ``2 * limit`` bytes are decoded (a body may be large); that cut is marked, so a
        secret straddling it is scrubbed as a partial form before the excerpt is cut to ``limit``.
        ``truncated``: the body itself was cut (the transport's ``max_response_bytes``), so its end is a
        cut too."""
        snippet = clip_bytes(body, limit * 2)
        if truncated and not snippet.endswith(CUT):
            snippet += CUT
        return Redacted(clip(self.scrub(snippet), limit), _TOKEN)

    # -- URLs -----------------------------------------------------------------------------------------
    def url(self, url: str) -> Redacted:
        try:
            parts = urlsplit(url)
        except ValueError:
            return Redacted(REDACTED, _TOKEN)
        netloc = parts.hostname or ""
        if ":" in netloc:  # IPv6 literal
            netloc = f"[{netloc}]"
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is not None:
            netloc = f"{netloc}:{port}"
        if parts.username is not None or parts.password is not None:
            netloc = f"{REDACTED}@{netloc}"
        path = parts.path
        if self._secret_url_path and path not in ("", "/"):
            path = "/" + REDACTED
        query = ""
        if parts.query:
            pairs = []
            for pair in parts.query.split("&"):
                key = pair.split("=", 1)[0]
                pairs.append(f"{key}={REDACTED}" if key else REDACTED)
            query = "&".join(pairs)
        rebuilt = urlunsplit((parts.scheme, netloc, path, query, ""))
        return Redacted(self._scrub(rebuilt, self._url_values, self._url_value_keys), _TOKEN)

    # -- headers and requests -------------------------------------------------------------------------
    def header(self, name: str, value: str | Secret) -> Redacted:
        lname = name.lower()
        if isinstance(value, Secret) or lname in self._credential_headers:
            plain = value.reveal() if isinstance(value, Secret) else value
            scheme, sep, _rest = plain.partition(" ")
            if sep and scheme.isalpha() and len(scheme) <= 20:
                return Redacted(f"{scheme} {REDACTED}", _TOKEN)
            return Redacted(REDACTED, _TOKEN)
        return Redacted(self.scrub(value), _TOKEN)

    def headers(self, headers: Mapping[str, str | Secret]) -> dict[str, Redacted]:
        return {name: self.header(name, value) for name, value in headers.items()}

    def request(self, method: str, url: str, headers: Mapping[str, str | Secret]) -> RedactedRequest:
        return RedactedRequest(method=method.upper(), url=self.url(url), headers=self.headers(headers))
