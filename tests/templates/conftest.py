"""Destinations of every templated provider, built through the config loader (as a connectors file would)."""

from __future__ import annotations

from typing import Any

from cavra.config import Target, target_from_mapping

ENV = {
    "SLACK_URL": "https://hooks.slack.com/services/T0CANARY1/B0CANARY1/slackCanarySecret0001",
    "TEAMS_URL": "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sig=teamsCanarySig000000000000000001",
    "TEAMS_LEGACY_URL": "https://acme.webhook.office.com/webhookb2/11111111-2222-3333-4444-555555555555"
    "@66666666-7777-8888-9999-000000000000/IncomingWebhook/legacyCanaryPath00000000000000001/"
    "77777777-8888-9999-0000-111111111111",
    "JIRA_URL": "https://acme.atlassian.net",
    "JIRA_TOKEN": "jiraCanaryApiToken000000000001",
    "SN_URL": "https://acme.service-now.com",
    "SN_PASSWORD": "snCanaryPassword00000000001",
    "WEBHOOK_URL": "https://receiver.example.com/hooks/webhookCanaryPath0001",
    "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "WEBHOOK_TOKEN": "webhookCanaryBearer000000001",
}
#: every secret value above: none may ever appear in a rendered message
CANARIES = [v for k, v in ENV.items() if k not in ("JIRA_URL", "SN_URL")] + [
    "slackCanarySecret0001",
    "teamsCanarySig000000000000000001",
    "legacyCanaryPath00000000000000001",
    "webhookCanaryPath0001",
]

ENTRIES: dict[str, tuple[str, dict[str, Any]]] = {
    "slack": ("slack", {"url_env": "SLACK_URL"}),
    "teams": ("teams", {"url_env": "TEAMS_URL"}),
    "teams-legacy": ("teams", {"url_env": "TEAMS_LEGACY_URL", "card_format": "messagecard"}),
    "jira": (
        "jira",
        {
            "url_env": "JIRA_URL",
            "email": "bot@example.com",
            "api_token_env": "JIRA_TOKEN",
            "project_key": "OPS",
            "issue_type": "Task",
        },
    ),
    "jira-dc": (
        "jira",
        {
            "url_env": "JIRA_URL",
            "deployment": "datacenter",
            "token_env": "JIRA_TOKEN",
            "project_key": "OPS",
            "issue_type": "Task",
        },
    ),
    "servicenow": (
        "servicenow",
        {"url_env": "SN_URL", "username": "cavra", "password_env": "SN_PASSWORD", "assignment_group": "ops"},
    ),
    "webhook": (
        "webhook",
        {"url_env": "WEBHOOK_URL", "signing_secret_env": "WEBHOOK_SECRET", "token_env": "WEBHOOK_TOKEN"},
    ),
}


#: prints every context value, and tries the ways around the sandbox to the settings' secrets
DUMP = (
    "{{ event }} {{ subject }} {{ destination }} {{ settings }} {{ summary }} {{ facts }} {{ link }} "
    "{% for k, v in settings.items() %}{{ k }}={{ v }};{% endfor %}"
    "{{ settings.url }}{{ settings.token }}{{ settings.api_token }}{{ settings.password }}"
    "{{ settings.headers }}"
    "{{ settings.signing_secret }}{{ settings.proxy_url }}{{ self }}{{ self._TemplateReference__context }}"
    "{{ cycler.__init__.__globals__ }}{{ joiner.__init__.__globals__ }}{{ range.__self__ }}"
)
#: a dumping template for every key of every provider that takes templates (the leak kit uses them too)
DUMP_TEMPLATES: dict[str, dict[str, Any]] = {
    "slack": {"text": DUMP},
    "teams": {"title": "{{ settings }} {{ destination }}", "text": DUMP},
    "jira": {"summary": DUMP, "description": DUMP, "comment": DUMP + "{{ issue_key }}{{ delivered_at }}"},
    "servicenow": {
        "short_description": DUMP,
        "description": DUMP,
        "work_notes": DUMP + "{{ number }}{{ delivered_at }}",
    },
    "webhook": {"fields": {"dump": DUMP, "everything": "{{ settings|tojson }}"}},
}


def target(name: str, templates: Any = None, **extra: Any) -> Target:
    provider, raw = ENTRIES[name]
    entry = {**raw, **extra}
    if templates is not None:
        entry["templates"] = templates
    return target_from_mapping(provider, entry, ENV, name=name, source="connectors.yaml")
