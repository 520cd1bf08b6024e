"""``cavra routes test`` and ``POST /routes/test``: where an event would go, without sending anything.

:func:`explain` routes one event and, for each matched destination, builds the request its connector
would send first (a token request, a Jira search, or the delivery itself), redacted by that destination's
redactor exactly as evidence is: URL, headers and a bounded body excerpt. Nothing leaves the process.

:func:`run_cases` checks a file of cases (YAML or JSON: a list, or ``{"cases": [...]}``; each case is
``{name?, event, expect: [destinations]}`` or ``expect: []`` for an event that must stay unrouted):
destinations are compared as sets; the answer lists each case's verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cavra.config import LoadedConfig, Target
from cavra.connectors.base import Context
from cavra.connectors.messages import rendered
from cavra.errors import CavraError, InputError
from cavra.events import normalize_event
from cavra.governance.publish import route_table
from cavra.grouping.preview import describe_group
from cavra.grouping.publish import grouping_of
from cavra.secrets import Secret

ROUTES_TEST_SCHEMA = "cavra.routes.test.v1"
ROUTES_CASES_SCHEMA = "cavra.routes.cases.v1"
#: body bytes shown of each would-be request
BODY_EXCERPT = 4096


def preview_request(target: Target, event: Mapping[str, Any]) -> dict[str, Any]:
    """The first request ``target``'s connector would send for ``event``, redacted."""
    ctx = Context(delivery_key=target.delivery_key(str(event["event_id"])))
    redactor = target.redactor
    try:
        request = target.connector.prepare(event, target.settings, ctx, None)
    except (CavraError, ValueError, KeyError, TypeError) as exc:
        return {"error": str(redactor.text(f"not sent: the event cannot be rendered ({exc})"))}
    extra = [*request.new_secrets, *(v for v in request.headers.values() if isinstance(v, Secret))]
    if extra:
        redactor = redactor.with_secrets(extra)
    shown = redactor.request(request.method, request.url, request.headers).to_dict()
    return {"step": request.step, **shown, "body": str(redactor.excerpt(request.body, BODY_EXCERPT))}


def preview_message(target: Target, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """What people would read (with the destination's templates), redacted like a request, and whether it
    keeps the provider's limits (Slack, Teams); ``None`` for providers that carry the event as data."""
    delivery_key = target.delivery_key(str(event["event_id"]))
    try:
        shown = rendered(target.provider, event, target.settings, delivery_key)
    except (CavraError, ValueError, KeyError, TypeError) as exc:
        return {"error": str(target.redactor.text(f"the message cannot be rendered ({exc})"))}
    if shown is None:
        return None
    text = json.dumps(shown["message"], ensure_ascii=False, indent=2, default=str)
    out: dict[str, Any] = {
        "message": json.loads(str(target.redactor.text(text))),
        "limits": str(target.redactor.text(shown["limits"])),
    }
    if "template_warning" in shown:
        out["template_warning"] = str(target.redactor.text(shown["template_warning"]))
    return out


def explain(config: LoadedConfig, raw_event: object) -> dict[str, Any]:
    """The routes that match ``raw_event`` (in order), its destinations and each one's would-be request."""
    table = route_table(config)
    event = normalize_event(raw_event, source="event")
    decision = table.route(event)
    groups = grouping_of(table)
    destinations = []
    for dest, route in decision.destinations.items():
        item: dict[str, Any] = {"destination": dest, "route": route}
        target = config.targets.get(dest)
        sent = event
        if route in groups:  # the event joins a group: show the group and its message
            item["group"], sent = describe_group(event, dest, route, groups[route])
        if target is not None:
            item["provider"] = target.provider
            item["request"] = preview_request(target, sent)
            shown = preview_message(target, sent)
            if shown is not None:
                item["rendered"] = shown
        elif dest in config.errors:
            item["error"] = config.errors[dest]
        else:
            item["skipped"] = "disabled"
        destinations.append(item)
    return {
        "schema_version": ROUTES_TEST_SCHEMA,
        "event_id": event["event_id"],
        "event_type": event.get("event_type"),
        "status": "unrouted" if decision.unrouted else "routed",
        "routes": [r.describe() for r in decision.routes],
        "destinations": destinations,
        "sent": False,
    }


def load_cases(path: str) -> list[dict[str, Any]]:
    """Read a cases file; errors name the file and the case."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a YAML or JSON file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"{path}: not valid YAML{f' (line {mark.line + 1})' if mark else ''}") from None
    return check_cases(data, source=path)


def check_cases(data: object, *, source: str) -> list[dict[str, Any]]:
    cases = data.get("cases") if isinstance(data, dict) else data
    if not isinstance(cases, list) or not cases:
        raise InputError(f"{source}: must be a non-empty list of cases (or a mapping with 'cases')")
    out = []
    for i, case in enumerate(cases):
        where = f"{source}: cases[{i}]"
        if not isinstance(case, dict):
            raise InputError(f"{where}: must be a mapping with event and expect")
        unknown = set(case) - {"name", "event", "expect"}
        if unknown:
            raise InputError(f"{where}.{sorted(unknown)[0]}: unknown key (expected name, event, expect)")
        expect = case.get("expect")
        if not isinstance(expect, list) or not all(isinstance(d, str) for d in expect):
            raise InputError(f"{where}.expect: must be a list of destination names ([] for unrouted)")
        event = normalize_event(case.get("event"), source=f"{where}.event")
        out.append({"name": str(case.get("name") or f"cases[{i}]"), "event": event, "expect": expect})
    return out


def run_cases(config: LoadedConfig, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Each case's routing against its expectation; ``success`` when every case holds."""
    table = route_table(config)
    results = []
    for case in cases:
        decision = table.route(case["event"])
        got = list(decision.destinations)
        expected = list(case["expect"])
        results.append(
            {
                "name": case["name"],
                "event_id": case["event"]["event_id"],
                "passed": set(got) == set(expected),
                "expected": expected,
                "got": got,
                "routes": [r.name for r in decision.routes],
            }
        )
    failed = sum(1 for r in results if not r["passed"])
    return {
        "schema_version": ROUTES_CASES_SCHEMA,
        "success": failed == 0,
        "cases": len(results),
        "passed": len(results) - failed,
        "failed": failed,
        "results": results,
    }
