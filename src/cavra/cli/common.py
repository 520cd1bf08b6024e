"""What every command shares: one-line errors, exit codes, JSON output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from cavra.errors import CavraError

#: stdout; when it is not a terminal (a pipe, a file) nothing is wrapped or cut at 80 columns: tables
#: print as tab-separated rows (see cli/tables.py) and long lines stay whole for grep and cut
console = Console() if sys.stdout.isatty() else Console(width=100_000)
err_console = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

T = TypeVar("T")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Turn project errors into one line on stderr and exit 2; never a traceback."""
    try:
        yield
    except CavraError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)


def run(fn: Callable[[], T]) -> T:
    with handled():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@contextmanager
def delivery_status(text: str) -> Iterator[None]:
    """A spinner on stderr that also shows each retry as it happens (attempt, answer, wait), from the
    engine's ``cavra.delivery.progress`` log, so a long retry schedule is not a silent spinner."""
    progress = logging.getLogger("cavra.delivery.progress")
    with err_console.status(text, spinner="dots") as status:

        class _Show(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                status.update(f"{text}  {record.getMessage()}")

        handler = _Show(level=logging.INFO)
        level = progress.level
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        try:
            yield
        finally:
            progress.removeHandler(handler)
            progress.setLevel(level)
