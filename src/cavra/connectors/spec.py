"""What a provider is, said once, beside its connector: a :class:`ProviderSpec`.

Each connector module ends with ``SPEC = ProviderSpec(...)``; everything else that needs a provider's facts
reads them from there (through :mod:`cavra.connectors.registry`): the registry and the categories, the
default rate limits (``cavra.ratelimit``), which providers an endpoint export may name
(``cavra.governance.records``), the emulators ``cavra emulate`` mounts (``cavra.emulators.server``), the
example configuration (``examples/connectors``) and the shared test kit (``tests/connectors/kit.py``).
docs/connectors/adding-a-provider.md walks through a new provider.

Building the spec binds the connector class: the class learns its ``provider``, ``category`` and
``secret_url_path`` from the spec, so none of them is written twice. The emulator is named by a dotted
string: a connector never imports an emulator (DESIGN.md: they share no code, in either direction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

CATEGORIES = ("siem", "chatops", "itsm", "endpoint")
Category = Literal["siem", "chatops", "itsm", "endpoint"]

#: the event every endpoint-management provider takes (an export's publication), and only that one
ENDPOINT_PUBLICATION = "cavra.endpoint_management.publication"
#: every event type
ANY_EVENT = "*"
#: no provider's name starts so: tests use ``no-such-provider`` as the example of an unknown one
RESERVED_PREFIX = "no-such-"


class Described:
    """What a connector class learns from its :class:`ProviderSpec` when the spec is built."""

    spec: ClassVar[ProviderSpec]
    provider: ClassVar[str] = ""
    category: ClassVar[str] = ""
    #: the URL path is itself a credential (Slack, Teams webhook URLs)
    secret_url_path: ClassVar[bool] = False


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class ProviderSpec:
    """One provider's facts.

    * ``name``: the provider's name in configuration files, routes, records and on the command line;
    * ``category``: siem, chatops, itsm or endpoint;
    * ``connector``: the connector class (bound to this spec);
    * ``emulator``: the dotted module of its emulator (``Settings``, ``create_app``, ``demo_config``), and
      ``mount`` the path prefix it is served under (default: the module's last name); ``needs``: the dotted
      modules of other emulators it relies on (token issuers, mounted first under their last name);
    * ``rate_limit``: ``RATE[/BURST]`` per second the provider takes without throttling when nothing else is
      configured (``None``: no default limit);
    * ``secret_url_path``: the URL's path is a credential (redacted, a canary in the leak tests);
      ``url_secret``: the whole configured URL is the credential (a webhook URL you are given);
    * ``example``: its entry of ``examples/connectors/cavra-connectors.example.json`` (secrets only by
      ``*_env``), and ``example_env`` a plausible production value of each variable the entry names;
    * ``takes``: the event types it takes (``"*"``: every event).
    """

    name: str
    category: Category
    connector: type[Described]
    emulator: str
    example: Mapping[str, Any]
    example_env: Mapping[str, str]
    mount: str = ""
    needs: tuple[str, ...] = ()
    rate_limit: str | None = None
    secret_url_path: bool = False
    url_secret: bool = False
    takes: tuple[str, ...] = (ANY_EVENT,)
    #: mount -> module of every emulator it needs, its own last
    emulators: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"ProviderSpec({self.name!r})"
        if (
            not self.name
            or not self.name.replace("-", "").replace("_", "").isalnum()
            or not self.name.islower()
        ):
            raise ValueError(f"{where}.name: lower-case letters, digits, '-' and '_' only")
        if self.name.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"{where}.name: {RESERVED_PREFIX}… is reserved (tests name unknown providers so)"
            )
        if self.category not in CATEGORIES:
            raise ValueError(f"{where}.category: one of {', '.join(CATEGORIES)}, not {self.category!r}")
        if self.rate_limit is not None:
            from cavra.ratelimit import parse_rate

            parse_rate(self.rate_limit, f"{where}.rate_limit")
        if not self.takes:
            raise ValueError(f"{where}.takes: at least one event type (or '*')")
        inline = sorted(k for k in self.example if k in _INLINE_SECRETS)
        if inline:
            raise ValueError(f"{where}.example: secrets only by *_env, not inline: {', '.join(inline)}")
        mount = self.mount or self.emulator.rpartition(".")[2]
        object.__setattr__(self, "mount", mount)
        object.__setattr__(self, "example", _frozen(self.example))
        object.__setattr__(self, "example_env", MappingProxyType(dict(self.example_env)))
        mounts = {module.rpartition(".")[2]: module for module in self.needs}
        object.__setattr__(self, "emulators", MappingProxyType({**mounts, mount: self.emulator}))
        self._bind()

    def _bind(self) -> None:
        cls = self.connector
        bound = cls.__dict__.get("spec")
        if isinstance(bound, ProviderSpec) and bound.name != self.name:
            raise ValueError(f"{cls.__qualname__} is already the connector of provider {bound.name!r}")
        cls.spec = self
        cls.provider = self.name
        cls.category = self.category
        cls.secret_url_path = self.secret_url_path

    def takes_event(self, event_type: str) -> bool:
        return ANY_EVENT in self.takes or event_type in self.takes

    def refusal(self, event_type: str) -> str | None:
        """Why this provider does not take events of ``event_type`` (None: it does)."""
        if self.takes_event(event_type):
            return None
        return f"{self.name} takes {', '.join(self.takes)}, not {event_type}"


#: keys that hold a credential inline; an example names them by ``*_env`` instead
_INLINE_SECRETS = frozenset(
    {"url", "token", "api_key", "authorization", "client_secret", "api_token", "password", "signing_secret"}
)
