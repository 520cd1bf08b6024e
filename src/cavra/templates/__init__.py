"""Message templates: what people read in Slack, Teams, Jira and ServiceNow, and extra webhook fields.

A destination's ``templates`` key overrides parts of its connector's rendering (see docs/routing.md,
"Templates"). Templates are Jinja2, compiled once when the connectors file loads
(:func:`compile_templates`; an error names the file, the destination, the template key and the line) and
rendered in the bounded sandbox of :mod:`cavra.templates.sandbox`. The connector renders them in its
``prepare`` from the :class:`CompiledTemplates` held by its settings; a key without a template keeps the
connector's own rendering, which is what the shipped defaults (``cavra templates show PROVIDER``)
reproduce byte for byte.

The render context is built here, explicitly, from the event and values derived from it, the subject, the
destination's name and provider, and the non-secret settings captured at load (:func:`public_settings`):
no settings object, no :class:`~cavra.secrets.Secret`, no header values. The rendered request still goes
through the destination's redactor like every request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from jinja2 import Template, TemplateError, TemplateSyntaxError, meta

from cavra.errors import ConfigError, InputError
from cavra.templates.context import BUILDERS, chat_facts, context

__all__ = [
    "KEYS",
    "Bound",
    "CompiledTemplates",
    "TemplateFailure",
    "chat_facts",
    "compile_templates",
    "context",
]
from cavra.templates.sandbox import TemplateSandbox, render_bounded

#: the template keys of each provider, and whether the rendered text must be JSON
KEYS: dict[str, dict[str, str]] = {
    "slack": {"text": "text", "blocks": "json"},
    "teams": {"title": "text", "text": "text", "facts": "json"},
    "jira": {"summary": "text", "description": "text", "comment": "text"},
    "servicenow": {"short_description": "text", "description": "text", "work_notes": "text"},
    "webhook": {"fields": "mapping"},
}
#: webhook envelope keys an extra field may not replace
ENVELOPE_KEYS = frozenset({"type", "timestamp", "schema", "event_id", "session_id", "data"})
_SETTING_SKIP = frozenset({"headers", "templates", "proxy_url", "retry", "ca_bundle"})


class TemplateFailure(Exception):
    """A template could not render this event (an error, a limit, a result the provider would refuse).
    The connector falls back to its own rendering and says why in the record."""


def _slack_escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_clip(text: Any, limit: int) -> str:
    value = str(text)
    if len(value) <= limit:
        return value
    cut = value[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _clip(text: Any, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _oneline(text: Any) -> str:
    return " ".join(str(text).split())


_WIKI_SPECIAL = re.compile(r"([\\{}\[\]*_|^~+\-#!?])")


def _wiki_escape(text: Any) -> str:
    return _WIKI_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


_ENV = TemplateSandbox()
_ENV.add_filters(
    {
        "slack_escape": _slack_escape,
        "slack_clip": _slack_clip,
        "clip": _clip,
        "oneline": _oneline,
        "wiki_escape": _wiki_escape,
    }
)


@dataclass(frozen=True)
class CompiledTemplates:
    """A destination's compiled templates (key → template; ``fields.NAME`` for webhook fields) and what
    their context may show of the destination."""

    destination: str
    provider: str
    templates: Mapping[str, Template] = field(default_factory=dict)
    #: the destination's non-secret settings, captured at load
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: the context names each template reads (found at load); a key without an entry gets them all
    names: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return key in self.templates

    def field_names(self) -> list[str]:
        return [k.split(".", 1)[1] for k in self.templates if k.startswith("fields.")]

    def bind(self, event: Mapping[str, Any], **extra: str) -> Bound:
        """The templates bound to one event: the renders of one request share one context.
        ``extra``: values the connector adds (Jira's ``dedup_label``, ServiceNow's ``correlation_id``; for a
        comment or work note also ``delivered_at`` and the ticket's ``issue_key`` or ``number``)."""
        return Bound(self, event, extra)

    def render(self, key: str, event: Mapping[str, Any], **extra: str) -> str:
        """The text template ``key`` rendered for ``event``; :class:`TemplateFailure` when it cannot be."""
        return self.bind(event, **extra).render(key)

    def render_json(self, key: str, event: Mapping[str, Any], **extra: str) -> Any:
        """The JSON template ``key`` rendered and parsed."""
        return self.bind(event, **extra).render_json(key)


class Bound:
    """A destination's templates and one event: each render builds only the context names its template
    reads and did not build yet (see :mod:`cavra.templates.context`)."""

    __slots__ = ("_compiled", "_event", "_values")

    def __init__(self, compiled: CompiledTemplates, event: Mapping[str, Any], extra: Mapping[str, str]):
        self._compiled = compiled
        self._event = event
        self._values: dict[str, Any] = dict(extra)

    def _context(self, key: str) -> dict[str, Any]:
        compiled = self._compiled
        names = compiled.names.get(key)
        missing = [n for n in (BUILDERS if names is None else names) if n not in self._values]
        if missing:
            self._values.update(
                context(self._event, compiled.destination, compiled.provider, compiled.settings, missing)
            )
        return self._values

    def render(self, key: str) -> str:
        """The text template ``key`` rendered; :class:`TemplateFailure` when it cannot be."""
        try:
            return render_bounded(self._compiled.templates[key], self._context(key))
        except TemplateError as exc:
            raise TemplateFailure(f"template {key}: {_describe(exc)}") from None
        except Exception as exc:  # any error of a user's template is its failure, never the connector's
            raise TemplateFailure(f"template {key}: {type(exc).__name__}: {exc}") from None

    def render_json(self, key: str) -> Any:
        """The JSON template ``key`` rendered and parsed."""
        text = self.render(key)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise TemplateFailure(f"template {key}: the output is not JSON ({exc})") from None


def _describe(exc: TemplateError) -> str:
    line = getattr(exc, "lineno", None)
    where = f" (line {line})" if isinstance(line, int) else ""
    return f"{exc.message or type(exc).__name__}{where}"


def public_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a template may show: plain scalars and lists of them, never a secret, header or URL."""
    from cavra.secrets import Secret

    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in _SETTING_SKIP or isinstance(value, Secret) or key == "url":
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
            out[key] = list(value)
        elif isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in value.items()
        ):
            out[key] = dict(value)
    return out


def compile_templates(
    raw: object, *, provider: str, destination: str, where: str, settings: Mapping[str, Any]
) -> CompiledTemplates:
    """Compile a destination's ``templates`` mapping. ``where`` is ``FILE: connectors.NAME``; errors name
    it, the template key and the line."""
    keys = KEYS.get(provider)
    if keys is None:
        raise ConfigError(f"{where}.templates: {provider} destinations take no templates")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.templates: must be a mapping of template keys ({', '.join(keys)})")
    compiled: dict[str, Template] = {}
    names: dict[str, frozenset[str]] = {}
    for key, source in raw.items():
        if key not in keys:
            raise ConfigError(f"{where}.templates.{key}: unknown template key (known: {', '.join(keys)})")
        if keys[key] == "mapping":
            if not isinstance(source, Mapping):
                raise ConfigError(f"{where}.templates.{key}: must map field names to templates")
            for name, text in source.items():
                if not isinstance(name, str) or not name or name in ENVELOPE_KEYS:
                    raise ConfigError(
                        f"{where}.templates.{key}.{name}: not a field name the envelope can take "
                        f"(not one of {', '.join(sorted(ENVELOPE_KEYS))})"
                    )
                compiled[f"fields.{name}"], names[f"fields.{name}"] = _compile(
                    text, f"{where}.templates.{key}.{name}"
                )
            continue
        compiled[key], names[key] = _compile(source, f"{where}.templates.{key}")
    return CompiledTemplates(
        destination=destination,
        provider=provider,
        templates=compiled,
        settings=public_settings(settings),
        names=names,
    )


def _compile(source: object, where: str) -> tuple[Template, frozenset[str]]:
    """The template, compiled once from one parse, and the context names it reads."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{where}: must be a non-empty template string")
    try:
        tree = _ENV.parse(source)
        return _ENV.from_string(tree), frozenset(meta.find_undeclared_variables(tree))
    except TemplateSyntaxError as exc:
        raise ConfigError(f"{where}: line {exc.lineno}: {exc.message}") from None
    except TemplateError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None


# -- the shipped defaults ---------------------------------------------------------------------------------
def default_source(provider: str) -> str:
    """The default templates of ``provider`` as shipped (a YAML ``templates:`` block to copy)."""
    if provider not in KEYS:
        raise InputError(f"no templates for {provider!r}; providers with templates: {', '.join(KEYS)}")
    return resources.files("cavra.templates").joinpath("defaults", f"{provider}.yaml").read_text("utf-8")


def default_templates(provider: str) -> dict[str, Any]:
    """The shipped defaults as a ``templates`` mapping."""
    data = yaml.safe_load(default_source(provider))
    templates = data.get("templates") if isinstance(data, dict) else None
    return dict(templates or {})
