"""Every configured secret is known to the redactor in every form it takes on the wire, for every target
(issue 12, "Secrets"), text is redacted before it is cut, and the ``Splunk <token>`` rule reads only an
Authorization context (issue 15 item 6)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from cavra.config import LoadedConfig, config_from_data
from cavra.connectors.base import Response
from cavra.connectors.slack import error_string
from cavra.redaction import Redactor, clip
from cavra.secrets import REDACTED, Secret

SLACK_URL = "https://hooks.slack.com/services/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001"
TEAMS_SIG = "canaryTeamsSig0123456789abcdefXYZ"
TEAMS_URL = (
    "https://prod-12.westus.logic.azure.com:443/workflows/0c4a1e1b6d2f4e7a9b3c5d8e0f1a2b3c/triggers/manual/"
    f"paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={TEAMS_SIG}"
)
WEBHOOK_URL = "https://hookuser:canaryHookPass-77@receiver.example.test/ingest/canaryPathToken9f8e7d"
JIRA_TOKEN = "canary-jira-api-token-5c1e"
JIRA_EMAIL = "bot@example.test"
SENTINEL_SECRET = "canary-sentinel-secret~Qx7vR2mK9pL4"

ENV = {
    "SLACK_URL": SLACK_URL,
    "TEAMS_URL": TEAMS_URL,
    "WEBHOOK_URL": WEBHOOK_URL,
    "JIRA_TOKEN": JIRA_TOKEN,
    "SENTINEL_SECRET": SENTINEL_SECRET,
    "SPLUNK_URL": "https://splunk.example.test/services/collector",
    "SPLUNK_TOKEN": "canary-splunk-token-0b1e",
}


def loaded() -> LoadedConfig:
    data: dict[str, Any] = {
        "connectors": {
            "slack": {"url_env": "SLACK_URL"},
            "teams": {"url_env": "TEAMS_URL"},
            "webhook": {"url_env": "WEBHOOK_URL"},
            "jira": {
                "url": "https://example.atlassian.net",
                "email": JIRA_EMAIL,
                "api_token_env": "JIRA_TOKEN",
                "project_key": "OPS",
                "issue_type": "Task",
            },
            "sentinel": {
                "mode": "logs_ingestion",
                "url": "https://dce.example.test",
                "dcr_immutable_id": "dcr-0123456789abcdef0123456789abcdef",
                "stream_name": "Custom-CavraEvents",
                "tenant_id": "7a3c1e52-9d4b-4f6e-8a21-0c5b7e9d3f10",
                "client_id": "3f9e2a7c-1b6d-4c8e-9f04-5a2d7b1c8e63",
                "client_secret_env": "SENTINEL_SECRET",
            },
            "splunk": {"url_env": "SPLUNK_URL", "token_env": "SPLUNK_TOKEN"},
        }
    }
    config = config_from_data(data, "test.json", ENV)
    assert not config.errors, config.errors
    return config


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


#: (what, the secret as it appears on the wire or in an echo)
WIRE = [
    ("slack path secret", "canarySlackHookSecret000001"),
    ("slack T/B/secret path", "T0CANARY1/B0CANARY2/canarySlackHookSecret000001"),
    ("slack path, URL-encoded", quote("/services/T0CANARY1/B0CANARY2/canarySlackHookSecret000001", safe="")),
    ("teams sig", TEAMS_SIG),
    ("teams sig query pair", f"sig={TEAMS_SIG}"),
    ("teams workflow id", "0c4a1e1b6d2f4e7a9b3c5d8e0f1a2b3c"),
    ("webhook path token", "canaryPathToken9f8e7d"),
    ("webhook user-info password", "canaryHookPass-77"),
    ("webhook user-info pair", "hookuser:canaryHookPass-77"),
    ("webhook Basic header aiohttp builds from user-info", "Basic " + b64("hookuser:canaryHookPass-77")),
    ("jira Basic pair", f"{JIRA_EMAIL}:{JIRA_TOKEN}"),
    ("jira Basic pair base64", b64(f"{JIRA_EMAIL}:{JIRA_TOKEN}")),
    # the user part (18 bytes: 24 base64 characters) is not secret; the rest is
    ("jira Basic pair base64 of another user", b64(f"someone@else.test:{JIRA_TOKEN}")),
    ("jira token URL-encoded", quote(JIRA_TOKEN, safe="")),
    ("splunk token with its scheme", "Splunk canary-splunk-token-0b1e"),
    ("splunk token base64 with its scheme", b64("Splunk canary-splunk-token-0b1e")),
    ("sentinel secret in a form body", "client_secret=" + quote(SENTINEL_SECRET, safe="")),
    ("sentinel secret base64 inside a longer base64", b64("grant=x&client_secret=" + SENTINEL_SECRET)),
]


def leaked_fragment(secret_form: str, out: str) -> bool:
    """Whether ``out`` still holds a meaningful part of ``secret_form`` (8 characters or more of it, or of
    what is left of it once a known scheme word and separators are set aside)."""
    core = secret_form
    if secret_form == b64(f"someone@else.test:{JIRA_TOKEN}"):
        core = secret_form[24:]
    if secret_form == b64("Splunk canary-splunk-token-0b1e"):
        # base64 works in 3-byte groups: the group holding "Splunk " and the token's first 2 bytes stays
        core = secret_form[12:]
    if secret_form == b64("grant=x&client_secret=" + SENTINEL_SECRET):
        core = secret_form[32:]  # 22 bytes before the secret: 7 groups, then 1 byte with 2 of the secret
    for scheme in ("Basic ", "Splunk ", "Bearer ", "sig=", "client_secret="):
        core = core.removeprefix(scheme)
    return any(core[i : i + 8] in out for i in range(max(1, len(core) - 7)))


def test_every_target_redacts_every_wire_form_of_every_targets_secret() -> None:
    config = loaded()
    redactors = {name: t.redactor for name, t in config.targets.items()}
    redactors["config-wide"] = config.redactor
    for name, redactor in redactors.items():
        for what, form in WIRE:
            out = redactor.scrub(f"the provider said: <{form}> ok")
            assert not leaked_fragment(form, out), (name, what, out)
            assert out.startswith("the provider said: <") and out.endswith("> ok"), (name, what, out)


def test_the_request_evidence_of_a_webhook_url_keeps_only_its_host() -> None:
    red = loaded().targets["webhook"].redactor
    assert red.url(WEBHOOK_URL) == f"https://{REDACTED}@receiver.example.test/{REDACTED}"
    slack = loaded().targets["slack"].redactor
    assert slack.url(SLACK_URL) == f"https://hooks.slack.com/{REDACTED}"
    teams = str(loaded().targets["teams"].redactor.url(TEAMS_URL))
    assert teams.startswith("https://prod-12.westus.logic.azure.com:443/") and TEAMS_SIG not in teams


def test_common_words_of_configured_urls_stay_readable() -> None:
    red = loaded().redactor
    text = "POST /services/collector answered 503; api-version 2016-06-01; see the workflows invoke page"
    assert red.scrub(text) == text


def test_a_bearer_token_is_learned_bare_from_its_header_value() -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOi.canary-sentinel-access-token"
    red = Redactor().with_secrets([Secret(f"Bearer {token}")])
    for form in (token, quote(token, safe=""), b64(token), b64("x" + token), b64("xy" + token)):
        out = red.scrub(f"echo {form} end")
        assert not leaked_fragment(form, out), out


def test_a_basic_header_teaches_its_pair_and_password() -> None:
    red = Redactor().with_secrets([Secret("Basic " + b64("svc.user:canary-password-31"))])
    assert red.scrub("svc.user:canary-password-31") == REDACTED
    assert "canary-password-31" not in red.scrub("password was canary-password-31")


def test_text_is_redacted_before_it_is_cut() -> None:
    """Slack's error text is cut at 120 characters: base64 of the Sentinel secret straddling the cut."""
    config = loaded()
    encoded = b64(SENTINEL_SECRET)
    head = "x" * (120 - len(encoded) + 4)  # the cut falls 4 characters before the end of the secret
    answer = Response(status=400, headers={}, body=f"{head}{encoded} trailing".encode())
    reason = f"slack: HTTP 400 {error_string(answer)}"
    assert encoded[:-4] in reason, "the test must really cut through the secret"
    for name, target in config.targets.items():
        out = target.redactor.text(reason)
        assert encoded[:12] not in out, (name, out)
    # the redactor's own helper: redact, then cut
    assert encoded[:8] not in config.redactor.clip(f"{head}{encoded}", 120)
    # and a plain clip of redacted text never shows a partial form
    assert config.redactor.clip("a" * 200, 10) == "a" * 10 + "…"
    assert clip("short", 10) == "short"


def test_a_response_excerpt_is_redacted_before_it_is_cut() -> None:
    """The excerpt decodes a bounded window of the body; a secret straddling that window is scrubbed."""
    red = Redactor([SENTINEL_SECRET])
    body = (SENTINEL_SECRET * 29 + SENTINEL_SECRET).encode()  # the 2 * 512 byte window cuts the last one
    assert len(SENTINEL_SECRET) * 29 < 1024 < len(body)
    out = red.excerpt(body)
    assert not leaked_fragment(SENTINEL_SECRET, out.replace(REDACTED, " ")), out


# -- issue 15 item 6: "Splunk <token>" only where an Authorization value stands ------------------------
_event_id = st.from_regex(r"evt_[A-Za-z0-9_]{6,40}", fullmatch=True)
_token = st.from_regex(r"[A-Za-z0-9]{4}[0-9A-Z][A-Za-z0-9-]{8,36}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(event_id=_event_id, attempts=st.integers(min_value=1, max_value=99))
def test_a_splunk_log_line_keeps_its_event_id(event_id: str, attempts: int) -> None:
    red = Redactor()
    for line in (
        f"provider=splunk event_id={event_id} attempts={attempts}",
        f"splunk delivery failed: HTTP 503 for {event_id}",
        f"provider=SharedKey {event_id}",
        f"to splunk {event_id}",
    ):
        assert red.scrub(line) == line


@settings(max_examples=300, deadline=None)
@given(token=_token, quote_char=st.sampled_from(["", '"', "'"]))
def test_an_authorization_shaped_splunk_token_is_still_redacted(token: str, quote_char: str) -> None:
    red = Redactor()
    for text in (
        f"Authorization: {quote_char}Splunk {token}{quote_char}",
        f"authorization={quote_char}Splunk {token}",
        f"Splunk {token}",
        f'{{"Authorization": "SharedKey {token}"}}',
    ):
        out = red.scrub(text)
        assert token not in out, text
        assert REDACTED in out, text


def test_a_long_token_cut_inside_a_token_answer_is_not_shown() -> None:
    """A real Entra token is 1.5-2.5 KB: the excerpt window (1 KB) cuts it before its closing quote, and
    the token is not yet known when the token step's attempt is recorded."""
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "abcDEF123_-" * 200
    body = json.dumps({"token_type": "Bearer", "expires_in": 3599, "access_token": token}).encode()
    out = Redactor().excerpt(body)
    assert token[40:60] not in out and "abcDEF123" not in out, out
    assert '"access_token": "**REDACTED**' in out


def test_a_body_the_transport_cut_is_redacted_as_cut() -> None:
    """``max_response_bytes`` cuts the body before the redactor sees it: its end is a cut as well."""
    red = Redactor([SENTINEL_SECRET])
    body = f"echo: {SENTINEL_SECRET}"[:-5].encode()
    assert SENTINEL_SECRET[:-5] in red.excerpt(body)  # not known to be cut: nothing to scrub
    out = red.excerpt(body, truncated=True)
    assert SENTINEL_SECRET[:8] not in out and out.endswith("…"), out


def test_a_request_whose_secrets_are_all_known_reuses_the_targets_redactor() -> None:
    """The hot path: an Authorization header or webhook URL parts built from configured secrets teach
    nothing new, so no redactor is built per request."""
    config = loaded()
    splunk = config.targets["splunk"].redactor
    assert splunk.with_secrets([Secret("Splunk canary-splunk-token-0b1e")]) is splunk
    jira = config.targets["jira"].redactor
    pair = f"{JIRA_EMAIL}:{JIRA_TOKEN}"
    assert jira.with_secrets([Secret("Basic " + b64(pair)), Secret(pair)]) is jira
    slack = config.targets["slack"].redactor
    assert slack.with_secrets([Secret("T0CANARY1/B0CANARY2/canarySlackHookSecret000001")]) is slack
    # a credential it does not know yet is learned, bare too
    learned = splunk.with_secrets([Secret("Bearer minted-access-token-0123456789")])
    assert learned is not splunk and learned.scrub("minted-access-token-0123456789") == REDACTED
