"""Secrets as a type.

A :class:`Secret` prints as ``**REDACTED**`` wherever it ends up (repr, str, f-strings, logs, tracebacks).
Only the transport and the redactor call :meth:`Secret.reveal`.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

from pydantic_core import core_schema

from cavra.errors import ConfigError

REDACTED = "**REDACTED**"


class Secret:
    """A secret value that never prints itself."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, *, source: str = "inline") -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        """The plain value: for the transport and the redactor only."""
        return self._value

    @property
    def source(self) -> str:
        """Where the value came from (``env:NAME``, ``file:PATH`` or ``inline``); safe to show."""
        return self._source

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling would copy the value into places we cannot see
        raise TypeError("Secret values cannot be pickled")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        def coerce(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if isinstance(value, str):
                return Secret(value)
            raise ValueError("must be a string")

        return core_schema.no_info_plain_validator_function(
            coerce, serialization=core_schema.plain_serializer_function_ser_schema(lambda v: REDACTED)
        )


def from_env(name: str, *, owner: str, environ: dict[str, str] | None = None) -> Secret:
    """Read a secret from an environment variable; a missing or empty one names owner and variable."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value is None:
        raise ConfigError(f"{owner}: environment variable {name} is not set")
    value = value.strip()
    if not value:
        raise ConfigError(f"{owner}: environment variable {name} is empty")
    return Secret(value, source=f"env:{name}")


def from_file(path: str, *, owner: str, base_dir: Path | None = None) -> Secret:
    """Read a secret from a mounted file (trailing newline stripped)."""
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    try:
        value = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{owner}: secret file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{owner}: secret file {path} cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{owner}: secret file {path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"{owner}: secret file {path} is empty")
    return Secret(value, source=f"file:{path}")
