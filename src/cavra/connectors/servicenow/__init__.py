"""ServiceNow connector (Table API or Change Management API): one record per event, by correlation_id.

See :mod:`cavra.connectors.servicenow.connector` for the flow and docs/connectors/servicenow.md for the
settings.
"""

from __future__ import annotations

from cavra.connectors.servicenow.connector import ServiceNowConnector, ServiceNowState
from cavra.connectors.servicenow.settings import IMPACT_RISK, ServiceNowSettings

__all__ = ["IMPACT_RISK", "ServiceNowConnector", "ServiceNowSettings", "ServiceNowState"]
