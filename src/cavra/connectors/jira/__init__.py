"""Jira connector (Cloud REST v3 + ADF, or Data Center REST v2): one issue per event, deduplicated by label.

See :mod:`cavra.connectors.jira.connector` for the flow and docs/connectors/jira.md for the settings.
"""

from __future__ import annotations

from cavra.connectors.jira.connector import JiraConnector, JiraState
from cavra.connectors.jira.content import dedup_label
from cavra.connectors.jira.settings import DEFAULT_PRIORITIES, JiraSettings
from cavra.connectors.spec import ProviderSpec

__all__ = ["DEFAULT_PRIORITIES", "JiraConnector", "JiraSettings", "JiraState", "dedup_label"]


SPEC = ProviderSpec(
    name="jira",
    category="itsm",
    connector=JiraConnector,
    emulator="cavra.emulators.jira",
    example={
        "url_env": "JIRA_URL",
        "deployment": "cloud",
        "email": "cavra-bot@example.com",
        "api_token_env": "JIRA_API_TOKEN",
        "project_key": "SEC",
        "issue_type": "Task",
        "labels": ["cavra"],
    },
    example_env={"JIRA_URL": "https://example.atlassian.net", "JIRA_API_TOKEN": "jira-api-token-value-0001"},
)
