"""The Jira emulator's state (issues, comments), its JQL subset and the ADF check.

JQL supported: clauses ``field = value`` or ``field in (v1, v2)`` for ``project``, ``labels``, ``key``,
``issuetype`` and ``status``, joined by ``AND``, with an optional ``ORDER BY created|key [ASC|DESC]``.
Anything else is a 400, as Jira answers for JQL it cannot parse.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FIELDS = ("project", "labels", "key", "issuetype", "status")

_CLAUSE = re.compile(
    r"""\s*(?P<field>[A-Za-z_]+)\s*(?P<op>=|\bin\b)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|\([^)]*\)|[^\s()"']+)\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_AND = re.compile(r"\s*AND\s+", re.IGNORECASE)
_ORDER = re.compile(r"\s+ORDER\s+BY\s+(?P<field>\w+)(?:\s+(?P<dir>ASC|DESC))?\s*$", re.IGNORECASE)
_ITEM = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,"']+)\s*(?:,|$)""")


class JqlError(ValueError):
    """JQL the emulator (and Jira) cannot run; the message is Jira's errorMessages entry."""


@dataclass
class Issue:
    id: str
    key: str
    project: str
    fields: dict[str, Any]
    created_at: float = field(default_factory=time.monotonic)
    comments: list[dict[str, Any]] = field(default_factory=list)


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        inner = token[1:-1]
        return re.sub(r"\\(.)", r"\1", inner) if token[0] == '"' else inner
    return token


@dataclass
class JqlQuery:
    clauses: list[tuple[str, set[str]]]
    order_field: str = "created"
    descending: bool = False

    def matches(self, issue: Issue) -> bool:
        for name, values in self.clauses:
            if name == "project":
                have = {issue.project.lower()}
            elif name == "key":
                have = {issue.key.lower()}
            elif name == "labels":
                have = {str(x).lower() for x in issue.fields.get("labels", [])}
            elif name == "issuetype":
                have = {str(issue.fields.get("issuetype", {}).get("name", "")).lower()}
            else:
                have = {"to do"}
            if not have & {v.lower() for v in values}:
                return False
        return True

    def apply(self, issues: list[Issue]) -> list[Issue]:
        found = [i for i in issues if self.matches(i)]
        found.sort(key=lambda i: int(i.id), reverse=self.descending)
        return found


def parse_jql(jql: str, projects: set[str]) -> JqlQuery:
    """Parse the supported JQL subset; unknown fields, unknown projects and bad syntax raise JqlError."""
    text = jql.strip()
    query = JqlQuery(clauses=[])
    order = _ORDER.search(" " + text)
    if order:
        text = (" " + text)[: order.start()].strip()
        if order.group("field").lower() not in ("created", "key"):
            raise JqlError(f"Not able to sort using field '{order.group('field')}'.")
        query.descending = (order.group("dir") or "ASC").upper() == "DESC"
    pos = 0
    while pos < len(text):
        m = _CLAUSE.match(text, pos)
        if m is None:
            raise JqlError(f"Error in the JQL Query: the query could not be parsed at character {pos}.")
        name = m.group("field").lower()
        if name not in FIELDS:
            raise JqlError(
                f"Field '{m.group('field')}' does not exist or you do not have permission to view it."
            )
        raw = m.group("value")
        if m.group("op").lower() == "in":
            if not raw.startswith("("):
                raise JqlError("Error in the JQL Query: expecting '(' after 'in'.")
            values = {_unquote(x) for x in _ITEM.findall(raw[1:-1])}
        else:
            values = {_unquote(raw)}
        if name == "project":
            for v in values:
                if v.upper() not in projects:
                    raise JqlError(f"The value '{v}' does not exist for the field 'project'.")
        query.clauses.append((name, values))
        pos = m.end()
        if pos < len(text):
            sep = _AND.match(text, pos)
            if sep is None:
                raise JqlError(f"Error in the JQL Query: expecting 'AND' at character {pos}.")
            pos = sep.end()
    return query


def adf_problem(value: object) -> str | None:
    """Why ``value`` is not an Atlassian Document Format document, or None when it is."""
    if not isinstance(value, dict) or value.get("type") != "doc" or value.get("version") != 1:
        return "Operation value must be an Atlassian Document"
    if not isinstance(value.get("content"), list):
        return "INVALID_INPUT"
    return None if _node_ok(value) else "INVALID_INPUT"


def _node_ok(node: object, depth: int = 0) -> bool:
    if depth > 50 or not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return False
    if node["type"] == "text":
        text = node.get("text")
        return isinstance(text, str) and text != ""
    content = node.get("content", [])
    return isinstance(content, list) and all(_node_ok(c, depth + 1) for c in content)


class JiraStore:
    """Issues and comments, with ids from 10000 and keys ``<PROJECT>-<n>`` per project."""

    def __init__(self, projects: dict[str, list[str]]) -> None:
        self.projects = {p.upper(): p for p in projects}
        self.issues: list[Issue] = []
        self._next_id = 10000
        self._next_comment = 20000
        self._counters: dict[str, int] = {}

    def project_of(self, ref: object) -> str | None:
        """The configured project named by ``{"key": …}`` or ``{"id": …}`` (ids are 10000 + position)."""
        if not isinstance(ref, dict):
            return None
        if isinstance(ref.get("key"), str):
            return self.projects.get(ref["key"].upper())
        ident = str(ref.get("id", ""))
        for n, name in enumerate(self.projects.values()):
            if ident == str(10000 + n):
                return name
        return None

    def create(self, project: str, fields: dict[str, Any]) -> Issue:
        self._counters[project] = self._counters.get(project, 0) + 1
        issue = Issue(
            id=str(self._next_id),
            key=f"{project}-{self._counters[project]}",
            project=project,
            fields={**fields, "created": _now_iso(), "status": {"name": "To Do"}},
        )
        self._next_id += 1
        self.issues.append(issue)
        return issue

    def find(self, key_or_id: str) -> Issue | None:
        for issue in self.issues:
            if key_or_id in (issue.key, issue.id):
                return issue
        return None

    def comment(self, issue: Issue, body: object, *, author: str) -> dict[str, Any]:
        comment = {
            "id": str(self._next_comment),
            "body": body,
            "author": {"emailAddress": author},
            "created": _now_iso(),
        }
        self._next_comment += 1
        issue.comments.append(comment)
        return comment


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
