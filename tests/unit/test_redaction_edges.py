"""The redactor's stable rules, pinned edge by edge (each test killed surviving mutants; docs/mutation.md).

Header-name redaction, URL user-info, query values and secret paths, the secret-length rule
(``MIN_SECRET_LENGTH``), the encoded forms of a secret and the bounded excerpt.
"""

from __future__ import annotations

import pytest

from cavra.redaction import CREDENTIAL_HEADERS, MIN_SECRET_LENGTH, Redactor
from cavra.secrets import REDACTED, Secret

R = REDACTED


# -- headers ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CREDENTIAL_HEADERS))
def test_every_credential_header_is_redacted_whatever_its_case(name: str) -> None:
    r = Redactor()
    assert r.header(name.upper(), "plainvalue") == R
    assert r.header(name.title(), "Bearer plainvalue") == f"Bearer {R}"


def test_other_headers_are_only_scrubbed_of_known_secrets() -> None:
    r = Redactor(["s3cr3t-value"], extra_credential_headers=["X-Custom-Auth"])
    assert r.header("X-Trace", "abc") == "abc"
    assert r.header("X-Trace", "id s3cr3t-value") == f"id {R}"
    assert r.header("x-custom-auth", "anything") == R
    assert r.header("X-Trace", Secret("Token abc")) == f"Token {R}"  # a Secret value is always redacted


def test_the_scheme_is_kept_only_when_it_looks_like_one() -> None:
    r = Redactor()
    assert r.header("Authorization", "Bearer abc def") == f"Bearer {R}"  # the first word is the scheme
    assert r.header("Authorization", "A" * 20 + " x") == "A" * 20 + f" {R}"
    assert r.header("Authorization", "A" * 21 + " x") == R
    assert r.header("Authorization", "Bear3r x") == R
    assert r.header("Authorization", "Bearer") == R


def test_the_request_method_is_upper_case() -> None:
    req = Redactor().request("post", "https://h.example/p", {})
    assert req.method == "POST" and req.url == "https://h.example/p" and req.headers == {}


# -- URLs -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://alice@h.example/p", f"https://{R}@h.example/p"),
        ("https://alice:pw@h.example/p", f"https://{R}@h.example/p"),
        ("https://:pw@h.example/p", f"https://{R}@h.example/p"),
        ("https://h.example:8443/p", "https://h.example:8443/p"),
        ("https://h.example:99999/p", "https://h.example/p"),  # an invalid port is dropped
        ("http://[::1]:8080/p", "http://[::1]:8080/p"),
        ("/ingest?x=1", f"/ingest?x={R}"),
        ("https://h.example/p?a=1&b=2", f"https://h.example/p?a={R}&b={R}"),
        ("https://h.example/p?a=b=c", f"https://h.example/p?a={R}"),
        ("https://h.example/p?a=1&&b=2", f"https://h.example/p?a={R}&{R}&b={R}"),
        ("https://h.example/p?=v&flag", f"https://h.example/p?{R}&flag={R}"),
        ("https://h.example/p#frag", "https://h.example/p"),
        ("http://[bad", R),
    ],
)
def test_url_rules(url: str, shown: str) -> None:
    assert Redactor().url(url) == shown


def test_secret_url_paths() -> None:
    r = Redactor(secret_url_path=True)
    assert r.url("https://hooks.example") == "https://hooks.example"
    assert r.url("https://hooks.example/") == "https://hooks.example/"
    assert r.url("https://hooks.example/T0/B0/xyz") == f"https://hooks.example/{R}"
    assert Redactor().url("https://hooks.example/T0/B0/xyz") == "https://hooks.example/T0/B0/xyz"


def test_configured_urls_stay_readable_in_evidence_but_not_in_text() -> None:
    first, second = "https://a.example/in/tok-aaaa", "https://b.example/in/tok-bbbb"
    r = Redactor([first, second, "pathsecret"])
    assert r.url(first) == first  # the URL rules decide what evidence shows, the host stays visible
    assert r.url(second) == second
    assert r.url("https://c.example/pathsecret") == f"https://c.example/{R}"
    assert r.scrub(f"echo {first} and {second}") == f"echo {R} and {R}"


# -- secrets and their forms ------------------------------------------------------------------------------
def test_secret_length_rule() -> None:
    assert MIN_SECRET_LENGTH == 4
    short = "x" * (MIN_SECRET_LENGTH - 1)
    exact = "y" * MIN_SECRET_LENGTH
    r = Redactor([short, exact])
    assert r.scrub(f"a {short} b") == f"a {short} b"
    assert r.scrub(f"a {exact} b") == f"a {R} b"


def test_skipped_secrets_do_not_stop_the_others() -> None:
    r = Redactor(["", "ab", "dup-secret", "dup-secret", Secret("third-secret")])
    assert r.scrub("dup-secret third-secret") == f"{R} {R}"


def test_percent_encoded_forms_including_slashes() -> None:
    r = Redactor(["a b/c+d"])
    assert r.scrub("q=a%20b%2Fc%2Bd;") == f"q={R};"
    assert r.scrub("q=a+b%2Fc%2Bd;") == f"q={R};"


def test_json_escaped_forms() -> None:
    value = 'pa"ss\\wörd'
    r = Redactor([value])
    assert r.scrub('{"p": "pa\\"ss\\\\w\\u00f6rd"}') == f'{{"p": "{R}"}}'
    assert r.scrub('{"p": "pa\\"ss\\\\wörd"}') == f'{{"p": "{R}"}}'
    assert r.scrub(f"raw {value}.") == f"raw {R}."


def test_base64_forms_with_and_without_padding() -> None:
    import base64

    value = "tok-secret-ab"  # 13 bytes: base64 needs padding
    padded = base64.b64encode(value.encode()).decode()
    assert padded.endswith("=")
    r = Redactor([value])
    for text in (f"<{padded}>", f"<{padded.rstrip('=')}>"):
        out = r.scrub(text)
        assert out.startswith(f"<{R}") and out.endswith(">")  # padding left over is no leak
        assert padded.rstrip("=")[:8] not in out
    plus = "tok~~~secret"  # its base64 holds a "+", which the URL-safe alphabet writes "-"
    assert Redactor([plus]).scrub("<dG9rfn5-c2VjcmV0>") == f"<{R}>"
    assert Redactor([plus]).scrub("<dG9rfn5+c2VjcmV0>") == f"<{R}>"


def test_longest_form_first() -> None:
    r = Redactor(["abcd", "abcdefgh"])
    assert r.scrub("xx abcdefgh yy abcd") == f"xx {R} yy {R}"


def test_with_secrets_learns_new_ones_and_shares_when_nothing_is_new() -> None:
    r = Redactor(["first-secret"])
    assert r.with_secrets(["first-secret", "ab"]) is r
    merged = r.with_secrets([Secret("minted-token")])
    assert merged is not r
    assert merged.scrub("first-secret minted-token") == f"{R} {R}"
    assert r.scrub("minted-token") == "minted-token"


# -- excerpts ---------------------------------------------------------------------------------------------
def test_excerpt_is_bounded_with_an_ellipsis_only_when_cut() -> None:
    r = Redactor()
    assert r.excerpt(b"a" * 10, limit=10) == "a" * 10
    assert r.excerpt(b"a" * 11, limit=10) == "a" * 10 + "…"
    assert r.excerpt(b"ok \xff\xfe end") == "ok \ufffd\ufffd end"
    assert r.excerpt(b"") == ""


def test_excerpt_redacts_before_it_cuts() -> None:
    r = Redactor(["0123456789abcdef"])
    assert r.excerpt(b"0123456789abcdef tail", limit=14) == f"{R} t…"


def test_excerpt_never_shows_the_head_of_a_long_secret() -> None:
    secret = "S" * 25
    r = Redactor([secret])
    assert "SSSS" not in r.excerpt(secret.encode(), limit=10)


def test_excerpt_default_limit_is_512_characters() -> None:
    r = Redactor()
    assert r.excerpt(b"b" * 512) == "b" * 512
    assert r.excerpt(b"b" * 513) == "b" * 512 + "…"


def test_text_is_scrubbed_and_typed() -> None:
    r = Redactor(["known-secret"])
    out = r.text("got known-secret back")
    assert out == f"got {R} back" and type(out).__name__ == "Redacted"


def test_redacted_request_as_a_dict() -> None:
    r = Redactor(["tok-123456"])
    req = r.request("get", "https://u:p@h.example/p?key=tok-123456", {"Authorization": "Bearer tok-123456"})
    assert req.to_dict() == {
        "method": "GET",
        "url": f"https://{R}@h.example/p?key={R}",
        "headers": {"Authorization": f"Bearer {R}"},
    }
    assert all(type(v) is str for v in req.to_dict()["headers"].values())  # type: ignore[union-attr]


def test_text_sharing_only_a_prefix_of_an_encoding_is_left_alone() -> None:
    import base64

    value = "tok-secret-aaaW"  # 15 bytes: unpadded base64, whose last character is "X"
    encoded = base64.b64encode(value.encode()).decode()
    assert encoded.endswith("X") and not encoded.endswith("=")
    r = Redactor([value])
    assert r.scrub(encoded) == R
    near = encoded[:-1] + "y"
    assert r.scrub(near) == near
