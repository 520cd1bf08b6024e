"""The ``routes`` list of a connectors file → a :class:`~cavra.routing.table.RouteTable`, checked at load.

A problem refuses the whole file with one :class:`~cavra.errors.ConfigError` that names the file, the
route's index and the key (``cavra.yaml: routes[2].matchers[0]: invalid regex …``): an unknown key or
destination, a bad glob, severity or regex, an empty ``to``, a default route that is not last, and a
route that can never match (contradictory matchers on one field, a field pinned by ``=`` to a value
another of its conditions refuses, or a route below one that matches every event and does not
``continue``).

Route keys: ``name``, ``event_type`` (a glob or a list of globs), ``min_severity``, ``subject``
(``{kind, id}``, globs), ``matchers`` (a list of ``NAME op VALUE`` strings), ``to`` (a destination or a
list), ``continue`` (bool), ``default`` (bool: the route for events no other route matched; only ``name``
and ``to`` beside it).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from cavra.errors import ConfigError
from cavra.events import SEVERITIES
from cavra.routing.grouping import GROUP_KEYS, check_grouped_destinations, parse_group_settings
from cavra.routing.matchers import Glob, Matcher, MatcherError
from cavra.routing.table import Route, RouteTable

ROUTE_KEYS = (
    "name",
    "event_type",
    "min_severity",
    "subject",
    "matchers",
    "to",
    "continue",
    "default",
    *GROUP_KEYS,
)
DEFAULT_KEYS = ("name", "to", "default", *GROUP_KEYS)
SUBJECT_KEYS = ("kind", "id")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def compile_routes(
    raw: object,
    *,
    source: str,
    destinations: Collection[str],
    categories: Mapping[str, str] | None = None,
) -> RouteTable:
    """Compile and check a ``routes`` list; ``destinations``: every destination name the file defines;
    ``categories``: destination name -> its provider's category (grouping is refused on the categories that
    never group)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: routes: must be a list of routes")
    routes: list[Route] = []
    names: dict[str, int] = {}
    shadow: Route | None = None
    for i, item in enumerate(raw):
        where = f"{source}: routes[{i}]"
        route = _route(i, item, where, destinations)
        if route.grouping is not None and isinstance(item, Mapping):
            key = next(k for k in GROUP_KEYS if k in item)
            check_grouped_destinations(route.name, route.to, categories or {}, f"{where}.{key}")
        if route.name in names:
            raise ConfigError(
                f"{where}.name: {route.name!r} is already the name of routes[{names[route.name]}]"
            )
        names[route.name] = i
        if routes and routes[-1].default:
            raise ConfigError(f"{where}: the default route (routes[{i - 1}]) must be the last route")
        if shadow is not None:
            raise ConfigError(
                f"{where}: can never match: routes[{shadow.index}] matches every event and has no continue"
            )
        if route.catches_all and not route.cont:
            shadow = route
        routes.append(route)
    return RouteTable(tuple(routes))


def _route(index: int, item: object, where: str, destinations: Collection[str]) -> Route:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a mapping (keys: {', '.join(ROUTE_KEYS)})")
    for key in item:
        if key not in ROUTE_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key (expected one of: {', '.join(ROUTE_KEYS)})")
    default = _bool(item, "default", where)
    if default:
        for key in item:
            if key not in DEFAULT_KEYS:
                raise ConfigError(f"{where}.{key}: a default route has only name and to")
    name = item.get("name", f"routes[{index}]")
    if "name" in item and (not isinstance(name, str) or not _NAME.match(name)):
        raise ConfigError(f"{where}.name: must be 1-64 letters, digits, '_', '.', ':' or '-'")
    route = Route(
        index=index,
        name=name,
        to=_to(item.get("to"), f"{where}.to", destinations),
        event_types=_globs(item.get("event_type"), f"{where}.event_type"),
        min_severity=_severity(item.get("min_severity"), f"{where}.min_severity"),
        matchers=_matchers(item.get("matchers"), f"{where}.matchers"),
        cont=_bool(item, "continue", where),
        default=default,
        grouping=parse_group_settings(item, where),
        **_subject(item.get("subject"), f"{where}.subject"),
    )
    _satisfiable(route, where)
    return route


def _bool(item: Mapping[str, Any], key: str, where: str) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: must be true or false")
    return value


def _to(raw: object, where: str, destinations: Collection[str]) -> tuple[str, ...]:
    names = [raw] if isinstance(raw, str) else raw
    if raw is None or not isinstance(names, list) or not names:
        raise ConfigError(f"{where}: must name at least one destination (a name or a list of names)")
    seen: list[str] = []
    for n, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}[{n}]: must be a destination name")
        if name not in destinations:
            known = ", ".join(sorted(destinations)) or "none"
            raise ConfigError(f"{where}: unknown destination {name!r} (the connectors file defines: {known})")
        if name in seen:
            raise ConfigError(f"{where}: names destination {name!r} twice")
        seen.append(name)
    return tuple(seen)


def _globs(raw: object, where: str) -> tuple[Glob, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: must be an event type (glob) or a non-empty list of them")
    out = []
    for n, pattern in enumerate(items):
        try:
            out.append(Glob.compile(pattern))
        except MatcherError as exc:
            raise ConfigError(f"{where}{'' if isinstance(raw, str) else f'[{n}]'}: {exc}") from None
    return tuple(out)


def _severity(raw: object, where: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or raw.lower() not in SEVERITIES:
        raise ConfigError(f"{where}: must be one of {', '.join(SEVERITIES)}")
    return raw.lower()


def _subject(raw: object, where: str) -> dict[str, Glob | None]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: must be a mapping with kind and/or id")
    out: dict[str, Glob | None] = {}
    for key, value in raw.items():
        if key not in SUBJECT_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key (expected kind or id)")
        try:
            out[f"subject_{key}"] = Glob.compile(value)
        except MatcherError as exc:
            raise ConfigError(f"{where}.{key}: {exc}") from None
    return out


def _matchers(raw: object, where: str) -> tuple[Matcher, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: must be a list of matchers like 'env=\"prod\"'")
    out = []
    for n, text in enumerate(raw):
        try:
            out.append(Matcher.parse(text))
        except MatcherError as exc:
            raise ConfigError(f"{where}[{n}]: {exc}") from None
    return tuple(out)


def _satisfiable(route: Route, where: str) -> None:
    """Refuse matchers that no event can satisfy together: a field pinned by ``=`` must pass every other
    condition on it (two different ``=`` values, ``=a`` with ``!=a``, ``=a`` with a regex refusing ``a``,
    ``event_type="x"`` with an ``event_type`` glob refusing ``x``)."""
    pinned: dict[tuple[str, ...], tuple[int, Matcher]] = {}
    for n, m in enumerate(route.matchers):
        if m.op == "=" and m.path not in pinned:
            pinned[m.path] = (n, m)
    for n, m in enumerate(route.matchers):
        first = pinned.get(m.path)
        if first is None or first[0] == n:
            continue
        if not m.test(first[1].value):
            raise ConfigError(
                f"{where}.matchers[{n}]: can never match: {m} contradicts matchers[{first[0]}] {first[1]}"
            )
    event_type = pinned.get(("event_type",))
    if event_type is not None and route.event_types and not route.type_matches(event_type[1].value):
        raise ConfigError(
            f"{where}.matchers[{event_type[0]}]: can never match: {event_type[1]} is not an event_type "
            "this route's event_type allows"
        )
