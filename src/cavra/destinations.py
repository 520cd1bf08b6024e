"""Destinations: named, configured uses of one provider (DESIGN principle 8).

Each entry of the connectors file's ``connectors`` map is a destination. Its key is the destination's
name; its ``provider`` key names the connector it uses, and an entry without one is the destination named
after its provider, so a file written for one entry per provider reads exactly as before::

    connectors:
      slack:         {url_env: SLACK_WEBHOOK_URL}                      # destination "slack"
      slack-release: {provider: slack, url_env: SLACK_RELEASE_URL}     # a second Slack destination

A destination has everything of its own: secrets, settings, ``enabled``, ``rate_limit``, ``headers``,
``retry`` (its outbox schedule), ``proxy_url``, and, at run time, its own circuit breaker, pause,
rate-limit bucket, access tokens and health (all keyed by the destination's name). Two destinations of one
provider share only the connector's code.

Destination names match :data:`NAME_PATTERN`. A bad name, or a ``provider`` that is not a known provider,
is an error of the whole file (a route may name the destination), naming the file and the key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from cavra.connectors.registry import CATEGORY_OF, PROVIDERS, unknown_provider_message
from cavra.errors import ConfigError

#: a destination's name: lower-case letters, digits, ``_``, ``.`` and ``-``; 1-63 characters
NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,62}"
_NAME = re.compile(NAME_PATTERN)
#: the key of an entry that names its provider
PROVIDER_KEY = "provider"


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def split_destination(source: str, name: str, raw: object) -> tuple[str, Any]:
    """``(provider, settings)`` of the entry ``connectors.<name>``: the provider it names (default: its own
    name) and its settings without the ``provider`` key. Raises ConfigError (naming ``source`` and the
    key) for an invalid name or an unknown provider; other problems are the connector loader's."""
    if not isinstance(raw, Mapping) or PROVIDER_KEY not in raw:
        if name not in PROVIDERS:  # a typo of a provider's name is an error of the file, never ignored
            raise ConfigError(
                f"{source}: connectors.{name}: not a provider's name, and the entry names no provider"
                f'{_nearest(name)} (a destination of another name says which: "provider": "slack"; '
                f"providers: {', '.join(PROVIDERS)})"
            )
        return name, {} if raw is None else raw
    provider = raw[PROVIDER_KEY]
    path = f"{source}: connectors.{name}"
    if not isinstance(provider, str) or not provider.strip():
        raise ConfigError(f"{path}.provider: must be a provider name ({', '.join(PROVIDERS)})")
    provider = provider.strip()
    if provider not in PROVIDERS:
        raise ConfigError(f"{path}.provider: {unknown_provider_message(provider)}")
    if not valid_name(name):
        raise ConfigError(
            f"{path}: {name!r} is not a valid destination name "
            "(1-63 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit)"
        )
    return provider, {k: v for k, v in raw.items() if k != PROVIDER_KEY}


def _nearest(name: str) -> str:
    near = difflib.get_close_matches(name, list(PROVIDERS), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def categories_of(entries: Mapping[str, Any]) -> dict[str, str]:
    """Destination name -> its provider's category, for the entries of a connectors file whose provider is
    known (the file's own checks report the others)."""
    out: dict[str, str] = {}
    for key, raw in entries.items():
        provider = raw.get("provider", key) if isinstance(raw, Mapping) else key
        category = CATEGORY_OF.get(provider) if isinstance(provider, str) else None
        if category is not None:
            out[str(key)] = category
    return out
