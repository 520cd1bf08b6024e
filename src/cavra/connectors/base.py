"""The connector contract.

A connector is pure: :meth:`Connector.prepare` turns (event, settings, state) into a
:class:`PreparedRequest`, and :meth:`Connector.interpret` turns the provider's :class:`Response` into a
:data:`Verdict`. It never sends, sleeps, logs or stores; the delivery engine does all of that.

Multi-step flows (token fetch, search-then-create, create-then-assign, launch-then-poll) are written as a
small state machine: ``interpret`` answers :class:`Next` with the next state, and the engine calls
``prepare`` again with it. Every HTTP exchange is one recorded attempt.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cavra.connectors.spec import Described
from cavra.secrets import Secret

CATEGORIES = ("siem", "chatops", "itsm", "endpoint")


class RetryOverride(BaseModel):
    """A destination's own outbox retry schedule (``retry`` in its entry); unset keys keep the global one
    (``CAVRA_QUEUE_*``, ``cavra worker`` flags): backoff base and cap in seconds, attempt runs before the
    job is a dead letter, and the longest a job may wait from its creation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff_base: float | None = Field(default=None, ge=0, le=86_400)
    backoff_max: float | None = Field(default=None, ge=0, le=7 * 86_400)
    max_runs: int | None = Field(default=None, ge=1, le=1000)
    max_age: float | None = Field(default=None, gt=0, le=30 * 86_400)

    @model_validator(mode="after")
    def _order(self) -> RetryOverride:
        base, cap = self.backoff_base, self.backoff_max
        if base is not None and cap is not None and cap < base:
            raise ValueError("backoff_max must not be less than backoff_base")
        return self


class ConnectorSettings(BaseModel):
    """Settings every connector understands. Provider modules subclass it with their own keys.

    Secret-bearing keys (``url``, ``token``, ``api_key``, ``authorization`` and provider-specific ones such
    as ``client_secret``) are given in the file as ``<key>_env`` (an environment variable name) or
    ``<key>_file`` (a mounted secret file); the loader resolves them into :class:`Secret` values.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    url: Secret | None = None
    token: Secret | None = None
    api_key: Secret | None = None
    authorization: Secret | None = None
    api_key_header: str | None = None
    authorization_scheme: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    allow_http: bool = False
    allow_link_local: bool = False
    verify_tls: bool = True
    ca_bundle: str | None = None
    enabled: bool = True
    max_response_bytes: int = Field(default=1_048_576, gt=0)
    #: ``RATE[/BURST]`` per second for all workers together (default: the provider's, see cavra.ratelimit)
    rate_limit: str | None = None
    #: an HTTP(S) proxy for this destination's requests (``http://user:pass@proxy:3128``; a secret)
    proxy_url: Secret | None = None
    #: take the proxy from ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` when ``proxy_url`` is not set
    trust_env: bool = False
    #: this destination's outbox retry schedule (see :class:`RetryOverride`)
    retry: RetryOverride | None = None
    #: the destination's compiled message templates (:class:`cavra.templates.CompiledTemplates`), set by
    #: the config loader from the entry's ``templates`` key; ``None``: the connector's own rendering
    templates: Any = Field(default=None, exclude=True)

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        if value is not None:
            from cavra.ratelimit import parse_rate

            parse_rate(value, "rate_limit")
        return value

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url(cls, value: Secret | None) -> Secret | None:
        if value is not None:
            from urllib.parse import urlsplit

            try:
                parts = urlsplit(value.reveal())
                ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
            except ValueError:
                ok = False
            if not ok:  # the value itself is never shown: it may carry a password
                raise ValueError("must be an http:// or https:// proxy URL with a host")
        return value

    def secrets(self) -> list[Secret]:
        """Every secret this connector holds, for the redactor."""
        found: list[Secret] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Secret):
                found.append(value)
            elif isinstance(value, tuple):  # several secrets (a webhook's signing_secrets)
                found.extend(v for v in value if isinstance(v, Secret))
        return found

    def extra_credential_headers(self) -> list[str]:
        return [self.api_key_header] if self.api_key_header else []


@dataclass(frozen=True)
class PreparedRequest:
    """One HTTP request, ready for the transport. Header values that are credentials are :class:`Secret`."""

    method: str
    url: str
    headers: Mapping[str, str | Secret] = field(default_factory=dict)
    body: bytes = b""
    step: str = "send"
    #: secrets minted during this delivery (a fetched token) that the redactor must learn
    new_secrets: tuple[Secret, ...] = ()
    #: what the record should say about how the request was made (a template that fell back to the
    #: default rendering); the engine puts it in the delivery's ``detail`` as ``template_warning``
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Response:
    """The provider's answer. Header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float = 0.0
    #: when the answer arrived (epoch; monotonic seconds): Retry-After dates, token lifetimes, poll deadlines
    received_at: float = field(default_factory=time.time, compare=False)
    received_clock: float = field(default_factory=time.monotonic, compare=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        import json

        return json.loads(self.body.decode("utf-8"))

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except (ValueError, UnicodeDecodeError):
            return None


# -- verdicts ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivered:
    """The provider accepted (and, where the connector verifies, proved) the delivery."""

    remote_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    proof: str | None = None


@dataclass(frozen=True)
class Retry:
    """A transient failure: try the same step again after ``after`` seconds (or the policy's backoff)."""

    reason: str
    after: float | None = None


@dataclass(frozen=True)
class Reject:
    """A permanent failure: do not retry."""

    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Next:
    """Go on with the next step of a multi-step flow. ``token`` is cached by the engine when given.

    ``accepted``: the provider has accepted the work at this step (HEC answered code 0, AWX started a job);
    what follows only proves it. From here on, a step the engine gives up on (retries spent, deadline)
    ends the delivery **pending** with this text and ``remote_id``, never failed: sending again would
    duplicate the work. A :class:`Reject` from a later step still fails it (e.g. the AWX job failed).
    """

    state: Any
    token: CachedToken | None = None
    after: float = 0.0
    accepted: str | None = None
    remote_id: str | None = None


@dataclass(frozen=True)
class Pending:
    """The provider accepted the work but its completion could not be proven before the deadline."""

    reason: str
    remote_id: str | None = None


Verdict = Delivered | Retry | Reject | Next | Pending


@dataclass(frozen=True)
class Split:
    """A batch answer that settles part of the batch (Splunk HEC's ``invalid-event-number``).

    Positions are indexes into the items of the request that was answered: ``delivered`` were accepted,
    ``rejected`` were refused (with why); every other item is sent again at once, in a smaller request.
    """

    reason: str
    delivered: tuple[int, ...] = ()
    rejected: Mapping[int, str] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)


BatchVerdict = Verdict | Split


@dataclass(frozen=True)
class BatchLimits:
    """How many encoded items one request may carry, and how large its body may be.

    ``overhead`` is the body's bytes besides the items (``[]`` of a JSON array) and ``separator`` the bytes
    between two items (``,`` or a newline)."""

    max_items: int
    max_bytes: int
    overhead: int = 2
    separator: int = 1

    def plan(self, sizes: list[int]) -> list[list[int]]:
        """Cut items (by their encoded sizes, in order) into requests within the limits; an item that
        cannot fit even alone must have been refused by ``encode``."""
        chunks: list[list[int]] = []
        current: list[int] = []
        used = self.overhead
        for index, size in enumerate(sizes):
            extra = size + (self.separator if current else 0)
            if current and (len(current) >= self.max_items or used + extra > self.max_bytes):
                chunks.append(current)
                current, used, extra = [], self.overhead, size
            current.append(index)
            used += extra
        if current:
            chunks.append(current)
        return chunks


@dataclass(frozen=True)
class CachedToken:
    """An OAuth access token with its expiry (monotonic seconds)."""

    key: str
    value: Secret
    expires_at: float

    def valid(self, now: float | None = None, *, margin: float = 30.0) -> bool:
        current = time.monotonic() if now is None else now
        return current < self.expires_at - margin


class TokenCache:
    """Access tokens cached per credential (key = token URL + client id + scope). Owned by the engine.

    :meth:`scoped` gives a destination its own view of the cache (same storage, keys prefixed with the
    destination's name): two destinations never share a token, even with the same credentials."""

    def __init__(self, *, _tokens: dict[str, CachedToken] | None = None, _scope: str = "") -> None:
        self._tokens: dict[str, CachedToken] = {} if _tokens is None else _tokens
        self._scope = _scope

    def scoped(self, destination: str) -> TokenCache:
        """This cache as destination ``destination`` sees it."""
        return TokenCache(_tokens=self._tokens, _scope=f"{destination}\0")

    def get(self, key: str) -> CachedToken | None:
        tok = self._tokens.get(self._scope + key)
        if tok is not None and tok.valid():
            return tok
        return None

    def put(self, token: CachedToken) -> None:
        self._tokens[self._scope + token.key] = token

    def drop(self, key: str) -> None:
        self._tokens.pop(self._scope + key, None)


@dataclass
class Context:
    """What a connector may read besides the event and its settings.

    A connector takes the time from here (``now``: when this run of the delivery began, epoch seconds;
    ``attempt_at``: when this attempt's request is prepared), or that of an answer from :class:`Response`,
    never from the clock."""

    delivery_key: str
    tokens: TokenCache = field(default_factory=TokenCache)
    now: float = field(default_factory=time.time)
    attempt: int = 1
    #: when an earlier run of this delivery began (epoch seconds), for a run that is not the first (an
    #: outbox job run again): what that run created may exist though its answer was lost, so a connector
    #: that creates something looks for it first
    resumed_since: float | None = None
    #: when attempt ``attempt``'s request is prepared (epoch seconds, set by the engine): the webhook's stamp
    attempt_at: float = field(default_factory=time.time)


S = TypeVar("S", bound=ConnectorSettings)


class Connector(Protocol):
    """What the engine needs of a connector. ``settings`` is the connector's own ``settings_model``."""

    #: provider, category and secret_url_path are bound from the provider's ``ProviderSpec``
    provider: ClassVar[str]
    category: ClassVar[str]
    settings_model: ClassVar[type[ConnectorSettings]]
    #: the URL path is itself a credential (Slack, Teams webhook URLs)
    secret_url_path: ClassVar[bool]

    def prepare(
        self, event: Mapping[str, Any], settings: Any, ctx: Context, state: Any
    ) -> PreparedRequest: ...

    def interpret(
        self, request: PreparedRequest, response: Response, settings: Any, ctx: Context, state: Any
    ) -> Verdict: ...


@runtime_checkable
class BatchConnector(Protocol):
    """A connector that can also send many events in one request (the SIEM intakes).

    The engine encodes every event once with :meth:`encode` (which refuses an event too large to send at
    all), cuts the encoded items into requests within :meth:`batch_limits`, and runs each request as a
    flow: :meth:`prepare_batch` / :meth:`interpret_batch` work like ``prepare`` / ``interpret``, with
    :class:`Split` for an answer that settles only part of the batch.
    """

    def batch_limits(self, settings: Any) -> BatchLimits: ...

    def encode(self, event: Mapping[str, Any], settings: Any, ctx: Context) -> bytes: ...

    def prepare_batch(
        self, items: list[bytes], settings: Any, ctx: Context, state: Any
    ) -> PreparedRequest: ...

    def interpret_batch(
        self, request: PreparedRequest, response: Response, settings: Any, ctx: Context, state: Any
    ) -> BatchVerdict: ...


def json_array(items: list[bytes]) -> bytes:
    """Encoded JSON values as one JSON array."""
    return b"[" + b",".join(items) + b"]"


class PayloadTooLarge(ValueError):
    """A payload exceeds the provider's limit: the delivery is rejected before anything is sent."""


class BaseConnector(Described, Generic[S]):
    """Convenience base: single-step connectors override :meth:`build` and optionally :meth:`judge`.
    ``provider``, ``category`` and ``secret_url_path`` come from the module's ``ProviderSpec``."""

    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings

    def prepare(self, event: Mapping[str, Any], settings: S, ctx: Context, state: Any) -> PreparedRequest:
        return self.build(event, settings, ctx)

    def build(self, event: Mapping[str, Any], settings: S, ctx: Context) -> PreparedRequest:
        raise NotImplementedError

    def interpret(
        self, request: PreparedRequest, response: Response, settings: S, ctx: Context, state: Any
    ) -> Verdict:
        return self.judge(response, settings)

    def judge(self, response: Response, settings: S) -> Verdict:
        from cavra.connectors.classify import classify

        return classify(response)
