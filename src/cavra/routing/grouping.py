"""A route's grouping settings (``group_by``, ``group_wait``, ``group_interval``, ``repeat_interval``),
checked at load, and the group an event joins.

As in Alertmanager: ``group_by`` lists the fields whose values make a group (an event field by dotted
path, or ``labels.KEY``); ``group_wait`` is how long a new group waits for more events before its first
message; ``group_interval`` how long after a message the events that joined since wait for the next one;
``repeat_interval`` how long a group stays open after its last message (events do not stay firing as
alerts do, so there is nothing to repeat: after ``repeat_interval`` without a new event, the group is
closed and the next matching event opens a new group, with a new ticket).

A group is one (destination, route, values of ``group_by``): its key reads ``route/destination/{a="x",
b="y"}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cavra.errors import ConfigError
from cavra.routing.matchers import read_field, split_path

GROUP_KEYS = ("group_by", "group_wait", "group_interval", "repeat_interval")
#: Alertmanager's defaults
DEFAULT_WAIT = 30.0
DEFAULT_INTERVAL = 300.0
DEFAULT_REPEAT = 4 * 3600.0
#: the longest window a setting may ask for (a week)
MAX_SECONDS = 7 * 24 * 3600.0
#: the categories whose destinations may group (SIEM and webhook destinations batch instead)
GROUPED_CATEGORIES = ("chatops", "itsm")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_FIELD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./:-]{0,127}$")


def parse_duration(raw: object, where: str) -> float:
    """``"30s"``, ``"5m"``, ``"1h"``, ``"1.5h"``, ``"250ms"``, ``"1d"`` (or a number of seconds) → seconds."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ConfigError(f'{where}: must be a duration like "30s", "5m" or "4h"')
    if isinstance(raw, str):
        match = _DURATION.match(raw.strip())
        if match is None:
            raise ConfigError(
                f'{where}: {raw!r} is not a duration (write "30s", "5m", "4h", "250ms" or "1d")'
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        seconds = float(raw)
    if seconds < 0 or seconds > MAX_SECONDS:
        raise ConfigError(f"{where}: must be between 0s and 7d")
    return seconds


@dataclass(frozen=True)
class GroupSettings:
    """One route's grouping. ``group_by``: the field names as written (``labels.env``)."""

    group_by: tuple[str, ...] = ()
    group_wait: float = DEFAULT_WAIT
    group_interval: float = DEFAULT_INTERVAL
    repeat_interval: float = DEFAULT_REPEAT

    def values(self, event: Mapping[str, Any]) -> dict[str, str]:
        """The event's values of ``group_by`` (a missing field reads as the empty string)."""
        return {name: read_field(event, split_path(name)) for name in self.group_by}

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_by": list(self.group_by),
            "group_wait": self.group_wait,
            "group_interval": self.group_interval,
            "repeat_interval": self.repeat_interval,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GroupSettings:
        return cls(
            group_by=tuple(str(x) for x in raw.get("group_by") or ()),
            group_wait=float(raw.get("group_wait", DEFAULT_WAIT)),
            group_interval=float(raw.get("group_interval", DEFAULT_INTERVAL)),
            repeat_interval=float(raw.get("repeat_interval", DEFAULT_REPEAT)),
        )


def parse_group_settings(item: Mapping[str, Any], where: str) -> GroupSettings | None:
    """The route's grouping, or None when it names none of :data:`GROUP_KEYS`."""
    if not any(key in item for key in GROUP_KEYS):
        return None
    raw_by = item.get("group_by", [])
    if not isinstance(raw_by, list):
        raise ConfigError(f"{where}.group_by: must be a list of field names (event fields or labels.KEY)")
    names: list[str] = []
    for n, name in enumerate(raw_by):
        if not isinstance(name, str) or not _FIELD.match(name) or name.endswith(".") or ".." in name:
            raise ConfigError(f"{where}.group_by[{n}]: must be a field name like 'env' or 'labels.env'")
        if name == "labels" or name in names:
            raise ConfigError(f"{where}.group_by[{n}]: {name!r} is not a field, or is named twice")
        names.append(name)
    settings = GroupSettings(
        group_by=tuple(names),
        group_wait=_duration(item, "group_wait", DEFAULT_WAIT, where),
        group_interval=_duration(item, "group_interval", DEFAULT_INTERVAL, where),
        repeat_interval=_duration(item, "repeat_interval", DEFAULT_REPEAT, where),
    )
    if settings.group_interval <= 0:
        raise ConfigError(f"{where}.group_interval: must be more than 0s")
    if settings.repeat_interval < settings.group_interval:
        raise ConfigError(f"{where}.repeat_interval: must be at least group_interval")
    return settings


def _duration(item: Mapping[str, Any], key: str, default: float, where: str) -> float:
    return default if key not in item else parse_duration(item[key], f"{where}.{key}")


def check_grouped_destinations(
    route_name: str, to: tuple[str, ...], categories: Mapping[str, str], where: str
) -> None:
    """Refuse grouping on a route that sends to a destination whose category never groups."""
    for dest in to:
        category = categories.get(dest)
        if category is not None and category not in GROUPED_CATEGORIES:
            raise ConfigError(
                f"{where}: route {route_name!r} sends to {dest!r}, a {category} destination: "
                "SIEM, webhook and endpoint destinations are never grouped (they batch); put the grouping "
                "on a route to ChatOps and ITSM destinations only"
            )


@dataclass(frozen=True)
class GroupRef:
    """The group one event joins at one destination."""

    destination: str
    route: str
    labels: dict[str, str]
    settings: GroupSettings

    @property
    def key(self) -> str:
        inner = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in self.labels.items())
        return f"{self.route}/{self.destination}/{{{inner}}}"

    @property
    def slot(self) -> str:
        """The store's id of this group key (every generation of the group shares it)."""
        digest = hashlib.sha256(f"{self.destination}\0{self.key}".encode()).hexdigest()
        return f"gs_{digest[:32]}"

    def describe(self) -> dict[str, Any]:
        return {"group_key": self.key, "labels": dict(self.labels), **self.settings.to_dict()}


def group_of(event: Mapping[str, Any], destination: str, route: str, settings: GroupSettings) -> GroupRef:
    return GroupRef(destination, route, settings.values(event), settings)


def group_id(slot: str, generation: int) -> str:
    """A group's id: stable for one generation of a key (so the ticket's dedup key is too)."""
    return "grp_" + hashlib.sha256(f"{slot}\0{generation}".encode()).hexdigest()[:24]
