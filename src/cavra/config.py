"""The connectors file (JSON or YAML) → typed, resolved per-provider targets.

Secrets are resolved here from ``<key>_env`` (environment variable) or ``<key>_file`` (mounted file) into
:class:`~cavra.secrets.Secret` values. A problem with one connector (an unset variable, an invalid key)
stops only that connector: :class:`LoadedConfig` keeps the error beside the targets that did load.

Each entry of ``connectors`` is a *destination* (:mod:`cavra.destinations`): its key is the destination's
name, and its ``provider`` key (default: the name itself) says which connector it uses, so
``"slack-release": {"provider": "slack", ...}`` is a second Slack destination beside ``"slack": {...}``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cavra.connectors.base import Connector, ConnectorSettings
from cavra.connectors.registry import PROVIDERS, get_connector, unknown_provider_message
from cavra.destinations import PROVIDER_KEY, categories_of, split_destination
from cavra.errors import ConfigError, InputError, not_found
from cavra.redaction import MIN_SECRET_LENGTH, Redactor
from cavra.routing import RouteTable, compile_routes
from cavra.secretforms import USER_FIELDS, basic_pairs, url_path_secrets
from cavra.secrets import Secret, from_env, from_file
from cavra.transport import SendOptions

CONFIG_ENV = "CAVRA_CONNECTOR_CONFIG"


@dataclass(frozen=True)
class Target:
    """One configured destination, ready to deliver: connector, resolved settings, redactor, send options.

    ``provider`` is the connector's provider name (the type: ``slack``); ``name`` the destination's name
    (the key of its entry in the connectors file: ``slack-release``; empty: the provider's name)."""

    provider: str
    connector: Connector
    settings: ConnectorSettings
    redactor: Redactor
    options: SendOptions
    name: str = ""

    @property
    def destination(self) -> str:
        return self.name or self.provider

    @property
    def category(self) -> str:
        return self.connector.category

    def delivery_key(self, event_id: str) -> str:
        """A stable key for (event, target): the idempotency key providers receive."""
        url = self.settings.url.reveal() if self.settings.url is not None else ""
        # a destination named after its provider keeps the key it always had
        named = "" if self.destination == self.provider else f"\0{self.destination}"
        digest = hashlib.sha256(f"{event_id}\0{self.provider}\0{url}{named}".encode()).hexdigest()
        return f"dk_{digest[:32]}"


@dataclass
class LoadedConfig:
    """Destinations that loaded (``targets``, by name), and a one-line error for each that did not.

    ``provider_of`` names the provider of every destination in the file whose provider is known (loaded,
    failed or disabled); ``disabled`` holds the names of the destinations with ``enabled: false``."""

    source: str
    targets: dict[str, Target] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: knows the secrets of every loaded target in every wire form: for logs, API answers, console pages
    redactor: Redactor = field(default_factory=Redactor)
    #: the compiled ``routes`` list (``None``: the file has none); see :mod:`cavra.routing`
    routes: RouteTable | None = None
    provider_of: dict[str, str] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    #: every entry's name, in the file's order
    entries: list[str] = field(default_factory=list)

    @property
    def providers(self) -> list[str]:
        """Every destination name that loaded or failed to (historical name)."""
        return [*self.targets, *self.errors]

    @property
    def destinations(self) -> list[str]:
        """Every destination name in the file, in its order."""
        return list(self.entries) or self.providers

    def provider_type(self, name: str) -> str:
        """The provider of destination ``name`` (the name itself when it is unknown)."""
        return self.provider_of.get(name, name)

    def missing(self, name: str) -> ConfigError | InputError:
        """Why ``name`` has no target: disabled, not a configured provider (ConfigError), or neither a
        provider nor a destination of the file (InputError: the caller named something that is not)."""
        if name in self.disabled:
            return ConfigError(
                f"{self.source}: destination {name!r} is disabled (connectors.{name}.enabled is false); "
                "nothing is sent to it"
            )
        if name not in PROVIDERS:
            return InputError(
                f"{self.source}: {unknown_provider_message(name)}; nor is it a destination of this file "
                f"(its destinations: {', '.join(self.destinations) or 'none'})"
            )
        return ConfigError(
            f"{self.source}: provider {name!r} is not configured (connectors.{name} is missing)"
        )


def _secret_fields(model: type[ConnectorSettings]) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = typing.get_args(ann) if isinstance(ann, types.UnionType) or typing.get_origin(ann) else ()
        if ann is Secret or Secret in args:
            names.add(name)
    return names


def _secret_list_fields(model: type[ConnectorSettings]) -> set[str]:
    """Keys holding several secrets (``tuple[Secret, ...]``: e.g. a webhook's ``signing_secrets``)."""
    return {
        name
        for name, info in model.model_fields.items()
        if typing.get_origin(info.annotation) is tuple and typing.get_args(info.annotation)[:1] == (Secret,)
    }


def _resolve_secret(
    value: object, suffix: str, owner: str, env: dict[str, str], base_dir: Path | None
) -> Secret:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{owner}: must be a non-empty string")
    if suffix == "_env":
        return from_env(value.strip(), owner=owner, environ=env)
    return from_file(value.strip(), owner=owner, base_dir=base_dir)


def known_keys(model: type[ConnectorSettings]) -> list[str]:
    """Every key a connector's entry may hold: its settings, and ``<secret>_env`` / ``<secret>_file``."""
    keys = [PROVIDER_KEY, *model.model_fields]
    for name in _secret_fields(model):
        keys += [f"{name}_env", f"{name}_file"]
    return keys


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``; did you mean 'token_env'?`` for the nearest choice, or nothing when none is near."""
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def _format_validation(
    prefix: str, exc: ValidationError, model: type[ConnectorSettings] | None = None
) -> str:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            if model is not None and len(err["loc"]) == 1:
                msg += did_you_mean(str(err["loc"][0]), known_keys(model))
        problems.append(f"{prefix}.{loc}: {msg}" if loc else f"{prefix}: {msg}")
    return "; ".join(problems)


def _strip_owner(message: str, provider: str) -> str:
    """``splunk: token is required`` → ``token is required`` (the key path already names the provider)."""
    prefix = f"{provider}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _settings_values(
    provider: str,
    raw: Mapping[str, Any],
    path: str,
    model: type[ConnectorSettings],
    env: dict[str, str],
    base_dir: Path | None,
) -> dict[str, Any]:
    """The entry's keys, with ``<key>_env`` / ``<key>_file`` secrets resolved (lists for several secrets)."""
    secret_names = _secret_fields(model)
    secret_lists = _secret_list_fields(model)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}: keys must be strings")
        for suffix in ("_env", "_file"):
            if key.endswith(suffix) and key[: -len(suffix)] in secret_names:
                base = key[: -len(suffix)]
                if base in values:
                    raise ConfigError(f"{path}: {base} is given more than once")
                owner = f"connector {provider} ({path}.{key})"
                if base in secret_lists:  # several secrets: a list of variables (or files)
                    if not isinstance(value, list) or not value:
                        raise ConfigError(f"{path}.{key}: must be a non-empty list of names")
                    values[base] = tuple(
                        _resolve_secret(v, suffix, f"connector {provider} ({path}.{key}[{i}])", env, base_dir)
                        for i, v in enumerate(value)
                    )
                    break
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"{path}.{key}: must be a non-empty string")
                values[base] = _resolve_secret(value, suffix, owner, env, base_dir)
                break
        else:
            if key in values:
                raise ConfigError(f"{path}: {key} is given more than once")
            if key in secret_lists and isinstance(value, list):
                value = tuple(Secret(v) if isinstance(v, str) else v for v in value)
            elif key in secret_names and value is not None and not isinstance(value, (str, Secret)):
                raise ConfigError(f"{path}.{key}: must be a string")
            values[key] = value
    return values


def target_from_mapping(
    provider: str,
    raw: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    *,
    where: str | None = None,
    name: str | None = None,
    source: str | None = None,
) -> Target:
    """Build one target. ``where`` names the key path in messages (default ``connectors.<name>``);
    ``name`` is the destination's name (default: the provider's); ``source`` the file, named by template
    errors."""
    destination = name or provider
    path = where or f"connectors.{destination}"
    if provider not in PROVIDERS:
        raise ConfigError(f"{path}: {unknown_provider_message(provider)}")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: must be a mapping of settings")
    connector = get_connector(provider)
    model = connector.settings_model
    secret_names = _secret_fields(model)
    env = dict(os.environ) if environ is None else dict(environ)
    raw_templates = raw.get("templates")
    if "templates" in raw:
        raw = {k: v for k, v in raw.items() if k != "templates"}
    values = _settings_values(provider, raw, path, model, env, base_dir)
    for name in secret_names:
        secret = values.get(name)
        if isinstance(secret, str):
            secret = Secret(secret)
            values[name] = secret
        for one in secret if isinstance(secret, tuple) else (secret,):
            if isinstance(one, Secret) and len(one.reveal()) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"{path}.{name}: too short to be a credential (at least {MIN_SECRET_LENGTH} characters)"
                )
    try:
        settings = model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc, model)) from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {_strip_owner(str(exc), provider)}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {_strip_owner(str(exc), provider)}") from None
    if raw_templates is not None:
        settings = with_templates(
            settings, raw_templates, provider, destination, f"{source}: {path}" if source else path
        )
    redactor = Redactor(
        wire_secrets(settings, connector),
        secret_url_path=connector.secret_url_path,
        extra_credential_headers=settings.extra_credential_headers(),
    )
    options = SendOptions(
        timeout=settings.timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        allow_http=settings.allow_http,
        allow_link_local=settings.allow_link_local,
        verify_tls=settings.verify_tls,
        ca_bundle=settings.ca_bundle,
        proxy=settings.proxy_url,
        trust_env=settings.trust_env,
    )
    return Target(
        provider=provider,
        connector=connector,
        settings=settings,
        redactor=redactor,
        options=options,
        name=destination,
    )


def with_templates(
    settings: ConnectorSettings, raw: object, provider: str, destination: str, where: str
) -> ConnectorSettings:
    """``settings`` holding the destination's compiled ``templates``, each checked on a sample event of
    every kind: a template that cannot render one, or renders a message the provider would refuse, is a
    ConfigError naming ``where`` (the file and the entry), the template key and the line."""
    from cavra.connectors.messages import rendered
    from cavra.templates import compile_templates
    from cavra.templates.samples import SAMPLES

    model = type(settings)
    hidden = {*USER_FIELDS, *_secret_fields(model), *_secret_list_fields(model)}
    plain = {n: getattr(settings, n) for n in model.model_fields if n not in hidden}
    compiled = compile_templates(raw, provider=provider, destination=destination, where=where, settings=plain)
    settings = settings.model_copy(update={"templates": compiled})
    for sample in SAMPLES:
        shown = rendered(provider, sample, settings, "dk_sample")
        if shown is not None and "template_warning" in shown:
            problem = shown["template_warning"].split("; the default rendering was sent")[0]
            problem = problem.split("; the envelope was sent")[0]
            raise ConfigError(f"{where}.templates: with a sample {sample['event_type']} event: {problem}")
    return settings


def wire_secrets(settings: ConnectorSettings, connector: Connector) -> list[Secret | str]:
    """Every secret of a target as the redactor must learn it: the settings' secrets (each is expanded into
    its wire forms and secret parts by the redactor), the Basic pairs ``user:secret`` its user names make,
    and, when the URL path is the credential (Slack, Teams, generic webhook), that path whole."""
    secrets: list[Secret | str] = list(settings.secrets())
    plain = [s.reveal() for s in settings.secrets()]
    users = [v for v in (getattr(settings, f, None) for f in USER_FIELDS) if isinstance(v, str)]
    secrets += basic_pairs(users, plain)
    if connector.secret_url_path and settings.url is not None:
        secrets += url_path_secrets(settings.url.reveal())
    return secrets


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) if source.endswith((".yaml", ".yml")) else json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping with a 'connectors' key")
    connectors = data.get("connectors")
    if not isinstance(connectors, dict):
        raise ConfigError(f"{source}: key 'connectors' is required and must map provider names to settings")
    unknown = set(data) - {"connectors", "version", "defaults", "routes"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}")
    return data


def resolve_config_path(path: str | None, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    chosen = path or env.get(CONFIG_ENV)
    if not chosen:
        raise ConfigError(f"no connector config: pass --config FILE or set {CONFIG_ENV}")
    return chosen


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load the connectors file; per-provider problems are kept in ``errors``, file problems raise."""
    source = resolve_config_path(path, environ)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(not_found(source, "config file")) from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, expected a JSON or YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read ({exc.strerror})") from None
    return config_from_data(parse_config_text(text, source), source, environ, base_dir=Path(source).parent)


def config_from_data(
    data: Mapping[str, Any],
    source: str,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> LoadedConfig:
    loaded = LoadedConfig(source=source)
    if data.get("routes") is not None:  # a bad route refuses the whole file (errors name the route)
        names = [str(name) for name in data["connectors"]]
        loaded.routes = compile_routes(
            data["routes"], source=source, destinations=names, categories=categories_of(data["connectors"])
        )
    for key, raw in data["connectors"].items():
        name = str(key)
        # the entry's name and provider are checked for the whole file: a route may name it
        provider, settings = split_destination(source, name, raw)
        loaded.entries.append(name)
        if provider in PROVIDERS:
            loaded.provider_of[name] = provider
        try:
            target = target_from_mapping(provider, settings, environ, base_dir, name=name, source=source)
        except ConfigError as exc:
            said = str(exc)  # shown when this destination is asked for, naming the file
            loaded.errors[name] = said if said.startswith(f"{source}: ") else f"{source}: {said}"
            continue
        if target.settings.enabled:
            loaded.targets[name] = target
        else:
            loaded.disabled.add(name)
    return _share_secrets(loaded)


def _share_secrets(loaded: LoadedConfig) -> LoadedConfig:
    """One configuration-wide redactor that knows the secrets of *all* targets; every target's redactor is
    that one with the target's own URL and header rules.

    A provider may echo anything back, including another connector's credential (a webhook receiver that
    reflects a request it got elsewhere); evidence about one target must not carry another's secret. The
    forms are built once for the whole configuration, not once per target.
    """
    everything = [s for t in loaded.targets.values() for s in wire_secrets(t.settings, t.connector)]
    loaded.redactor = Redactor(everything)
    for name, target in loaded.targets.items():
        redactor = loaded.redactor.configured(
            secret_url_path=target.connector.secret_url_path,
            extra_credential_headers=target.settings.extra_credential_headers(),
        )
        loaded.targets[name] = replace(target, redactor=redactor)
    return loaded
