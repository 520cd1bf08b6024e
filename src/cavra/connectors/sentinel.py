"""Microsoft Sentinel / Log Analytics through the Logs Ingestion API (default) or an API-key endpoint.

Logs-ingestion mode is two steps: an Entra ID client-credentials token (scope
``https://monitor.azure.com/.default``, cached per token URL + client id + scope), then
``POST {url}/dataCollectionRules/{dcr_immutable_id}/streams/{stream_name}?api-version=2023-01-01`` with a
JSON array of one row. ``204`` is success. A cached token answered with 401 is dropped and fetched again
once; a 403 is rejected at once (the app lacks *Monitoring Metrics Publisher* on the DCR, or the role
assignment has not propagated yet, which can take 30 minutes), as are 400, 404 and 413. 429 (with
``Retry-After``), 5xx and network errors are retried. Bodies over 1 MB are refused before sending.

API-key mode posts the same array to ``url`` with the key in ``api_key_header`` (``x-api-key``); any 2xx
is success.

The row: ``TimeGenerated``, ``EventId``, ``EventType``, ``SessionId``, ``Severity`` and the remaining
event fields as the JSON (``dynamic``) column ``EventData``: column names that the stream must declare.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, model_validator

from cavra.connectors.auth import ClientCredentials, entra_token_url, token_request, token_verdict
from cavra.connectors.base import (
    BatchLimits,
    CachedToken,
    ConnectorSettings,
    Context,
    Delivered,
    Next,
    PayloadTooLarge,
    PreparedRequest,
    Reject,
    Response,
    Verdict,
    json_array,
)
from cavra.connectors.classify import classify
from cavra.connectors.render import severity
from cavra.connectors.spec import Described, ProviderSpec
from cavra.connectors.splunk import event_time
from cavra.errors import ConfigError
from cavra.events import event_id_of
from cavra.secretforms import clip
from cavra.secrets import Secret

MAX_BODY_BYTES = 1_048_576
DEFAULT_SCOPE = "https://monitor.azure.com/.default"
DEFAULT_API_VERSION = "2023-01-01"
ROW_COLUMNS = ("TimeGenerated", "EventId", "EventType", "SessionId", "Severity", "EventData")
_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,44}$")
_DCR_ID = re.compile(r"^dcr-[0-9a-fA-F]{32}$")
_TOP_LEVEL = ("event_id", "event_type", "session_id")
_REQUEST_ID_NAMESPACE = uuid.UUID("0f2d8c1e-5b7a-4e39-9c61-3a8e0d4b7f25")


class SentinelSettings(ConnectorSettings):
    """Settings of both modes (docs/configuration.md, ``sentinel``)."""

    mode: Literal["logs_ingestion", "api_key"] = "logs_ingestion"
    dcr_immutable_id: str | None = None
    stream_name: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    authority_url: str = "https://login.microsoftonline.com"
    scope: str = DEFAULT_SCOPE
    api_version: str = DEFAULT_API_VERSION
    api_key_header: str | None = "x-api-key"
    #: batching: at most this many rows / bytes per call (1 turns batching off)
    batch_max_events: int = Field(default=500, ge=1, le=10_000)
    batch_max_bytes: int = Field(default=MAX_BODY_BYTES, ge=1_000, le=MAX_BODY_BYTES)

    @model_validator(mode="after")
    def _required(self) -> SentinelSettings:
        needed: tuple[str, ...]
        if self.mode == "api_key":
            needed = ("url", "api_key")
        else:
            needed = ("url", "dcr_immutable_id", "stream_name", "tenant_id", "client_id", "client_secret")
        for name in needed:
            if not getattr(self, name):
                raise ConfigError(f"sentinel: {name} is required in {self.mode} mode")
        if self.mode == "logs_ingestion":
            if not _DCR_ID.match(str(self.dcr_immutable_id)):
                raise ConfigError(
                    "sentinel: dcr_immutable_id must look like dcr-<32 hex digits> (the DCR's immutable ID)"
                )
            if not str(self.scope).endswith("/.default"):
                raise ConfigError(
                    "sentinel: scope must end with /.default (for example https://monitor.azure.com/.default)"
                )
        elif not (self.api_key_header or "").strip():
            raise ConfigError("sentinel: api_key_header must name a header")
        return self


@dataclass(frozen=True)
class Send:
    """Post the rows with this token (``refetched``: the token was fetched again after a 401)."""

    token: Secret
    refetched: bool = False


@dataclass(frozen=True)
class Refetch:
    """The cached token was refused: fetch a new one, once."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row_of(event: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The event flattened to one row whose column names follow the Log Analytics rules."""
    session = event.get("session_id")
    rest = {k: v for k, v in event.items() if k not in _TOP_LEVEL}
    row = {
        "TimeGenerated": _iso(event_time(event, now)),
        "EventId": event_id_of(event),
        "EventType": str(event.get("event_type", "")),
        "SessionId": None if session is None else str(session),
        "Severity": severity(event),
        "EventData": rest,
    }
    return row


def ingestion_url(settings: SentinelSettings) -> str:
    """``{url}/dataCollectionRules/{dcr}/streams/{stream}?api-version=…`` (a full URL is kept as given)."""
    assert settings.url is not None
    parts = urlsplit(settings.url.reveal())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("sentinel: url must be the http(s) URL of a DCE or of the DCR's ingestion endpoint")
    path = parts.path.rstrip("/")
    if "/dataCollectionRules/" not in path:
        dcr = quote(str(settings.dcr_immutable_id), safe="")
        stream = quote(str(settings.stream_name), safe="")
        path = f"{path}/dataCollectionRules/{dcr}/streams/{stream}"
    query = parts.query
    if "api-version=" not in query:
        query = "&".join(q for q in (query, urlencode({"api-version": settings.api_version})) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def credentials(settings: SentinelSettings) -> ClientCredentials:
    assert settings.client_secret is not None
    return ClientCredentials(
        token_url=entra_token_url(settings.authority_url, str(settings.tenant_id)),
        client_id=str(settings.client_id),
        client_secret=settings.client_secret,
        scope=settings.scope,
    )


class SentinelConnector(Described):
    """Logs Ingestion API (Entra token, then the DCR stream), or an API-key ingestion endpoint."""

    settings_model: ClassVar[type[ConnectorSettings]] = SentinelSettings

    def encode(self, event: Mapping[str, Any], settings: SentinelSettings, ctx: Context) -> bytes:
        row = json.dumps(row_of(event, ctx.now), ensure_ascii=False, default=str).encode("utf-8")
        if len(row) + 2 > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"sentinel: the body is {len(row) + 2} bytes, over the Logs Ingestion limit of 1 MB "
                f"({MAX_BODY_BYTES} bytes) per call"
            )
        return row

    def batch_limits(self, settings: SentinelSettings) -> BatchLimits:
        return BatchLimits(settings.batch_max_events, settings.batch_max_bytes)

    def prepare(
        self, event: Mapping[str, Any], settings: SentinelSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        return self.prepare_batch([self.encode(event, settings, ctx)], settings, ctx, state)

    def prepare_batch(
        self, items: list[bytes], settings: SentinelSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        body = json_array(items)
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"sentinel: the body is {len(body)} bytes, over the Logs Ingestion limit of 1 MB "
                f"({MAX_BODY_BYTES} bytes) per call"
            )
        headers: dict[str, str | Secret] = {"Content-Type": "application/json", "Accept": "application/json"}
        if settings.mode == "api_key":
            assert settings.url is not None
            assert settings.api_key is not None
            headers.update(settings.headers)
            headers[str(settings.api_key_header)] = Secret(
                settings.api_key.reveal(), source="sentinel:api_key"
            )
            return PreparedRequest(method="POST", url=settings.url.reveal(), headers=headers, body=body)
        creds = credentials(settings)
        token: Secret | None = None
        if isinstance(state, Send):
            token = state.token
        elif state is None:
            cached = ctx.tokens.get(creds.cache_key)
            token = None if cached is None else cached.value
        if token is None:  # no cached token, or Refetch
            return token_request(creds)
        headers["x-ms-client-request-id"] = str(uuid.uuid5(_REQUEST_ID_NAMESPACE, ctx.delivery_key))
        headers.update(settings.headers)
        headers["Authorization"] = Secret(f"Bearer {token.reveal()}", source="sentinel:token")
        return PreparedRequest(method="POST", url=ingestion_url(settings), headers=headers, body=body)

    def interpret_batch(
        self,
        request: PreparedRequest,
        response: Response,
        settings: SentinelSettings,
        ctx: Context,
        state: Any,
    ) -> Verdict:
        return self.interpret(request, response, settings, ctx, state)

    def interpret(
        self,
        request: PreparedRequest,
        response: Response,
        settings: SentinelSettings,
        ctx: Context,
        state: Any,
    ) -> Verdict:
        if settings.mode == "api_key":
            return judge_api_key(response)
        if request.step == "token":
            got = token_verdict(response, credentials(settings).cache_key, what="Entra ID OAuth endpoint")
            if not isinstance(got, CachedToken):
                return got
            return Next(Send(got.value, refetched=isinstance(state, Refetch)), token=got)
        cached_token_used = state is None
        return judge_ingestion(response, settings, retry_token=cached_token_used)


def _azure_error(response: Response) -> str:
    data = response.json_or_none()
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        code, message = clip(str(err.get("code", "")), 80), clip(str(err.get("message", "")), 300)
        return f"{code}: {message}" if code and message else code or message
    return ""


def judge_ingestion(response: Response, settings: SentinelSettings, *, retry_token: bool) -> Verdict:
    """The Logs Ingestion answer -> verdict (providers.md §2a)."""
    status = response.status
    error = _azure_error(response)
    described = f"HTTP {status}" + (f" ({error})" if error else "")
    if status == 204:
        return Delivered(detail={"status": 204})
    if 200 <= status < 300:
        return Reject(
            f"{described}: the Logs Ingestion API answers 204; check that url is a DCE or DCR endpoint"
        )
    if status == 401:
        if retry_token:
            return Next(Refetch())
        return Reject(
            f"{described}: the token was refused; check that scope ({settings.scope}) matches the cloud "
            "of the ingestion endpoint"
        )
    if status == 403:
        return Reject(
            f"{described}: the application lacks the Monitoring Metrics Publisher role on DCR "
            f"{settings.dcr_immutable_id}, or a new role assignment has not propagated yet (up to 30 minutes)"
        )
    if status == 404:
        return Reject(
            f"{described}: unknown DCR immutable ID or stream name; check dcr_immutable_id and stream_name"
        )
    if status == 413:
        return Reject(f"{described}: the body is over the 1 MB limit")
    if status == 400:
        return Reject(
            f"{described}: the rows do not match the stream declaration (it must declare "
            f"{', '.join(ROW_COLUMNS)})"
        )
    return classify(response, what=described)


def judge_api_key(response: Response) -> Verdict:
    """API-key endpoint: any 2xx delivered; 401/403 are credential problems, never retried."""
    status = response.status
    error = _azure_error(response)
    described = f"HTTP {status}" + (f" ({error})" if error else "")
    if status == 401:
        return Reject(
            f"{described}: the endpoint did not receive the API key; check api_key and api_key_header"
        )
    if status == 403:
        return Reject(f"{described}: the endpoint refused the API key; check api_key")
    return classify(response, what=described)


SPEC = ProviderSpec(
    name="sentinel",
    category="siem",
    connector=SentinelConnector,
    emulator="cavra.emulators.sentinel",
    needs=("cavra.emulators.entra",),
    example={
        "mode": "logs_ingestion",
        "url_env": "SENTINEL_DCE_URL",
        "dcr_immutable_id": "dcr-00000000000000000000000000000000",
        "stream_name": "Custom-CavraEvidence_CL",
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "client_id": "11111111-1111-1111-1111-111111111111",
        "client_secret_env": "SENTINEL_CLIENT_SECRET",
    },
    example_env={
        "SENTINEL_DCE_URL": "https://cavra-dce-abcd.westeurope-1.ingest.monitor.azure.com",
        "SENTINEL_CLIENT_SECRET": "sentinel-client-secret-value-0001",
    },
)
