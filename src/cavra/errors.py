"""Errors that faces turn into clear messages (CLI: one line and exit 2; API: a 4xx JSON answer)."""

from __future__ import annotations


class CavraError(Exception):
    """Base class of every error the project raises on purpose. Its message is safe to show."""


class ConfigError(CavraError):
    """The connector configuration is invalid; the message names the file and the key path."""


class InputError(CavraError):
    """An input file or request body is invalid; the message names the file or field."""


class NotFoundError(CavraError):
    """A record id is unknown."""


class ConflictError(CavraError):
    """The request conflicts with the current state (for example an inactive integration)."""


class StoreError(CavraError):
    """The evidence store cannot be opened or written."""


class UnstorableError(InputError):
    """The store refuses a value for a reason that will not go away (a NUL character PostgreSQL cannot keep,
    text that is not valid Unicode, a value too large): writing the same value again fails again. Faces
    answer it as bad input; a worker ends the job instead of running it again (see docs/operations.md).
    ``reason`` is what the store said, without where the store is."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def not_found(path: object, what: str = "file") -> str:
    """``PATH: file not found``, with the way to create it when it is one of the seed's ``.cavra/`` paths."""
    text = str(path)
    hint = ""
    if text.replace("\\", "/").lstrip("./").startswith("cavra/") or "/.cavra/" in text:
        hint = " (run `cavra init` to lay out the seed's .cavra/ files)"
    return f"{text}: {what} not found{hint}"
