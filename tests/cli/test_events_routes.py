"""``cavra events publish`` and ``cavra routes test`` against a real ``cavra emulate`` process whose
written config has routes: fan-out, --no-wait then ``cavra worker --once``, unrouted, --cases exit codes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from .conftest import read_env_file, run_cavra


def _setup(emulate_process: tuple[str, Path], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    _base, cfg_dir = emulate_process
    return cfg_dir / "connectors.json", read_env_file(cfg_dir / "emulators.env")


def rollback(n: str) -> dict[str, Any]:
    return {
        "event_type": "cavra.release.rollback_execution",
        "event_id": f"evt-cli-{n}-{uuid.uuid4().hex[:8]}",
        "execution_id": "rre_cli",
        "severity": "critical",
    }


def test_publish_a_jsonl_file_fans_out_and_waits(emulate_process: tuple[str, Path], tmp_path: Path) -> None:
    config, env = _setup(emulate_process, tmp_path)
    events = [
        rollback("a"),
        rollback("b"),
        {"event_type": "cavra.evidence_bundle", "session_id": "s", "max_severity": "low"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    store = f"sqlite:///{tmp_path / 'm.db'}"
    r = run_cavra(
        "events",
        "publish",
        str(path),
        "--config",
        str(config),
        "--store",
        store,
        "--json",
        "--retries",
        "0",
        env=env,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    answer = json.loads(r.stdout)
    assert answer["status"] == "completed" and answer["success"] is True and answer["job_count"] == 7
    first = answer["events"][0]
    assert {d["destination"]: d["route"] for d in first["destinations"]} == {
        "slack": "release-rollbacks",
        "jira": "release-rollbacks",
        "splunk": "release-audit",
    }
    assert all(d["record"]["route"] == d["route"] for d in first["destinations"])
    assert [d["destination"] for d in answer["events"][2]["destinations"]] == ["splunk"]
    table = run_cavra("events", "publish", str(path), "--config", str(config), "--store", store, env=env)
    assert table.returncode == 0, table.stderr
    assert "3 events: 3 routed, 0 unrouted, 7 jobs" in table.stdout
    assert "release-rollbacks" in table.stdout and "splunk" in table.stdout


def test_no_wait_leaves_the_jobs_to_the_worker(emulate_process: tuple[str, Path], tmp_path: Path) -> None:
    config, env = _setup(emulate_process, tmp_path)
    path = tmp_path / "one.json"
    path.write_text(json.dumps(rollback("w")))
    meta = str(tmp_path / "meta.json")
    r = run_cavra(
        "events",
        "publish",
        str(path),
        "--config",
        str(config),
        "--metadata-json",
        meta,
        "--no-wait",
        "--json",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["status"] == "accepted" and answer["job_count"] == 3
    assert all(d["state"] == "queued" for d in answer["events"][0]["destinations"])
    w = run_cavra("worker", "--once", "--config", str(config), "--metadata-json", meta, env=env)
    assert w.returncode == 0, w.stderr + w.stdout
    again = run_cavra(
        "events", "publish", str(path), "--config", str(config), "--metadata-json", meta, "--json", env=env
    )
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout)  # the same jobs, now delivered: nothing sent twice
    ids = [d["job_id"] for d in answer["events"][0]["destinations"]]
    assert [d["job_id"] for d in done["events"][0]["destinations"]] == ids
    assert all(d["state"] == "succeeded" for d in done["events"][0]["destinations"])


def test_an_unrouted_event_exits_1_and_is_recorded(emulate_process: tuple[str, Path], tmp_path: Path) -> None:
    config, env = _setup(emulate_process, tmp_path)
    data = json.loads(config.read_text())
    data["routes"] = [r for r in data["routes"] if not r.get("default")]
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps(data))
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"event_type": "acme.other", "event_id": "evt-cli-other"}))
    r = run_cavra(
        "events", "publish", str(path), "--config", str(strict), "--store", str(tmp_path / "m.db"), env=env
    )
    assert r.returncode == 1, r.stderr
    assert "unrouted (recorded): evt-cli-other" in r.stdout


def test_publish_bad_input_is_one_line_exit_2(emulate_process: tuple[str, Path], tmp_path: Path) -> None:
    config, env = _setup(emulate_process, tmp_path)
    path = tmp_path / "e.json"
    path.write_text(json.dumps([rollback("x"), {"no": "type"}]))
    r = run_cavra(
        "events", "publish", str(path), "--config", str(config), "--store", str(tmp_path / "m.db"), env=env
    )
    assert r.returncode == 2 and r.stderr.startswith("error:") and "index 1" in r.stderr
    data = json.loads(config.read_text())
    data["routes"][0]["matchers"] = ['release=~"(bad"']
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    one = tmp_path / "one.json"
    one.write_text(json.dumps(rollback("y")))
    r = run_cavra("routes", "test", str(one), "--config", str(bad), env=env)
    assert r.returncode == 2, r.stdout
    assert f"{bad}: routes[0].matchers[0]: invalid regex" in r.stderr and "Traceback" not in r.stderr


def test_routes_test_shows_routes_and_redacted_requests(
    emulate_process: tuple[str, Path], tmp_path: Path
) -> None:
    config, env = _setup(emulate_process, tmp_path)
    path = tmp_path / "one.json"
    path.write_text(json.dumps(rollback("t")))
    r = run_cavra("routes", "test", str(path), "--config", str(config), env=env)
    assert r.returncode == 0, r.stderr
    assert "release-rollbacks" in r.stdout and "release-audit" in r.stdout and "would be sent" in r.stdout
    for name, value in env.items():
        if not name.endswith("_URL"):
            assert value not in r.stdout, name
    assert "cavraDemoSlackHook" not in r.stdout
    j = run_cavra("routes", "test", str(path), "--config", str(config), "--json", env=env)
    answer = json.loads(j.stdout)
    assert answer["sent"] is False and [d["destination"] for d in answer["destinations"]] == [
        "slack",
        "jira",
        "splunk",
    ]


def test_routes_test_cases_exit_codes(emulate_process: tuple[str, Path], tmp_path: Path) -> None:
    config, env = _setup(emulate_process, tmp_path)
    good = tmp_path / "cases.yaml"
    good.write_text(
        "cases:\n"
        "  - name: rollback pages the release channel\n"
        "    event: {event_type: cavra.release.rollback_execution, execution_id: rre_1}\n"
        "    expect: [slack, jira, splunk]\n"
        "  - name: a quiet session goes to the SIEM only\n"
        "    event: {event_type: cavra.evidence_bundle, session_id: s, max_severity: low}\n"
        "    expect: [splunk]\n"
    )
    r = run_cavra("routes", "test", "--cases", str(good), "--config", str(config), env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "2 cases: 2 passed, 0 failed" in r.stdout
    bad = tmp_path / "cases.json"
    bad.write_text(
        json.dumps(
            [
                {
                    "event": {"event_type": "cavra.evidence_bundle", "max_severity": "critical"},
                    "expect": ["splunk"],
                }
            ]
        )
    )
    r = run_cavra("routes", "test", "--cases", str(bad), "--config", str(config), "--json", env=env)
    assert r.returncode == 1
    result = json.loads(r.stdout)["results"][0]
    assert result["passed"] is False and result["got"] == ["teams", "splunk", "webhook"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("cases:\n  - event: {event_type: x}\n    expect: slack\n")
    r = run_cavra("routes", "test", "--cases", str(broken), "--config", str(config), env=env)
    assert r.returncode == 2 and "cases[0].expect: must be a list" in r.stderr
    r = run_cavra("routes", "test", "--config", str(config), env=env)
    assert r.returncode == 2 and "give EVENT.json or --cases FILE" in r.stderr
