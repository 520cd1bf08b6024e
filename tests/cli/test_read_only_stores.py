"""Commands that only read a store never create one: a typo in a path is an error, not "0 records"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run_cavra

READS = [
    ("evidence", "verify"),
    ("release", "connector-delivery-history"),
    ("release", "connector-delivery-dashboard"),
    ("release", "endpoint-publication-history"),
    ("release", "endpoint-publication-dashboard"),
    ("deliveries", "jobs"),
]


@pytest.mark.parametrize("command", READS, ids=["-".join(c) for c in READS])
@pytest.mark.parametrize("option", ["--store", "--metadata-json"])
def test_a_read_refuses_a_store_that_does_not_exist(
    tmp_path: Path, command: tuple[str, str], option: str
) -> None:
    name = "typo.db" if option == "--store" else "typo.json"
    target = tmp_path / "no" / "such" / "dir" / name
    done = run_cavra(*command, option, str(target), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == (
        f"error: {option}: no evidence store at {target}; check the path "
        "(this command only reads a store, it never creates one)"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "no").exists(), "a read created the store's directory"


def test_the_default_store_is_named_when_missing(tmp_path: Path) -> None:
    done = run_cavra("evidence", "verify", cwd=tmp_path, env={"CAVRA_STORE_URL": ""})
    assert done.returncode == 2
    assert "error: the default store: no evidence store at .cavra/evidence/metadata.db" in done.stderr
    assert not (tmp_path / ".cavra").exists()


def test_an_existing_store_is_read(tmp_path: Path) -> None:
    store = tmp_path / "metadata.json"
    upgraded = run_cavra("db", "upgrade", "--metadata-json", str(store), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    done = run_cavra("evidence", "verify", "--metadata-json", str(store), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["count"] == 0


def test_a_write_creates_the_store_and_says_so(tmp_path: Path) -> None:
    store = tmp_path / "new" / "metadata.db"
    first = run_cavra("db", "upgrade", "--store", str(store), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"created new SQLite store at {store}" in first.stderr
    again = run_cavra("db", "upgrade", "--store", str(store), cwd=tmp_path)
    assert again.returncode == 0
    assert "created new" not in again.stderr
