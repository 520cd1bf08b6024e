"""The AWX emulator's jobs: their state per hub, how they are listed (filters, ordering, pages) and shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from weakref import WeakKeyDictionary

import yaml
from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response

FINAL = ("successful", "failed", "error", "canceled")


@dataclass
class Job:
    id: int
    template_id: int
    template: dict[str, Any]
    extra_vars: dict[str, Any]
    created: str
    polls: int = 0
    status: str = "pending"
    started: str | None = None
    finished: str | None = None


@dataclass
class AwxState:
    """Launched jobs by id."""

    jobs: dict[int, Job] = field(default_factory=dict)
    next_id: int = 101

    def clear(self) -> None:
        self.jobs.clear()
        self.next_id = 101


_STATES: WeakKeyDictionary[EmulatorHub, AwxState] = WeakKeyDictionary()


def state(hub: EmulatorHub) -> AwxState:
    """The AWX emulator's state on this hub."""
    found = _STATES.get(hub)
    if found is None:
        found = AwxState()
        _STATES[hub] = found
    return found


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"detail": message}, status=status, headers=headers)


def parse_extra_vars(value: Any) -> dict[str, Any] | None:
    """``extra_vars`` as an object: given as one, or as a JSON/YAML string. None when it is neither."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def serialize(job: Job, api: str) -> dict[str, Any]:
    """A job as the controller shows it; ``api`` is the controller API base path (``/awx/api/v2``)."""
    url = f"{api}/jobs/{job.id}/"
    return {
        "id": job.id,
        "type": "job",
        "url": url,
        "related": {
            "stdout": url + "stdout/",
            "job_template": f"{api}/job_templates/{job.template_id}/",
        },
        "name": job.template.get("name", f"template {job.template_id}"),
        "job_template": job.template_id,
        "launch_type": "manual",
        "status": job.status,
        "failed": job.status in ("failed", "error"),
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "elapsed": 0.0 if job.finished is None else 1.0,
        "extra_vars": json.dumps(job.extra_vars),
        "job_explanation": "",
    }


#: list filters: field -> how a query value is read for comparison
_FIELDS: dict[str, Callable[[str], Any]] = {
    "id": int,
    "job_template": int,
    "name": str,
    "status": str,
    "launch_type": str,
    "failed": lambda v: v.strip().lower() in ("true", "1"),
    **dict.fromkeys(("created", "started", "finished"), lambda v: _when(v)),
}
_LOOKUPS: dict[str, Callable[[Any, Any], bool]] = {
    "exact": lambda a, b: a == b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "contains": lambda a, b: a is not None and str(b) in str(a),
    "icontains": lambda a, b: a is not None and str(b).lower() in str(a).lower(),
}
_RESERVED = {"page", "page_size", "order_by", "search", "format"}
PAGE_SIZE, MAX_PAGE_SIZE = 25, 200


def _when(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _value(job: Job, name: str) -> Any:
    """A listed field's value as filters and ordering compare it (times as datetimes)."""
    raw = serialize(job, "")[name]
    return _when(raw) if name in ("created", "started", "finished") and raw is not None else raw


def _matcher(key: str, value: str) -> Callable[[Job], bool] | web.Response:
    """One query parameter as a job predicate, or the controller's error answer."""
    field_name, _, lookup = key.partition("__")
    lookup = lookup or "exact"
    if field_name == "extra_vars":
        return detail(403, "Filtering on extra_vars is not allowed.")
    if field_name not in _FIELDS or (lookup not in _LOOKUPS and lookup not in ("in", "isnull")):
        return detail(400, f"Job has no field named '{key}'")
    if lookup == "isnull":
        wanted = value.strip().lower() in ("true", "1")
        return lambda job: (_value(job, field_name) is None) is wanted
    try:
        if lookup == "in":
            options = [_FIELDS[field_name](v) for v in value.split(",")]
            return lambda job: _value(job, field_name) in options
        target = value if lookup in ("contains", "icontains") else _FIELDS[field_name](value)
    except ValueError:
        return detail(400, json.dumps([f"'{value}' value has an invalid format for {field_name}."]))
    compare = _LOOKUPS[lookup]
    return lambda job: bool(compare(_value(job, field_name), target))


def _page_link(request: web.Request, page: int | None) -> str:
    query = [(k, v) for k, v in request.query.items() if k != "page"]
    if page is not None:
        query.append(("page", str(page)))
    return request.path + ("?" + urlencode(query) if query else "")


def list_jobs(request: web.Request, jobs: list[Job], api: str) -> web.Response:
    """A job list as the controller answers it: filtered, ordered and paged."""
    selected = list(jobs)
    for key, value in request.query.items():
        if key in _RESERVED:
            continue
        predicate = _matcher(key, value)
        if isinstance(predicate, web.Response):
            return predicate
        selected = [job for job in selected if predicate(job)]
    search = request.query.get("search", "").lower()
    selected = [job for job in selected if search in str(_value(job, "name")).lower()]
    selected.sort(key=lambda job: job.id)
    for field_name in reversed([f for f in request.query.get("order_by", "").split(",") if f]):
        name = field_name.lstrip("-")
        if name not in _FIELDS:
            return detail(400, f"Cannot resolve keyword '{name}' into field.")
        missing = [job for job in selected if _value(job, name) is None]
        present = [job for job in selected if _value(job, name) is not None]
        present.sort(key=lambda job: _value(job, name), reverse=field_name.startswith("-"))
        selected = present + missing
    try:
        size = int(request.query.get("page_size", PAGE_SIZE))
    except ValueError:
        size = PAGE_SIZE
    size = min(size if size > 0 else PAGE_SIZE, MAX_PAGE_SIZE)
    try:
        page = int(request.query.get("page", "1"))
    except ValueError:
        return detail(404, "Invalid page.")
    pages = max(1, -(-len(selected) // size))
    if not 1 <= page <= pages:
        return detail(404, "Invalid page.")
    return json_response(
        {
            "count": len(selected),
            "next": _page_link(request, page + 1) if page < pages else None,
            "previous": None if page == 1 else _page_link(request, page - 1 if page > 2 else None),
            "results": [serialize(job, api) for job in selected[(page - 1) * size : page * size]],
        }
    )
