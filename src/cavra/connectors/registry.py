"""Provider name -> :class:`~cavra.connectors.spec.ProviderSpec`: one registration line per provider.

The built-in providers are listed in :data:`BUILTIN` (name -> the module whose ``SPEC`` describes it),
imported only when a fact beyond the name is asked for (a CLI run that loads one connector imports one
module). :func:`register` adds a provider at run time (a plugin, a test: :func:`registered` undoes it).
Everything else about a provider is derived from its spec: :data:`CATEGORY_OF`, the default rate limits,
the emulators to mount, the example configuration (:func:`example_config`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cavra.connectors.base import Connector
from cavra.connectors.spec import ProviderSpec
from cavra.errors import ConfigError

#: the built-in providers: name -> module with its ``SPEC``. Order is the order of listings and examples.
BUILTIN: dict[str, str] = {
    "splunk": "cavra.connectors.splunk",
    "sentinel": "cavra.connectors.sentinel",
    "datadog": "cavra.connectors.datadog",
    "webhook": "cavra.connectors.webhook",
    "slack": "cavra.connectors.slack",
    "teams": "cavra.connectors.teams",
    "jira": "cavra.connectors.jira",
    "servicenow": "cavra.connectors.servicenow",
    "jamf": "cavra.connectors.jamf",
    "intune": "cavra.connectors.intune",
    "linux": "cavra.connectors.linux_fleet",
}

_REGISTERED: dict[str, ProviderSpec] = {}
_LOADED: dict[str, ProviderSpec] = {}
#: bumped whenever the set of providers changes, so what is derived from all specs can be cached
_generation = 0


def generation() -> int:
    """A number that changes whenever a provider is registered or unregistered."""
    return _generation


def _changed() -> None:
    global _generation
    _generation += 1


def _names() -> list[str]:
    return [*BUILTIN, *(n for n in _REGISTERED if n not in BUILTIN)]


def spec_of(provider: str) -> ProviderSpec:
    """The spec of ``provider`` (ConfigError naming the known providers when there is none)."""
    if provider in _REGISTERED:
        return _REGISTERED[provider]
    if provider not in BUILTIN:
        raise ConfigError(unknown_provider_message(provider))
    if provider not in _LOADED:
        spec = getattr(importlib.import_module(BUILTIN[provider]), "SPEC", None)
        if not isinstance(spec, ProviderSpec) or spec.name != provider:
            raise ConfigError(f"{BUILTIN[provider]}.SPEC: expected the ProviderSpec of {provider!r}")
        _LOADED[provider] = spec
    return _LOADED[provider]


def register(spec: ProviderSpec) -> ProviderSpec:
    """Add a provider (or replace a registered one of the same name); a built-in name is refused."""
    if spec.name in BUILTIN:
        raise ConfigError(f"provider {spec.name!r} is built in; choose another name")
    _REGISTERED[spec.name] = spec
    _changed()
    return spec


def unregister(name: str) -> None:
    if _REGISTERED.pop(name, None) is not None:
        _changed()


@contextmanager
def registered(spec: ProviderSpec) -> Iterator[ProviderSpec]:
    """``spec`` registered for the ``with`` block only (what a test uses, so nothing leaks to the next)."""
    before = _REGISTERED.get(spec.name)
    register(spec)
    try:
        yield spec
    finally:
        if before is None:
            unregister(spec.name)
        else:
            register(before)


class _Providers(Mapping[str, ProviderSpec]):
    """Every provider's name (no import) -> its spec (imported on first use)."""

    def __getitem__(self, name: str) -> ProviderSpec:
        if not known(name):
            raise KeyError(name)
        return spec_of(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and known(name)

    def __iter__(self) -> Iterator[str]:
        return iter(_names())

    def __len__(self) -> int:
        return len(_names())


class _Categories(Mapping[str, str]):
    """Provider -> category (siem, chatops, itsm, endpoint), from each spec."""

    def __getitem__(self, name: str) -> str:
        return PROVIDERS[name].category

    def __contains__(self, name: object) -> bool:
        return name in PROVIDERS

    def __iter__(self) -> Iterator[str]:
        return iter(PROVIDERS)

    def __len__(self) -> int:
        return len(PROVIDERS)


PROVIDERS: Mapping[str, ProviderSpec] = _Providers()
CATEGORY_OF: Mapping[str, str] = _Categories()


def known(provider: str) -> bool:
    return provider in BUILTIN or provider in _REGISTERED


def providers_of(category: str) -> list[str]:
    return [name for name, spec in PROVIDERS.items() if spec.category == category]


def providers_taking(event_type: str) -> list[str]:
    """The providers that take ``event_type`` by name (not those that take every event)."""
    return [name for name, spec in PROVIDERS.items() if event_type in spec.takes]


def unknown_provider_message(provider: str) -> str:
    return f"unknown provider {provider!r}; known providers: {', '.join(_names())}"


def connector_class(provider: str) -> type[Connector]:
    cls: type[Connector] = spec_of(provider).connector  # type: ignore[assignment]
    return cls


def get_connector(provider: str) -> Connector:
    return connector_class(provider)()


def default_rate_limits() -> dict[str, str]:
    """provider -> its default ``RATE[/BURST]`` (``cavra.ratelimit`` parses them)."""
    return {name: spec.rate_limit for name, spec in PROVIDERS.items() if spec.rate_limit is not None}


def emulator_modules(providers: list[str] | None = None) -> dict[str, str]:
    """mount -> emulator module for ``providers`` (default: all), the emulators they need (token issuers)
    first."""
    specs = [spec_of(name) for name in (_names() if providers is None else providers)]
    mounts: dict[str, str] = {}
    for spec in specs:
        mounts.update({m: module for m, module in spec.emulators.items() if m != spec.mount})
    for spec in specs:
        mounts[spec.mount] = spec.emulator
    return mounts


def example_config() -> dict[str, Any]:
    """``examples/connectors/cavra-connectors.example.json``: every provider's example entry."""
    return {"version": 1, "connectors": {name: dict(spec.example) for name, spec in PROVIDERS.items()}}


def example_environment() -> dict[str, str]:
    """A plausible production value for every variable the example configuration names."""
    env: dict[str, str] = {}
    for spec in PROVIDERS.values():
        env.update(spec.example_env)
    return env


if __name__ == "__main__":  # python -m cavra.connectors.registry > examples/connectors/...example.json
    import json

    print(json.dumps(example_config(), indent=2))
