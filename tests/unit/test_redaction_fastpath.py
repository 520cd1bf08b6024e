"""The redactor's fast paths give the same answers as the plain algorithm.

The plain algorithm (:func:`reference_scrub`): look for every encoded form of every known secret, longest
first, then run every defence pattern. The redactor skips forms longer than the text, skips patterns whose
key words are absent from ASCII text, and reuses the forms it already built when it learns more secrets.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from cavra.redaction import _PATTERNS, CUT, MIN_SECRET_LENGTH, Redactor, _forms
from cavra.secrets import REDACTED, Secret


def reference_scrub(text: str, secrets: list[str]) -> str:
    values: set[str] = set()
    for s in secrets:
        if len(s) >= MIN_SECRET_LENGTH:
            values |= _forms(s)
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    if values:
        text = reference_partials(text, values)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def reference_partials(text: str, values: set[str]) -> str:
    """Before each cut mark: the longest tail (4 characters or more) that begins some form is scrubbed."""
    pieces = text.split(CUT)
    for n, piece in enumerate(pieces[:-1]):
        for start in range(len(piece) - MIN_SECRET_LENGTH + 1):
            tail = piece[start:]
            if any(len(v) > len(tail) and v.startswith(tail) for v in values):
                pieces[n] = piece[:start] + REDACTED
                break
    return CUT.join(pieces)


def encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    ]


# fragments that trigger each defence pattern (and near misses), in ASCII and with the non-ASCII case
# variants that (?i) matches but str.lower does not fold (long s, Kelvin sign)
_FRAGMENTS = [
    "Bearer ",
    "basic ",
    "Splunk ",
    "SharedKey ",
    "\u017fplunk ",
    "token ",
    "to\u212aen ",
    "Token=",
    "?sig=",
    "&signature=",
    " code=",
    ";api_key=",
    ",APIKEY=",
    "&access_token=",
    "?\u212aey=",
    "whsec_",
    "https://hooks.slack.com/services/",
    '"access_token": "',
    '"Password":"',
    '"client_secret" : "',
    '"refresh_token":"',
    "eyJhbGciOiJIUzI1NiJ9.abc.DEF",
    "0b1e4a6c-aaaa-BBBB-cccc-1234567890ab",
    "T000/B000/XXXXXXXXXXXX",
    "ABCDEFGH12345678",
    " ",
    "&",
    '"',
    "=",
    "authentication failed",
    "HTTP 200",
    "…",
    "… ",
]
_SECRETS = [
    "s3cr3t/with+special=chars&more",
    "k-123456",
    "https://hooks.example.test/r/abc",
    "tok\u00e9n-\u017f-99",
]


_ascii = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
_fragment = st.sampled_from(_FRAGMENTS)
_encoded = st.sampled_from([f for s in _SECRETS for f in encodings(s)])
# a form cut short, as a connector's clip leaves it
_cut = st.builds(lambda f, n: f[: max(1, len(f) - n)] + CUT, _encoded, st.integers(min_value=1, max_value=6))


@settings(max_examples=500, deadline=None)
@given(
    # mostly ASCII (the gated path), sometimes any text (the path that runs every pattern)
    parts=st.lists(st.one_of(_fragment, _fragment, _encoded, _cut, _ascii, _ascii), max_size=10),
    extra=st.one_of(st.just(""), st.just(""), st.text(max_size=6)),
    known=st.lists(st.sampled_from(_SECRETS), unique=True),
)
def test_scrub_matches_the_plain_algorithm(parts: list[str], extra: str, known: list[str]) -> None:
    text = "".join(parts) + extra
    r = Redactor([Secret(s) for s in known])
    assert r.scrub(text) == reference_scrub(text, known)


def test_each_defence_pattern_still_fires_behind_its_gate() -> None:
    r = Redactor()
    cases = {
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc": "eyJhbGci",
        "SharedKey account:c2lnbmF0dXJl": "c2lnbmF0dXJl",
        "token 0b1e4a6c11112222333344445555": "0b1e4a6c",
        "POST https://hooks.slack.com/services/T000/B000/XXXXXXXX failed": "XXXXXXXX",
        "https://x.test/?sig=ABCDEF&channel=1": "ABCDEF",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": "MfKQ9r8G",
        "GET /x?api_key=abcdef&code=ghijkl": "abcdef",
        "a, APIKEY=mnopqr": "mnopqr",
        "sent with code=stuvwx": "stuvwx",
        '{"password": "hunter2"}': "hunter2",
        # non-ASCII case variants take the ungated path
        "\u017fplunk 0B1E4A6CAAAABBBB": "0B1E4A6C",
        "api_\u212aey=abcdef": "abcdef",
    }
    for text, leaked in cases.items():
        out = r.scrub(text)
        assert leaked not in out, text
        assert REDACTED in out, text


def test_a_short_text_is_still_searched_for_short_secrets() -> None:
    # the forms longer than the text are skipped; the ones that fit are still looked for
    r = Redactor([Secret("a-much-longer-secret-value-0123456789"), Secret("k-12")])
    assert r.scrub("k-12") == REDACTED
    assert r.scrub("x k-12 y") == f"x {REDACTED} y"
    assert r.url("https://k-12.example.test/") == f"https://{REDACTED}.example.test/"
    assert r.scrub("abc") == "abc"


def test_with_secrets_builds_a_new_redactor_that_knows_every_form() -> None:
    base = Redactor([Secret("first-secret")], secret_url_path=True, extra_credential_headers=["X-Ingest"])
    minted = "minted/token+value=1"
    learned = base.with_secrets([Secret(minted)])
    assert learned is not base
    for form in encodings(minted):
        assert form not in learned.scrub(f"<{form}>"), form
        # the redactor it came from is unchanged: it never learns by side effect
        assert base.scrub(f"<{form}>") == f"<{form}>", form
    assert learned.scrub("first-secret") == REDACTED
    # the settings carry over
    assert learned.header("X-Ingest", "plain") == REDACTED
    assert learned.url("https://hooks.example.test/a/b") == f"https://hooks.example.test/{REDACTED}"


def test_with_secrets_learning_nothing_new_answers_the_same_redactor() -> None:
    r = Redactor([Secret("first-secret")])
    assert r.with_secrets([]) is r
    assert r.with_secrets([Secret("first-secret"), "first-secret"]) is r
    assert r.with_secrets(["abc"]) is r  # too short to scrub, as in the constructor
    twice = r.with_secrets(["second-secret"])
    assert twice.with_secrets(["second-secret"]) is twice


def test_a_learned_url_is_scrubbed_whole_when_echoed_but_keeps_its_host_in_request_evidence() -> None:
    url = "https://minted.example.test/callback/path"
    r = Redactor().with_secrets([Secret(url)])
    assert url not in r.scrub(f"error posting to {url}")
    assert r.url(url) == url


def test_learning_in_steps_equals_knowing_everything_at_once() -> None:
    secrets = ["alpha-secret-1", "beta/secret+2", "https://gamma.example.test/hook", "delta-\u00e9-4"]
    stepwise = Redactor(secrets[:1])
    for s in secrets[1:]:
        stepwise = stepwise.with_secrets([s])
    whole = Redactor(secrets)
    text = " ".join(f for s in secrets for f in encodings(s)) + " Bearer ABCDEFGH12345678"
    assert stepwise.scrub(text) == whole.scrub(text) == reference_scrub(text, secrets)
    assert stepwise.url(secrets[2] + "?q=1") == whole.url(secrets[2] + "?q=1")
