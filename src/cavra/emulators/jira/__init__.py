"""Jira emulator (Cloud REST v3/v2 and Data Center v2): see :mod:`cavra.emulators.jira.app`."""

from __future__ import annotations

from cavra.emulators.jira.app import JiraEmulator, create_app, demo_config, jira_emulator
from cavra.emulators.jira.base import Settings

__all__ = ["JiraEmulator", "Settings", "create_app", "demo_config", "jira_emulator"]
