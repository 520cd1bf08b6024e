"""``cavra integration deliver``, run as a real process against a real ``cavra emulate`` process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from cavra.emulators.framework import Fault  # noqa: F401  (documents the fault API used over HTTP below)
from tests.cli.conftest import read_env_file, run_cavra

SCHEMA = json.loads((Path(__file__).parents[2] / "src/cavra/schemas/connector-delivery.v1.json").read_text())

EVENT_PATH = ".cavra/evidence/latest/siem-event.json"
SIEM_EVENT = {
    "event_type": "cavra.evidence_bundle",
    "session_id": "demo-session",
    "decision_count": 7,
    "blocked_count": 4,
    "approval_required_count": 1,
    "max_severity": "high",
}


@pytest.fixture
def workdir(tmp_path: Path, emulate_process: tuple[str, Path]) -> tuple[Path, dict[str, str]]:
    """A project directory laid out as the seed's commands expect, and the emulators' environment."""
    _base_url, cfg_dir = emulate_process
    (tmp_path / ".cavra/evidence/latest").mkdir(parents=True)
    (tmp_path / ".cavra/evidence/latest/siem-event.json").write_text(json.dumps(SIEM_EVENT))
    shutil.copy(cfg_dir / "connectors.json", tmp_path / ".cavra/connectors.json")
    return tmp_path, read_env_file(cfg_dir / "emulators.env")


def _fault(base_url: str, **fault: object) -> None:
    import urllib.request

    req = urllib.request.Request(
        base_url + "/_emulator/faults",
        data=json.dumps(fault).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=5).read()


def test_seed_command_works_as_written(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    splunk_only = {"SPLUNK_HEC_URL": env["SPLUNK_HEC_URL"], "SPLUNK_HEC_TOKEN": env["SPLUNK_HEC_TOKEN"]}
    result = run_cavra(
        "integration", "deliver", ".cavra/evidence/latest/siem-event.json",
        "--config", ".cavra/connectors.json",
        "--provider", "splunk",
        "--output", ".cavra/integrations/deliveries",
        cwd=cwd, env=splunk_only,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    files = list((cwd / ".cavra/integrations/deliveries").glob("*-connector-delivery.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    jsonschema.validate(record, SCHEMA)
    assert record["success"] is True
    assert record["deliveries"][0]["provider"] == "splunk"
    assert record["deliveries"][0]["status_code"] == 200
    assert record["deliveries"][0]["request"]["headers"]["Authorization"] == "Splunk **REDACTED**"
    for text in (files[0].read_text(), result.stdout, result.stderr):
        assert env["SPLUNK_HEC_TOKEN"] not in text
    assert "splunk" in result.stdout and "delivered" in result.stdout

    # a second delivery of the same event never overwrites the first one's evidence
    again = run_cavra(
        "integration", "deliver", EVENT_PATH, "--config", ".cavra/connectors.json",
        "--provider", "splunk", "--output", ".cavra/integrations/deliveries", cwd=cwd, env=splunk_only,
    )  # fmt: skip
    assert again.returncode == 0
    assert len(list((cwd / ".cavra/integrations/deliveries").glob("*-connector-delivery*.json"))) == 2


def test_all_providers_json_output(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    result = run_cavra(
        "integration", "deliver", EVENT_PATH, "--config", ".cavra/connectors.json",
        "--provider", "splunk,datadog,webhook,slack,teams,sentinel", "--json", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(result.stdout)
    jsonschema.validate(record, SCHEMA)
    assert sorted(d["provider"] for d in record["deliveries"]) == [
        "datadog", "sentinel", "slack", "splunk", "teams", "webhook",
    ]  # fmt: skip
    for name, value in env.items():
        if name.endswith("_URL") and "SLACK" not in name and "TEAMS" not in name:
            continue
        assert value not in result.stdout, name


def test_failed_delivery_exits_1_with_a_record(
    workdir: tuple[Path, dict[str, str]], emulate_process: tuple[str, Path]
) -> None:
    cwd, env = workdir
    base_url, _ = emulate_process
    _fault(base_url, provider="splunk", status=403, count=1, body='{"text":"Invalid token","code":4}')
    result = run_cavra(
        "integration", "deliver", EVENT_PATH, "--config", ".cavra/connectors.json",
        "--provider", "splunk", "--retries", "3", "--json", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    record = json.loads(result.stdout)
    assert record["success"] is False
    assert record["deliveries"][0]["attempt_count"] == 1
    assert record["deliveries"][0]["status_code"] == 403


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.json"], "missing.json: file not found"),
        ("not json", ["event.json"], "event.json: not valid JSON"),
        ("[1, 2]", ["event.json"], "event.json: must be a JSON object"),
        ('{"session_id": "x"}', ["event.json"], "event_type is required"),
        (
            json.dumps(SIEM_EVENT),
            ["event.json", "--provider", "no-such-provider"],
            "unknown provider 'no-such-provider'",
        ),
        (json.dumps(SIEM_EVENT), ["event.json", "--retries", "99"], "--retries: must be between 0 and 10"),
        (json.dumps(SIEM_EVENT), ["event.json", "--config", "nope.json"], "nope.json: config file not found"),
        (json.dumps(SIEM_EVENT), ["event.json", "--provider", "jira"], "provider 'jira' is not configured"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    workdir: tuple[Path, dict[str, str]], setup: str | None, args: list[str], message: str
) -> None:
    cwd, env = workdir
    if setup is not None:
        (cwd / "event.json").write_text(setup)
    if "--config" not in args:
        args = [*args, "--config", str(cwd / ".cavra/connectors.json")]
    connectors = json.loads((cwd / ".cavra/connectors.json").read_text())
    connectors["connectors"].pop("jira", None)
    connectors.pop("routes", None)  # the written routes name jira: the file would be refused for them
    (cwd / ".cavra/connectors.json").write_text(json.dumps(connectors))
    result = run_cavra("integration", "deliver", *args, cwd=cwd, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_unset_variable_names_it(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    partial = {k: v for k, v in env.items() if k != "SPLUNK_HEC_TOKEN"}
    result = run_cavra(
        "integration", "deliver", EVENT_PATH, "--config", ".cavra/connectors.json",
        "--provider", "splunk", cwd=cwd, env={**partial, "SPLUNK_HEC_TOKEN": ""},
    )  # fmt: skip
    assert result.returncode == 2
    assert "SPLUNK_HEC_TOKEN" in result.stderr and "splunk" in result.stderr


# --- a file of many events (JSON array or JSON Lines) ----------------------------------------------------


def _requests(base_url: str, provider: str) -> list[dict[str, object]]:
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/_emulator/requests?provider={provider}", timeout=5) as resp:
        got: list[dict[str, object]] = json.loads(resp.read())
    return got


def _envelopes(body: str) -> list[dict[str, object]]:
    """The JSON values of an HEC body (envelopes one after another)."""
    decoder, out, pos = json.JSONDecoder(), [], 0
    while pos < len(body):
        if body[pos].isspace():
            pos += 1
            continue
        value, pos = decoder.raw_decode(body, pos)
        out.append(value)
    return out


def _events(n: int, prefix: str) -> list[dict[str, object]]:
    return [{**SIEM_EVENT, "event_id": f"{prefix}-{i:04d}", "decision_count": i} for i in range(n)]


def _write_jsonl(path: Path, events: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def _assert_no_secrets(env: dict[str, str], *texts: str) -> None:
    for name, value in env.items():
        if name.endswith("_URL") and "SLACK" not in name and "TEAMS" not in name:
            continue
        for text in texts:
            assert value not in text, name


def test_jsonl_file_to_splunk_is_batched_and_yields_one_record_per_event(
    workdir: tuple[Path, dict[str, str]], emulate_process: tuple[str, Path]
) -> None:
    cwd, env = workdir
    base_url, _ = emulate_process
    events = _events(250, "hec")
    _write_jsonl(cwd / "events.jsonl", events)
    before = len(_requests(base_url, "splunk"))
    result = run_cavra(
        "integration", "deliver", "events.jsonl", "--config", ".cavra/connectors.json",
        "--provider", "splunk", "--json", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"schema_version", "events", "success", "providers", "records"}
    assert out["schema_version"] == "cavra.connector.delivery.batch.v1"
    assert out["events"] == 250 and out["success"] is True
    assert out["providers"] == {"splunk": {"delivered": 250, "failed": 0, "pending": 0}}
    assert [r["event_id"] for r in out["records"]] == [e["event_id"] for e in events]  # in file order
    for record in out["records"]:
        jsonschema.validate(record, SCHEMA)
        assert record["success"] is True
        assert [d["provider"] for d in record["deliveries"]] == ["splunk"]
        assert record["deliveries"][0]["request"]["headers"]["Authorization"] == "Splunk **REDACTED**"
    sent = [r for r in _requests(base_url, "splunk")[before:] if str(r["path"]).endswith("/collector/event")]
    assert len(sent) == 3  # batched: 100 + 100 + 50, not 250 requests
    ids = [env_["event"]["event_id"] for r in sent for env_ in _envelopes(str(r["body"]))]  # type: ignore[index]
    assert sorted(ids) == sorted(e["event_id"] for e in events)
    _assert_no_secrets(env, result.stdout, result.stderr)


def test_array_file_to_webhook_delivers_each_and_writes_one_evidence_file_per_event(
    workdir: tuple[Path, dict[str, str]], emulate_process: tuple[str, Path]
) -> None:
    cwd, env = workdir
    base_url, _ = emulate_process
    events = _events(12, "arr")
    (cwd / "events.json").write_text(json.dumps(events, indent=2))
    out_dir = cwd / ".cavra/integrations/batch"
    before = len(_requests(base_url, "webhook"))
    result = run_cavra(
        "integration", "deliver", "events.json", "--config", ".cavra/connectors.json",
        "--provider", "webhook", "--output", str(out_dir), cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 events: 12 delivered everywhere, 0 not" in result.stdout
    assert "webhook" in result.stdout and "evidence: 12 files" in result.stdout
    sent = _requests(base_url, "webhook")[before:]
    assert len(sent) == 12
    assert len({r["headers"]["webhook-id"] for r in sent}) == 12  # type: ignore[index]
    files = sorted(out_dir.glob("*-connector-delivery.json"))
    assert [f.name for f in files] == [f"{e['event_id']}-connector-delivery.json" for e in events]
    for f in files:
        record = json.loads(f.read_text())
        jsonschema.validate(record, SCHEMA)
        assert record["success"] is True and record["deliveries"][0]["provider"] == "webhook"
    _assert_no_secrets(env, result.stdout, result.stderr, *(f.read_text() for f in files))

    # delivering the same file again never overwrites the first run's evidence
    again = run_cavra(
        "integration", "deliver", "events.json", "--config", ".cavra/connectors.json",
        "--provider", "webhook", "--output", str(out_dir), cwd=cwd, env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list(out_dir.glob("*-connector-delivery*.json"))) == 24


def test_several_objects_one_per_line_in_a_json_file_are_a_batch(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = workdir
    _write_jsonl(cwd / "events.json", _events(3, "lines"))
    result = run_cavra(
        "integration", "deliver", "events.json", "--config", ".cavra/connectors.json",
        "--provider", "webhook,datadog", "--json", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["events"] == 3
    assert out["providers"] == {
        "webhook": {"delivered": 3, "failed": 0, "pending": 0},
        "datadog": {"delivered": 3, "failed": 0, "pending": 0},
    }
    assert all(len(r["deliveries"]) == 2 for r in out["records"])


def _bad_line_7(path: Path, line: str) -> None:
    rows = [json.dumps(e) for e in _events(10, "bad")]
    rows[6] = line
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        (
            "events.jsonl",
            lambda p: _bad_line_7(p, '{"event_id": "x", "event_type": '),
            "events.jsonl: line 7: not valid JSON",
        ),
        (
            "events.ndjson",
            lambda p: _bad_line_7(p, '{"event_id": "x"}'),
            "events.ndjson: line 7: field event_type is required",
        ),
        (
            "events.txt",
            lambda p: _bad_line_7(p, "[1]"),
            "events.txt: line 7: must be a JSON object, got list",
        ),
        (
            "events.jsonl",
            lambda p: _bad_line_7(p, json.dumps({**SIEM_EVENT, "event_id": "bad-0002"})),
            "events.jsonl: line 7: duplicate event_id 'bad-0002' (first at line 3)",
        ),
        (
            "events.json",
            lambda p: p.write_text(json.dumps([*_events(4, "idx"), {"event_type": ""}])),
            "events.json: index 4: field event_type is required",
        ),
        (
            "events.json",
            lambda p: p.write_text(json.dumps([SIEM_EVENT, SIEM_EVENT])),
            "events.json: index 1: duplicate event_id",
        ),
        ("events.json", lambda p: p.write_text("[]"), "events.json: holds no events"),
        ("events.jsonl", lambda p: p.write_text("\n"), "events.jsonl: holds no events"),
    ],
)
def test_bad_event_file_exits_2_naming_the_line_and_sends_nothing(
    workdir: tuple[Path, dict[str, str]],
    emulate_process: tuple[str, Path],
    name: str,
    write: object,
    message: str,
) -> None:
    cwd, env = workdir
    base_url, _ = emulate_process
    assert callable(write)
    write(cwd / name)
    before = {p: len(_requests(base_url, p)) for p in ("splunk", "webhook")}
    result = run_cavra(
        "integration", "deliver", name, "--config", ".cavra/connectors.json",
        "--provider", "splunk,webhook", "--output", "out", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert {p: len(_requests(base_url, p)) for p in ("splunk", "webhook")} == before
    assert not (cwd / "out").exists()


def test_a_failing_provider_exits_1_and_the_summary_names_it(
    workdir: tuple[Path, dict[str, str]], emulate_process: tuple[str, Path]
) -> None:
    cwd, env = workdir
    base_url, _ = emulate_process
    _write_jsonl(cwd / "events.jsonl", _events(150, "fail"))
    # the first HEC batch (100 events) is refused; the webhook delivers everything
    _fault(base_url, provider="splunk", status=403, count=1, body='{"text":"Invalid token","code":4}')
    result = run_cavra(
        "integration", "deliver", "events.jsonl", "--config", ".cavra/connectors.json",
        "--provider", "splunk,webhook", "--output", "out", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "150 events: 50 delivered everywhere, 100 not" in result.stdout
    assert "Invalid token" in result.stdout
    files = list((cwd / "out").glob("*-connector-delivery.json"))
    assert len(files) == 150
    records = [json.loads(f.read_text()) for f in files]
    assert sum(1 for r in records if not r["success"]) == 100
    failed = [d for r in records for d in r["deliveries"] if d["provider"] == "splunk" and not d["success"]]
    assert len(failed) == 100 and all(d["status_code"] == 403 for d in failed)
    assert all(d["success"] for r in records for d in r["deliveries"] if d["provider"] == "webhook")
    _assert_no_secrets(env, result.stdout, result.stderr, *(f.read_text() for f in files))


def test_deliver_events_reports_progress_and_keeps_order(
    workdir: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from cavra import service
    from cavra.config import load_config

    cwd, env = workdir
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config(str(cwd / ".cavra/connectors.json"))
    events = _events(40, "svc")
    seen: list[tuple[int, dict[str, int]]] = []
    records = asyncio.run(
        service.deliver_events(
            events,
            config,
            ["datadog", "webhook"],
            retries=0,
            on_progress=lambda p: seen.append((p.done, dict(p.per_provider))),
        )
    )
    assert [r["event_id"] for r in records] == [e["event_id"] for e in events]
    assert all(r["success"] and len(r["deliveries"]) == 2 for r in records)
    assert seen[0] == (0, {"datadog": 0, "webhook": 0})
    assert seen[-1] == (40, {"datadog": 40, "webhook": 40})
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(service.InputError, match="duplicate event_id 'svc-0000'"):
        asyncio.run(service.deliver_events([events[0], events[0]], config, ["webhook"]))


def test_evidence_file_names_stay_inside_the_output_directory(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    events = [{**SIEM_EVENT, "event_id": "../../escape"}, {**SIEM_EVENT, "event_id": "a/b c"}]
    (cwd / "events.json").write_text(json.dumps(events))
    result = run_cavra(
        "integration", "deliver", "events.json", "--config", ".cavra/connectors.json",
        "--provider", "webhook", "--output", "out/evidence", cwd=cwd, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(p.name for p in (cwd / "out/evidence").iterdir())
    assert names == ["_.._escape-connector-delivery.json", "a_b_c-connector-delivery.json"]
    assert not list(cwd.glob("escape*")) and not list(cwd.parent.glob("escape*"))
    records = [json.loads((cwd / "out/evidence" / n).read_text()) for n in names]
    assert sorted(r["event_id"] for r in records) == ["../../escape", "a/b c"]  # the record keeps the id


def test_a_file_to_slack_is_paced_so_the_hook_never_answers_429() -> None:
    """Slack takes about 1 message per second per hook: a file of events is sent within that by default."""
    import asyncio

    from cavra import service
    from cavra.config import config_from_data
    from cavra.emulators.server import EmulatorServer, demo_environment

    async def run() -> tuple[list[dict[str, object]], list[int | None]]:
        async with EmulatorServer(providers=["slack"]) as srv:
            data, env = demo_environment(srv.base_url, srv.settings)
            config = config_from_data({"connectors": {"slack": data["connectors"]["slack"]}}, "emu", env)
            records = await service.deliver_events(_events(7, "paced"), config, ["slack"], retries=0)
            return records, [r.status for r in srv.hub.received("slack")]

    records, statuses = asyncio.run(run())
    assert all(r["success"] for r in records)
    assert statuses == [200] * 7
