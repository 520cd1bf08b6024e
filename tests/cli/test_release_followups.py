"""Say what happened: a repeated delivery sent nothing; a failed one left a job queued for a retry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cavra.cli.main import app
from tests.cli.release_helpers import METADATA, PROMOTION, ThreadedEmulators, make_project


@pytest.fixture(scope="module")
def emulators() -> Iterator[ThreadedEmulators]:
    emu = ThreadedEmulators(["webhook"]).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def project(tmp_path: Path, emulators: ThreadedEmulators, monkeypatch: pytest.MonkeyPatch) -> Path:
    emulators.reset()
    env = make_project(tmp_path, emulators)
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CAVRA_STORE_URL", raising=False)
    return tmp_path


def deliver(*extra: str) -> Any:
    args = ["release", "deliver-promotion-audit", PROMOTION, "--config", ".cavra/connectors.json"]
    args += ["--provider", "webhook", "--metadata-json", METADATA, *extra]
    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_a_repeated_delivery_says_nothing_was_sent(project: Path, emulators: ThreadedEmulators) -> None:
    first = deliver("--retries", "0")
    assert first.exit_code == 0, first.output
    assert "already delivered" not in first.stdout
    again = deliver("--retries", "0")
    assert again.exit_code == 0, again.output
    assert "webhook: already delivered at " in again.stdout
    assert "nothing sent" in again.stdout
    assert len(emulators.received("webhook")) == 1


def test_a_failed_delivery_says_it_will_be_retried(project: Path, emulators: ThreadedEmulators) -> None:
    emulators.fault("webhook", status=503, count=1)
    done = deliver("--retries", "0")
    assert done.exit_code == 1, done.output
    assert "gave up after 1 attempt: HTTP 503" in done.stdout
    assert "webhook: the job stays queued and will be retried at " in done.stdout
    assert "cavra worker --store" in done.stdout
