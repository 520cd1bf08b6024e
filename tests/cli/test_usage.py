"""Usage errors are one line; help shows metavars only where a value is taken, in the conventional form."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
import typer.main

from cavra.cli.main import app, main
from tests.cli.conftest import run_cavra


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["cavra", *args])
    monkeypatch.setenv("COLUMNS", "160")
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["release", "deliver-promotion-audit", "x.json", "--provider", "webhook", "--retries", "abc"],
            "error: --retries: expected a whole number, got 'abc'",
        ),
        (["worker", "--max-runs=1.5"], "error: --max-runs: expected a whole number, got '1.5'"),
        (
            ["release", "deliver-promotion-audit"],
            "error: missing argument FILE (see 'cavra release deliver-promotion-audit --help')",
        ),
        (
            ["release", "deliver-promotion-audit", "x.json", "--provder", "webhook"],
            "error: no such option --provder; did you mean --provider? "
            "(see 'cavra release deliver-promotion-audit --help')",
        ),
    ],
)
def test_usage_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert err.strip() == expected
    assert out == ""


def test_a_real_process_prints_one_line() -> None:
    done = run_cavra("integration", "deliver", "x.json", "--retries", "abc")
    assert done.returncode == 2
    assert done.stderr == "error: --retries: expected a whole number, got 'abc'\n"


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths.extend(_command_paths(sub, (*path, name)))
    return paths


def test_help_shows_no_type_placeholders(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _command_paths(typer.main.get_command(app))
    assert len(paths) > 20
    for path in paths:
        code, out, _ = run_main(monkeypatch, capsys, *path, "--help")
        assert code == 0, path
        for placeholder in ("<bool>", "<str>", "<int>", "<float>", "{"):
            assert placeholder not in out, (path, placeholder, out)
    _, out, _ = run_main(monkeypatch, capsys, "integration", "deliver", "--help")
    assert "Usage: cavra integration deliver [OPTIONS] EVENT.json" in out
    assert re.search(r"--retries\s+INTEGER", out)
