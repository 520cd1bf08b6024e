"""Jira connector (Cloud REST v3 + ADF, or Data Center REST v2): one issue per event, deduplicated by label.

See :mod:`cavra.connectors.jira.connector` for the flow and docs/connectors/jira.md for the settings.
"""

from __future__ import annotations

from cavra.connectors.jira.connector import JiraConnector, JiraState
from cavra.connectors.jira.content import dedup_label
from cavra.connectors.jira.settings import DEFAULT_PRIORITIES, JiraSettings

__all__ = ["DEFAULT_PRIORITIES", "JiraConnector", "JiraSettings", "JiraState", "dedup_label"]
