"""Provider name → connector class, explicit and lazily imported, with each provider's category."""

from __future__ import annotations

import importlib
from functools import cache

from cavra.connectors.base import Connector
from cavra.errors import ConfigError

#: provider -> (module, class, category)
PROVIDERS: dict[str, tuple[str, str, str]] = {
    "splunk": ("cavra.connectors.splunk", "SplunkConnector", "siem"),
    "sentinel": ("cavra.connectors.sentinel", "SentinelConnector", "siem"),
    "datadog": ("cavra.connectors.datadog", "DatadogConnector", "siem"),
    "webhook": ("cavra.connectors.webhook", "WebhookConnector", "siem"),
    "slack": ("cavra.connectors.slack", "SlackConnector", "chatops"),
    "teams": ("cavra.connectors.teams", "TeamsConnector", "chatops"),
    "jira": ("cavra.connectors.jira", "JiraConnector", "itsm"),
    "servicenow": ("cavra.connectors.servicenow", "ServiceNowConnector", "itsm"),
    "jamf": ("cavra.connectors.jamf", "JamfConnector", "endpoint"),
    "intune": ("cavra.connectors.intune", "IntuneConnector", "endpoint"),
    "linux": ("cavra.connectors.linux_fleet", "LinuxFleetConnector", "endpoint"),
}

CATEGORY_OF = {name: spec[2] for name, spec in PROVIDERS.items()}
ENDPOINT_PROVIDERS = tuple(n for n, c in CATEGORY_OF.items() if c == "endpoint")


def known(provider: str) -> bool:
    return provider in PROVIDERS


def category_of(provider: str) -> str:
    try:
        return CATEGORY_OF[provider]
    except KeyError:
        raise ConfigError(unknown_provider_message(provider)) from None


def unknown_provider_message(provider: str) -> str:
    return f"unknown provider {provider!r}; known providers: {', '.join(PROVIDERS)}"


@cache
def connector_class(provider: str) -> type[Connector]:
    try:
        module_name, class_name, _ = PROVIDERS[provider]
    except KeyError:
        raise ConfigError(unknown_provider_message(provider)) from None
    module = importlib.import_module(module_name)
    cls: type[Connector] = getattr(module, class_name)
    return cls


def get_connector(provider: str) -> Connector:
    return connector_class(provider)()
