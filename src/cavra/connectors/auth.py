"""The OAuth 2.0 client-credentials token step, shared by Sentinel (Entra ID), Intune (Entra ID) and Jamf.

Pure functions, no I/O: :func:`token_request` builds the form POST, :func:`token_verdict` turns the token
endpoint's answer into a :class:`~cavra.connectors.base.CachedToken` (or a Retry/Reject verdict that says
why). The engine sends, caches the token in ``ctx.tokens`` (key = token URL + client id + scope) and calls
the connector's next step.

The form body necessarily carries the client secret in clear; the redactor knows it (it is a settings
secret), and request bodies are never recorded as evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from cavra.connectors.base import CachedToken, PreparedRequest, Reject, Response, Retry
from cavra.connectors.classify import RETRYABLE_STATUSES, retry_after
from cavra.secretforms import clip
from cavra.secrets import Secret

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
#: used when the token endpoint gives no ``expires_in``
DEFAULT_LIFETIME = 3600.0
TOKEN_STEP = "token"

#: OAuth error codes (RFC 6749 §5.2, Entra ID) -> what the operator should check
_HINTS = {
    "invalid_client": "the client credentials were refused: check client_id and client_secret "
    "(an expired secret, or the secret ID given instead of its value)",
    "unauthorized_client": "the application is not registered in this tenant: check tenant_id and client_id",
    "invalid_scope": "the scope is not valid for this tenant: it must be <resource>/.default",
    "invalid_resource": "the resource in the scope is unknown to this tenant",
    "invalid_request": "the token request is malformed or the tenant is unknown: check tenant_id and the "
    "authority URL",
    "unsupported_grant_type": "the token endpoint does not accept the client_credentials grant",
    "invalid_grant": "the grant was refused",
}


@dataclass(frozen=True)
class ClientCredentials:
    """Where and how to ask for a token. ``scope`` is omitted from the form when ``None`` (Jamf)."""

    token_url: str
    client_id: str
    client_secret: Secret
    scope: str | None = None

    @property
    def cache_key(self) -> str:
        return token_cache_key(self.token_url, self.client_id, self.scope)


def token_cache_key(token_url: str, client_id: str, scope: str | None) -> str:
    """The cache key of a token: the token URL, the client id and the scope."""
    return f"{token_url}|{client_id}|{scope or ''}"


def entra_token_url(authority_url: str | None, tenant_id: str) -> str:
    """``{authority}/{tenant}/oauth2/v2.0/token`` (the authority defaults to the public cloud)."""
    authority = (authority_url or DEFAULT_AUTHORITY).rstrip("/")
    return f"{authority}/{quote(tenant_id, safe='')}/oauth2/v2.0/token"


def token_request(creds: ClientCredentials, *, step: str = TOKEN_STEP) -> PreparedRequest:
    """The form POST for a client-credentials token."""
    form = {
        "grant_type": "client_credentials",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret.reveal(),
    }
    if creds.scope:
        form["scope"] = creds.scope
    return PreparedRequest(
        method="POST",
        url=creds.token_url,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        body=urlencode(form).encode("ascii"),
        step=step,
    )


class TokenResponseError(ValueError):
    """A 2xx token answer that holds no usable access token. The message never holds the body."""


def parse_token_response(response: Response, key: str, *, now: float | None = None) -> CachedToken:
    """The access token of a successful answer, with its expiry in monotonic seconds."""
    data = response.json_or_none()
    if not isinstance(data, dict):
        raise TokenResponseError("the token endpoint answered without a JSON object")
    value = data.get("access_token")
    if not isinstance(value, str) or not value.strip():
        raise TokenResponseError("the token endpoint answered without an access_token")
    token_type = data.get("token_type")
    if token_type is not None and str(token_type).lower() != "bearer":
        raise TokenResponseError(
            f"the token endpoint issued a {clip(str(token_type), 20)!r} token, not a Bearer token"
        )
    lifetime = DEFAULT_LIFETIME
    raw = data.get("expires_in")
    if raw is not None:
        try:
            lifetime = float(raw)
        except (TypeError, ValueError):
            raise TokenResponseError("the token endpoint gave an invalid expires_in") from None
        if lifetime != lifetime or lifetime <= 0:
            raise TokenResponseError("the token endpoint gave an invalid expires_in")
    start = response.received_clock if now is None else now
    return CachedToken(key=key, value=Secret(value.strip(), source="token"), expires_at=start + lifetime)


def _oauth_error(response: Response) -> tuple[str | None, str | None]:
    data = response.json_or_none()
    if not isinstance(data, dict):
        return None, None
    error = data.get("error")
    codes = data.get("error_codes")
    code = None
    if isinstance(codes, list) and codes:
        code = f"AADSTS{codes[0]}"
    return (clip(error, 60) if isinstance(error, str) else None), code


def token_verdict(
    response: Response, key: str, *, what: str = "OAuth endpoint"
) -> CachedToken | Retry | Reject:
    """A token, or why there is none: 408/429/5xx retried (honouring ``Retry-After``), the rest rejected."""
    status = response.status
    if 200 <= status < 300:
        try:
            return parse_token_response(response, key)
        except TokenResponseError as exc:
            return Reject(f"{what}: HTTP {status}, {exc}")
    error, code = _oauth_error(response)
    label = f"{what}: HTTP {status}"
    if error:
        label += f" {error}" + (f" ({code})" if code else "")
    if status in RETRYABLE_STATUSES:
        return Retry(label, after=retry_after(response))
    if 300 <= status < 400:
        return Reject(f"{label}: redirect not followed (credentials never travel to another host)")
    hint = _HINTS.get(error or "")
    if hint is None and status == 401:
        hint = _HINTS["invalid_client"]
    return Reject(f"{label}: {hint}" if hint else label)
