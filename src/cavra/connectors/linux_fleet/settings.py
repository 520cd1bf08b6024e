"""The Linux fleet connector's settings (the ``linux`` keys of docs/connectors/linux.md) and constants."""

from __future__ import annotations

import base64
import re

from pydantic import Field, field_validator

from cavra.connectors.base import ConnectorSettings
from cavra.errors import ConfigError
from cavra.secrets import Secret

#: the most polls one delivery makes; the interval is stretched to fit the verify timeout
MAX_POLLS = 30
FAILED = ("failed", "error", "canceled")
#: the re-check reads one page of the template's newest jobs (AWX caps page_size at 200)
RECHECK_PAGE = 50
#: the re-check looks at jobs created up to this many seconds before the delivery began (clock skew)
RECHECK_WINDOW_SECONDS = 300.0
ADOPTED = "adopted"
LAUNCHED = "launched"
DIRECT_PREFIX = "/api/v2"
GATEWAY_PREFIX = "/api/controller/v2"
AUTO = "auto"
PREFIX_PATTERN = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


class LinuxFleetSettings(ConnectorSettings):
    """``url`` (AWX/AAP base), ``token`` or ``username`` + ``password``, ``job_template_id`` and polling."""

    username: str | None = None
    password: Secret | None = None
    job_template_id: int | None = Field(default=None, gt=0)
    poll_interval_seconds: float = Field(default=5.0, gt=0, le=600)
    verify_timeout_seconds: float = Field(default=600.0, ge=0, le=86_400)
    #: ``/api/v2``, ``/api/controller/v2`` (AAP 2.5+ platform gateway), another path, or ``auto``
    api_prefix: str = DIRECT_PREFIX

    @field_validator("api_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        cleaned = value.strip().rstrip("/")
        if cleaned.lower() == AUTO:
            return AUTO
        if not PREFIX_PATTERN.match(cleaned):
            raise ConfigError(
                f"linux: api_prefix {value[:80]!r} is not valid: give /api/v2 (AWX, or a controller addressed"
                " directly), /api/controller/v2 (Automation Platform 2.5+ platform gateway) or auto"
            )
        return cleaned


def base_url(settings: LinuxFleetSettings) -> str:
    if settings.url is None:
        raise ConfigError("linux: url is required (the AWX / Automation Platform base URL)")
    return settings.url.reveal().rstrip("/")


def template_id(settings: LinuxFleetSettings) -> int:
    if settings.job_template_id is None:
        raise ConfigError("linux: job_template_id is required (the AWX job template that publishes exports)")
    return settings.job_template_id


def auth_header(settings: LinuxFleetSettings) -> Secret:
    if settings.token is not None:
        return Secret(f"Bearer {settings.token.reveal()}", source="linux:token")
    if settings.username and settings.password is not None:
        pair = f"{settings.username}:{settings.password.reveal()}".encode()
        return Secret("Basic " + base64.b64encode(pair).decode("ascii"), source="linux:basic")
    raise ConfigError("linux: token, or username and password, is required")


def poll_interval(settings: LinuxFleetSettings) -> float:
    return max(settings.poll_interval_seconds, settings.verify_timeout_seconds / MAX_POLLS)
