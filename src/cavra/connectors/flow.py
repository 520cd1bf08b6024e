"""The state of a multi-step connector flow, and the OAuth token handling around its steps.

Used by the endpoint connectors (Jamf, Intune, Linux fleet) and ServiceNow's OAuth mode. A flow is a small
state machine run by the engine: each ``prepare`` builds the request of ``FlowState.step`` and each
``interpret`` answers ``Next`` with the following state, so every HTTP exchange (token, look-up, create or
update, assign, verify, poll) is one recorded attempt.

Tokens (Jamf, Intune, ServiceNow): before an API step the flow needs a Bearer token. It uses the token it
fetched in this flow, else the engine's cached one (``ctx.tokens``, until shortly before expiry); with
neither it sends the token request first (``step="token"``) and carries the new token in its state, so a
token whose lifetime is shorter than the cache margin still serves the flow that fetched it. A 401 on an API
step drops the token and fetches a new one, once; a second 401 is a failure that says the client lacks
access.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from cavra.connectors.auth import ClientCredentials, token_request, token_verdict
from cavra.connectors.base import (
    CachedToken,
    Context,
    Delivered,
    Next,
    PreparedRequest,
    Reject,
    Response,
    Verdict,
)
from cavra.connectors.classify import classify
from cavra.secrets import Secret


@dataclass(frozen=True)
class FlowState:
    """Where a publication flow stands. ``step`` is the next API step to run."""

    step: str
    #: the Bearer token this flow fetched (the cache may consider it stale already), and its expiry
    token: Secret | None = None
    token_expires: float = 0.0
    #: the token was refused: do not take it from the cache again
    refetch: bool = False
    #: the one refresh-on-401 has been used
    refreshed: bool = False
    #: the provider's id of the object or job
    remote_id: str | None = None
    #: created / updated: what the write step did
    action: str | None = None
    #: the digest of the configuration that was written, to compare with what is read back
    digest: str | None = None
    #: a conflict (409, vanished object) was already resolved once by looking up again
    rerouted: bool = False
    #: polling: how many polls so far, and the monotonic deadline of the verification
    polls: int = 0
    deadline: float = 0.0

    def go(self, step: str, **changes: Any) -> FlowState:
        return replace(self, step=step, **changes)


def bearer(state: FlowState, ctx: Context, creds: ClientCredentials) -> Secret | None:
    """The token for the next API step, or None when the token request must go first."""
    if state.token is not None:
        return state.token
    if state.refetch:
        return None
    cached = ctx.tokens.get(creds.cache_key)
    return None if cached is None else cached.value


def fetch_token(creds: ClientCredentials) -> PreparedRequest:
    """The client-credentials token request (step ``token``)."""
    return token_request(creds)


def after_token(response: Response, state: FlowState, creds: ClientCredentials, what: str) -> Verdict:
    """The token endpoint's answer: carry on with the new token, or fail saying why (never retried on 4xx)."""
    got = token_verdict(response, creds.cache_key, what=what)
    if isinstance(got, CachedToken):
        return Next(replace(state, token=got.value, token_expires=got.expires_at, refetch=False), token=got)
    return got


def unauthorized(state: FlowState, what: str, response: Response) -> Verdict:
    """A 401 on an API step: fetch a new token and run the step again, once.

    Only a token that may have gone stale is replaced: one from the cache, or one fetched in this flow whose
    lifetime has run out. A token fetched moments ago and refused says the client lacks access; fetching
    another would not change that.
    """
    fresh = state.token is not None and response.received_clock < state.token_expires
    if state.refreshed or fresh:
        return Reject(
            f"{what}: HTTP 401 with a newly fetched token: the server refused the API client's token "
            "(check the client's roles or privileges and that the token is meant for this server)"
        )
    return Next(replace(state, token=None, token_expires=0.0, refetch=True, refreshed=True))


def authorization(token: Secret, source: str) -> dict[str, str | Secret]:
    return {"Authorization": Secret(f"Bearer {token.reveal()}", source=source)}


def api_request(
    method: str,
    url: str,
    *,
    step: str,
    token: Secret | None = None,
    source: str = "token",
    headers: dict[str, str | Secret] | None = None,
    body: bytes = b"",
) -> PreparedRequest:
    """An API request with the Bearer token as a secret header (the redactor learns the bare token too)."""
    all_headers: dict[str, str | Secret] = dict(headers or {})
    secrets: tuple[Secret, ...] = ()
    if token is not None:
        all_headers.update(authorization(token, source))
        secrets = (token,)
    return PreparedRequest(
        method=method, url=url, headers=all_headers, body=body, step=step, new_secrets=secrets
    )


def default_verdict(response: Response, label: str) -> Verdict:
    """The default classification (5xx/408/429 retried, honouring Retry-After), labelled with the step."""
    return classify(response, what=label)


def failure_verdict(response: Response, label: str, detail: str) -> Verdict:
    """An answer a step did not expect: retried or rejected as :func:`default_verdict` says (``detail``: the
    provider's own error text), and a 2xx the step does not expect is rejected, never taken as delivered."""
    verdict = default_verdict(response, f"{label}: {detail}")
    if isinstance(verdict, Delivered):
        return Reject(f"{label}: unexpected HTTP {response.status}")
    return verdict


def path_segment(value: str) -> str:
    """A value as one URL path segment (spaces as %20, slashes escaped)."""
    return quote(value, safe="")


def deadline_in(response: Response, seconds: float) -> float:
    """``seconds`` after ``response`` arrived (monotonic seconds, as the flow's checks read them)."""
    return response.received_clock + seconds
