"""Jira connector settings (the ``jira`` keys of docs/configuration.md), validated when the config loads."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, JsonValue, field_validator, model_validator

from cavra.connectors.base import ConnectorSettings
from cavra.errors import ConfigError
from cavra.events import SEVERITIES
from cavra.secrets import Secret

#: CAVRA severity -> Jira priority name (Jira's default priority scheme)
DEFAULT_PRIORITIES: dict[str, str] = {
    "critical": "Highest",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
    "info": "Lowest",
}
_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")
_CUSTOM_FIELD = re.compile(r"^customfield_\d+$")


class JiraSettings(ConnectorSettings):
    """Jira Cloud (REST v3, ADF, Basic ``email:api_token``) or Data Center (REST v2, Bearer PAT in ``token``).

    ``priority_map`` maps CAVRA severities to Jira priority names; when absent the default scheme is used
    (critical→Highest … info→Lowest); an empty map sends no priority (for projects whose create screen has
    no priority field). ``custom_fields`` are sent as given (``{"customfield_10010": "…"}``).
    """

    deployment: Literal["cloud", "datacenter"] = "cloud"
    email: str | None = None
    api_token: Secret | None = None
    project_key: str | None = None
    issue_type: str | None = None
    labels: list[str] = Field(default_factory=list)
    priority_map: dict[str, str] | None = None
    custom_fields: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("project_key")
    @classmethod
    def _upper_key(cls, value: str | None) -> str | None:
        return None if value is None else value.strip().upper()

    @model_validator(mode="after")
    def _check(self) -> JiraSettings:
        if self.url is None:
            raise ConfigError("jira: url is required (the site base, e.g. https://example.atlassian.net)")
        if not self.project_key:
            raise ConfigError("jira: project_key is required (the key of the project issues are created in)")
        if not _PROJECT_KEY.match(self.project_key):
            raise ConfigError(f"jira: project_key {self.project_key!r} is not a Jira project key (e.g. OPS)")
        if not self.issue_type or not self.issue_type.strip():
            raise ConfigError("jira: issue_type is required (e.g. Task)")
        if self.deployment == "cloud":
            if self.token is not None:
                raise ConfigError(
                    "jira: token (a personal access token) is for deployment datacenter; "
                    "Jira Cloud uses email + api_token"
                )
            if not self.email or "@" not in self.email:
                raise ConfigError(
                    "jira: email is required for deployment cloud (the account the api_token belongs to)"
                )
            if self.api_token is None:
                raise ConfigError("jira: api_token is required for deployment cloud")
        elif self.token is None:
            raise ConfigError("jira: token (a personal access token) is required for deployment datacenter")
        for label in self.labels:
            if not label or any(c.isspace() for c in label) or len(label) > 255:
                raise ConfigError(
                    f"jira: label {label!r} is invalid (labels are 1-255 characters without spaces)"
                )
        for severity, name in (self.priority_map or {}).items():
            if severity not in SEVERITIES:
                raise ConfigError(
                    f"jira: priority_map key {severity!r} is not a severity ({', '.join(SEVERITIES)})"
                )
            if not name.strip():
                raise ConfigError(f"jira: priority_map[{severity!r}] must be a priority name")
        for name in self.custom_fields:
            if not _CUSTOM_FIELD.match(name):
                raise ConfigError(f"jira: custom_fields key {name!r} must look like customfield_10010")
        return self

    def priority_for(self, severity: str) -> str | None:
        """The Jira priority name for a CAVRA severity, or None to send no priority."""
        mapping = DEFAULT_PRIORITIES if self.priority_map is None else self.priority_map
        return mapping.get(severity)

    @property
    def api_version(self) -> int:
        return 3 if self.deployment == "cloud" else 2
