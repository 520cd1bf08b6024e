"""ServiceNow emulator (Table API and Change Management API): see :mod:`cavra.emulators.servicenow.app`."""

from __future__ import annotations

from cavra.emulators.servicenow.app import ServiceNowEmulator, create_app, demo_config, servicenow_emulator
from cavra.emulators.servicenow.base import AUDIENCE, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Settings

__all__ = [
    "AUDIENCE",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "ServiceNowEmulator",
    "Settings",
    "create_app",
    "demo_config",
    "servicenow_emulator",
]
