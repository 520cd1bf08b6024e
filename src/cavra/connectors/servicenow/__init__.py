"""ServiceNow connector (Table API or Change Management API): one record per event, by correlation_id.

See :mod:`cavra.connectors.servicenow.connector` for the flow and docs/connectors/servicenow.md for the
settings.
"""

from __future__ import annotations

from cavra.connectors.servicenow.connector import ServiceNowConnector, ServiceNowState
from cavra.connectors.servicenow.settings import IMPACT_RISK, ServiceNowSettings
from cavra.connectors.spec import ProviderSpec

__all__ = ["IMPACT_RISK", "ServiceNowConnector", "ServiceNowSettings", "ServiceNowState"]


SPEC = ProviderSpec(
    name="servicenow",
    category="itsm",
    connector=ServiceNowConnector,
    emulator="cavra.emulators.servicenow",
    example={
        "url_env": "SERVICENOW_URL",
        "username": "cavra.integration",
        "password_env": "SERVICENOW_PASSWORD",
        "api": "table",
        "table": "change_request",
        "category": "Software",
    },
    example_env={
        "SERVICENOW_URL": "https://example.service-now.com",
        "SERVICENOW_PASSWORD": "servicenow-password-0001",
    },
)
