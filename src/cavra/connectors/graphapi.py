"""Microsoft Graph's wire details the Intune connector reads and writes: the ``$filter`` of a search by
display name (OData quoting), and the error body (Graph's ``error.code``/``error.message``, whose Intune
form nests a JSON ``Message`` with the activity id)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, quote, urlsplit

from cavra.connectors.base import Response
from cavra.secretforms import clip

_FILTER = re.compile(r"^displayName eq '((?:[^']|'')*)'$")


def filter_query(display_name: str) -> str:
    """``$filter=displayName eq '…'`` with the OData quote doubled and the value URL-encoded."""
    expression = "displayName eq '{}'".format(display_name.replace("'", "''"))
    return "$filter=" + quote(expression, safe="")


def error_message(raw: object) -> str:
    """Graph's ``error.message``; Intune's is a JSON string whose ``Message`` carries the text (and then
    `` - Operation ID …``, ``Activity ID …``, ``Url …``): the text and the activity id are kept."""
    text = str(raw or "")
    try:
        inner = json.loads(text) if text.lstrip().startswith("{") else None
    except ValueError:
        inner = None
    if isinstance(inner, dict) and isinstance(inner.get("Message"), str):
        parts = inner["Message"].split(" - ")
        activity = next((p for p in parts if p.startswith("Activity ID:")), "")
        text = parts[0] + (f" ({activity})" if activity else "")
    return text


def searched_name(url: str) -> str | None:
    """The displayName in the search URL's ``$filter`` (which :func:`filter_query` wrote)."""
    for expression in parse_qs(urlsplit(url).query).get("$filter", []):
        match = _FILTER.match(expression)
        if match is not None:
            return match.group(1).replace("''", "'")
    return None


def graph_error(response: Response) -> str:
    """``HTTP 400 BadRequest: <message>`` from Graph's error body."""
    data = response.json_or_none()
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code, message = clip(str(error.get("code", "")), 60), clip(error_message(error.get("message")), 300)
        return f"HTTP {response.status} {code}: {message}".rstrip(": ")
    return f"HTTP {response.status}"
