"""The compiled route list and the routing decision (pure: no I/O, no clock, no config object).

Routes are tried in order. A route matches an event when every condition it names holds (``event_type``:
any of its globs; ``min_severity``; ``subject`` kind and id globs; every matcher). A matching route sends
the event to its destinations and routing stops there, unless the route says ``continue: true``. The
default route (at most one, last) sends the events no other route matched. A destination that several
matching routes name gets the event once, from the first of them (the record names that route).

The candidates for an event type (the routes whose ``event_type`` condition holds) are computed once per
event type and kept (bounded), so routing an event costs about one test per candidate route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cavra.events import SEVERITIES
from cavra.routing.grouping import GroupSettings
from cavra.routing.matchers import Glob, Matcher, read_field, severity_of, subject_of

#: distinct event types whose candidate routes are kept
CANDIDATE_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Route:
    """One compiled route."""

    index: int
    name: str
    to: tuple[str, ...]
    event_types: tuple[Glob, ...] = ()
    min_severity: str | None = None
    subject_kind: Glob | None = None
    subject_id: Glob | None = None
    matchers: tuple[Matcher, ...] = ()
    cont: bool = False
    default: bool = False
    #: ``group_by`` and its windows (cavra.grouping), or None: every event is its own message
    grouping: GroupSettings | None = None

    #: the rank ``min_severity`` asks for (0: any); set from it
    min_rank: int = field(default=0, init=False, compare=False)
    #: subject conditions, or none
    has_subject: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        rank = 0 if self.min_severity is None else SEVERITIES.index(self.min_severity)
        object.__setattr__(self, "min_rank", rank)
        object.__setattr__(self, "has_subject", self.subject_kind is not None or self.subject_id is not None)

    @property
    def catches_all(self) -> bool:
        """No condition at all: every event matches."""
        return not (
            self.event_types
            or self.min_rank
            or self.subject_kind
            or self.subject_id
            or self.matchers
            or self.default
        )

    def type_matches(self, event_type: str) -> bool:
        return not self.event_types or any(g.test(event_type) for g in self.event_types)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Every condition holds for ``event`` (the default route: never by itself)."""
        if self.default:
            return False
        et = event.get("event_type")
        if not self.type_matches(et if isinstance(et, str) else ""):
            return False
        return self._rest(event, severity_of(event) if self.min_rank else 0)

    def _rest(
        self,
        event: Mapping[str, Any],
        rank: int,
        fields: dict[tuple[str, ...], str] | None = None,
        results: list[bool | None] | None = None,
    ) -> bool:
        """The conditions past ``event_type``. ``fields``: field texts already read for this event;
        ``results``: matcher outcomes already known for it (by ``Matcher.slot``)."""
        if self.min_rank and rank < self.min_rank:
            return False
        if self.has_subject:
            kind, sid = subject_of(event)
            if self.subject_kind is not None and not self.subject_kind.test(kind):
                return False
            if self.subject_id is not None and not self.subject_id.test(sid):
                return False
        if fields is None:
            fields = {}
        for m in self.matchers:
            known = None if results is None else results[m.slot]
            if known is None:
                text = fields.get(m.path)
                if text is None:
                    text = fields[m.path] = read_field(event, m.path)
                known = m.test(text)
                if results is not None:
                    results[m.slot] = known
            if not known:
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The route as an answer shows it (index, name, destinations, continue, default)."""
        return {
            "index": self.index,
            "name": self.name,
            "destinations": list(self.to),
            "continue": self.cont,
            "default": self.default,
            **({} if self.grouping is None else {"grouping": self.grouping.to_dict()}),
        }


@dataclass(frozen=True)
class Decision:
    """Where one event goes: the routes that matched, in order, and each destination with the route that
    sends it there (the first matching route that names it)."""

    routes: tuple[Route, ...]
    destinations: Mapping[str, str]

    @property
    def unrouted(self) -> bool:
        return not self.destinations

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "unrouted" if self.unrouted else "routed",
            "routes": [r.describe() for r in self.routes],
            "destinations": [{"destination": d, "route": r} for d, r in self.destinations.items()],
        }


@dataclass(frozen=True)
class RouteTable:
    """The ordered routes of one connectors file."""

    routes: tuple[Route, ...]
    _candidates: dict[str, tuple[Route, ...]] = field(default_factory=dict, compare=False, repr=False)
    #: distinct matchers (same field, operator and value) across the routes; see ``Matcher.slot``
    slots: int = field(default=0, init=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[tuple[tuple[str, ...], str, str], int] = {}
        for route in self.routes:
            for m in route.matchers:
                object.__setattr__(m, "slot", seen.setdefault((m.path, m.op, m.value), len(seen)))
        object.__setattr__(self, "slots", len(seen))

    @property
    def default(self) -> Route | None:
        last = self.routes[-1] if self.routes else None
        return last if last is not None and last.default else None

    @property
    def destinations(self) -> list[str]:
        """Every destination some route names, in order of first mention."""
        return list(dict.fromkeys(d for r in self.routes for d in r.to))

    def candidates(self, event_type: str) -> tuple[Route, ...]:
        found = self._candidates.get(event_type)
        if found is None:
            found = tuple(r for r in self.routes if not r.default and r.type_matches(event_type))
            if len(self._candidates) < CANDIDATE_CACHE_SIZE:
                self._candidates[event_type] = found
        return found

    def route(self, event: Mapping[str, Any]) -> Decision:
        """The decision for one event."""
        et = event.get("event_type")
        rank = -1
        hits: list[Route] = []
        fields: dict[tuple[str, ...], str] = {}
        results: list[bool | None] = [None] * self.slots
        for route in self.candidates(et if isinstance(et, str) else ""):
            if route.min_rank and rank < 0:
                rank = severity_of(event)
            if route._rest(event, rank, fields, results):
                hits.append(route)
                if not route.cont:
                    break
        if not hits and self.default is not None:
            hits.append(self.default)
        sent: dict[str, str] = {}
        for route in hits:
            for dest in route.to:
                sent.setdefault(dest, route.name)
        return Decision(tuple(hits), sent)
