"""Usage errors as one line: ``error: --retries: expected a whole number, got 'abc'``.

Click (through Typer) reports a bad option value in a box of several lines, with a validation library's
wording. Every other input error of the CLI is one ``error: …`` line with exit 2, so these are too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

try:  # Typer 0.2x+ carries its own copy of Click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older Typer on Click
    from click import exceptions as click_exc  # type: ignore[no-redef]

ClickException: Any = click_exc.ClickException
NoArgsIsHelp: Any = getattr(click_exc, "NoArgsIsHelpError", ())
Abort: Any = typer.Abort

#: wording of the value converters → plain words
_PHRASES = (
    ("Input should be a valid integer", "expected a whole number"),
    ("is not a valid integer", "expected a whole number"),
    ("Input should be a valid number", "expected a number"),
    ("is not a valid float", "expected a number"),
    ("Input should be a valid boolean", "expected true or false"),
)


def _is_option(param: Any) -> bool:
    return bool(getattr(param, "param_type_name", "") == "option")


def _name(param: Any) -> str:
    """``--retries`` for an option, ``FILE`` (its metavar) for an argument."""
    if _is_option(param):
        return str(param.opts[0])
    return str(getattr(param, "metavar", None) or getattr(param, "name", "") or "argument").upper()


def _given(argv: Sequence[str], opts: Sequence[str]) -> str | None:
    """The value given on the command line for one of ``opts`` (``--x V`` or ``--x=V``), if any."""
    for i, word in enumerate(argv):
        for opt in opts:
            if word == opt and i + 1 < len(argv):
                return argv[i + 1]
            if word.startswith(opt + "="):
                return word[len(opt) + 1 :]
    return None


def _plain(message: str) -> str:
    for phrase, plain in _PHRASES:
        if phrase in message:
            return plain
    return message.rstrip(".")


def _hint(exc: Any) -> str:
    ctx = getattr(exc, "ctx", None)
    return f" (see '{ctx.command_path} --help')" if ctx is not None else ""


def usage_message(exc: Any, argv: Sequence[str]) -> str:
    """One line for a usage error, naming the option or argument and what is wrong with it."""
    if isinstance(exc, click_exc.NoSuchOption):
        guess = f"; did you mean {' or '.join(exc.possibilities)}?" if exc.possibilities else ""
        return f"no such option {exc.option_name}{guess}{_hint(exc)}"
    if isinstance(exc, click_exc.MissingParameter) and exc.param is not None:
        kind = "option" if _is_option(exc.param) else "argument"
        return f"missing {kind} {_name(exc.param)}{_hint(exc)}"
    if isinstance(exc, click_exc.BadParameter) and exc.param is not None:
        opts = list(exc.param.opts) if _is_option(exc.param) else []
        name = _name(exc.param)
        given = _given(argv, opts) if opts else None
        got = f", got {given!r}" if given is not None else ""
        return f"{name}: {_plain(exc.message)}{got}"
    return f"{_plain(exc.format_message())}{_hint(exc)}"


_TYPE_METAVARS = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "Path": "PATH", "bool": "BOOLEAN"}


def _usage_name(param: Any) -> Any:
    def name() -> str:
        raw = str(param.metavar or param.name or "ARG").upper() if param.metavar is None else param.metavar
        return raw if param.required else f"[{raw}]"

    return name


def conventional_metavars(command: Any) -> Any:
    """Help in the conventional form: ``--retries INTEGER``, ``--json`` (a flag takes no value, so no
    ``<bool>``), usage ``FILE`` rather than ``{FILE}``. Typer 0.2x prints a type placeholder for every
    parameter; this walks the built command once and sets each parameter's metavar instead."""
    for param in getattr(command, "params", []):
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None:  # pragma: no cover - older Typer on Click formats these itself
            continue
        if getattr(param, "param_type_name", "") == "argument":
            if hasattr(param, "_usage_display_name"):
                param._usage_display_name = _usage_name(param)
            param.display_type_rich = lambda ctx: None  # the name column already shows EVENT.json
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None and not getattr(descriptor, "is_choice", False):
            bare = param.bare_type() if hasattr(param, "bare_type") else "str"
            param.metavar = _TYPE_METAVARS.get(bare, "VALUE")
    get_help_option = getattr(command, "get_help_option", None)
    if get_help_option is not None:

        def help_option(ctx: Any) -> Any:
            option = get_help_option(ctx)
            if option is not None:
                option.metavar = ""
            return option

        command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        conventional_metavars(sub)
    return command
