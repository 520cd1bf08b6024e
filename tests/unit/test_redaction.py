"""The redactor: fixed rules, every configured secret and its encoded forms, and a property test."""

from __future__ import annotations

import base64
import json
import pickle
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cavra.redaction import Redacted, Redactor
from cavra.secrets import REDACTED, Secret


def test_secret_never_prints_itself() -> None:
    s = Secret("hunter2-very-secret")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert "hunter2" not in f"{s} {s!r} {s:>30}"
    assert s.reveal() == "hunter2-very-secret"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_redacted_cannot_be_built_outside_the_redactor() -> None:
    with pytest.raises(TypeError):
        Redacted("raw text")


def test_credential_headers_keep_only_the_scheme() -> None:
    r = Redactor()
    h = r.headers(
        {
            "Authorization": "Splunk 0b1e4a6c-aaaa-bbbb-cccc-1234567890ab",
            "DD-API-KEY": "abcdef0123456789",
            "X-Api-Key": "k-123456",
            "Cookie": "session=abc",
            "Content-Type": "application/json",
        }
    )
    assert h["Authorization"] == f"Splunk {REDACTED}"
    assert h["DD-API-KEY"] == REDACTED
    assert h["X-Api-Key"] == REDACTED
    assert h["Cookie"] == REDACTED
    assert h["Content-Type"] == "application/json"


def test_configured_api_key_header_is_redacted() -> None:
    r = Redactor(extra_credential_headers=["X-Ingest-Key"])
    assert r.header("x-ingest-key", "plain-value") == REDACTED


def test_secret_header_values_are_redacted_whatever_the_name() -> None:
    r = Redactor()
    assert r.header("X-Custom", Secret("Token abcdefgh12345")) == f"Token {REDACTED}"


def test_url_query_userinfo_and_secret_paths() -> None:
    r = Redactor()
    url = r.url("https://user:pa55word@splunk.example:8088/services/collector?token=abc&channel=x")
    assert "pa55word" not in url and "user" not in url
    assert "token=" + REDACTED in url and "abc" not in url
    assert url.startswith("https://" + REDACTED + "@splunk.example:8088/services/collector?")
    slack = Redactor(secret_url_path=True).url(
        "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
    )
    assert slack == f"https://hooks.slack.com/{REDACTED}"


def test_every_encoded_form_of_a_secret_is_scrubbed() -> None:
    secret = "s3cr3t/with+special=chars&more"
    r = Redactor([Secret(secret)])
    forms = [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(secret.encode()).decode(),
        json.dumps(secret)[1:-1],
    ]
    for form in forms:
        assert form not in r.scrub(f"before {form} after"), form


def test_unknown_credential_shapes_are_scrubbed() -> None:
    r = Redactor()
    text = r.scrub(
        'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def and {"access_token": "tok-xyz"} sig=ABCDEF'
    )
    assert "eyJhbGci" not in text
    assert "tok-xyz" not in text
    assert "ABCDEF" not in text


def test_with_secrets_learns_new_tokens() -> None:
    r = Redactor([Secret("first-secret")]).with_secrets([Secret("minted-token-123")])
    out = r.scrub("first-secret minted-token-123")
    assert "first-secret" not in out and "minted-token-123" not in out


_secret_alphabet = st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_categories=("Cs",))


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(alphabet=_secret_alphabet, min_size=8, max_size=40),
    prefix=st.text(max_size=30),
    suffix=st.text(max_size=30),
    form=st.sampled_from(["raw", "quote", "quote_plus", "b64", "json"]),
)
def test_property_a_known_secret_never_survives(secret: str, prefix: str, suffix: str, form: str) -> None:
    encoded = {
        "raw": secret,
        "quote": quote(secret, safe=""),
        "quote_plus": quote_plus(secret),
        "b64": base64.b64encode(secret.encode()).decode(),
        "json": json.dumps(secret, ensure_ascii=False)[1:-1],
    }[form]
    r = Redactor([Secret(secret)])
    out = r.scrub(prefix + encoded + suffix)
    assert encoded not in out
    # and URL and header redaction never leak it either
    assert secret not in r.url(f"https://example.test/p?x={quote(secret, safe='')}")
    assert secret not in r.header("Authorization", f"Bearer {secret}")


def test_a_configured_url_keeps_its_host_in_request_evidence_but_is_scrubbed_when_echoed() -> None:
    url = "https://hooks.example.test/receiver/path"
    r = Redactor([Secret(url)])
    assert r.url(url) == url  # no user-info, no query, not a secret-path provider: nothing to hide
    assert url not in r.scrub(f"error posting to {url}")
    with_query = Redactor([Secret(url + "?code=abcdef")])
    assert with_query.url(url + "?code=abcdef") == url + "?code=" + REDACTED
    slack = "https://hooks.slack.com/services/T0001/B0001/abcdefghijklmnopqrstuvwx"
    assert Redactor([Secret(slack)], secret_url_path=True).url(slack) == "https://hooks.slack.com/" + REDACTED


def test_prose_about_credentials_stays_readable() -> None:
    r = Redactor()
    for text in (
        "Basic authentication failed",
        "the Entra ID token endpoint answered HTTP 401",
        "Bearer authorization required",
    ):
        assert r.scrub(text) == text
    assert "dXNlcjpwYXNz" not in r.scrub("Basic dXNlcjpwYXNz")
    assert "0b1e4a6c" not in r.scrub("token 0b1e4a6c-aaaa-bbbb-cccc")
