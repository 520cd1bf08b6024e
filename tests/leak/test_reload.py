"""After ``POST /connectors/reload``, the server's log lines scrub the secrets of the reloaded config too
(the log formatters were given the redactor of the first load and kept it)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from cavra.api.app import create_app
from cavra.api.logs import TextFormatter
from cavra.api.settings import ApiSettings
from tests.api.conftest import running

FIRST = "canary-first-token-0b1e4a6c"
SECOND = "canary-reloaded-token-7d3f52a9"


def _write(path: Path, token: str) -> None:
    entry = {"url": "https://splunk.example.test/services/collector", "token": token}
    path.write_text(json.dumps({"connectors": {"splunk": entry}}), encoding="utf-8")


async def test_a_reload_teaches_the_log_formatters_the_new_secrets(tmp_path: Path) -> None:
    config = tmp_path / "connectors.json"
    _write(config, FIRST)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    log = logging.getLogger("cavra.test")
    try:
        settings = ApiSettings(config_path=str(config), store_url=str(tmp_path / "m.db"), environ={})
        app = create_app(settings)
        async with running(app) as c:
            handler.setFormatter(TextFormatter(app.state.runtime.redactor, "%(message)s"))
            log.warning("first %s", FIRST)
            _write(config, SECOND)
            resp = await c.post("/connectors/reload", json={})
            assert resp.status_code == 200, resp.text
            log.warning("second %s", SECOND)
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    assert "first **REDACTED**" in text and "second **REDACTED**" in text, text
    assert FIRST not in text and SECOND not in text
