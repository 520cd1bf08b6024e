"""Server log lines cannot be forged by what a client sends: in the text format, control characters are
escaped and a traceback's lines are indented, so every line starting in the first column is a record."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from cavra.api.logs import JsonFormatter, TextFormatter, printable
from cavra.redaction import Redactor

FORGED = "2026-12-07 12:00:00,000 INFO cavra.api.access POST /integrations 200"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter(Redactor(), "%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("cavra.api")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def test_a_path_cannot_forge_an_access_log_line(
    client: httpx.AsyncClient, text_log: io.StringIO
) -> None:
    await client.get("/x%0a" + FORGED.replace(" ", "%20") + "%0d%1b[2K%E2%80%A8")
    lines = text_log.getvalue().splitlines()
    access = [line for line in lines if " cavra.api.access " in line]
    assert len(access) == 1, lines
    assert all(RECORD_START.match(line) for line in lines), lines
    assert "GET /x\\x0a2026-12-07" in access[0] and "\\x0d\\x1b[2K\\u2028 404 " in access[0]
    assert "\x1b" not in text_log.getvalue()


def test_a_traceback_is_indented_and_an_exception_message_cannot_start_a_record(
    text_log: io.StringIO,
) -> None:
    try:
        raise ValueError("bad input\n" + FORGED)
    except ValueError:
        logging.getLogger("cavra.api").exception("failed on %s", "/a\nb", extra={"request_id": "r\n1"})
    lines = text_log.getvalue().splitlines()
    assert RECORD_START.match(lines[0]) and "failed on /a\\x0ab request_id=r\\x0a1" in lines[0]
    assert len(lines) > 3 and all(line.startswith("    ") for line in lines[1:]), lines
    assert any("    " + FORGED in line for line in lines[1:])


def test_json_lines_stay_one_line() -> None:
    record = logging.LogRecord("cavra.api.access", logging.INFO, __file__, 1, "%s", ("/x\n" + FORGED,), None)
    line = JsonFormatter(Redactor()).format(record)
    assert "\n" not in line and json.loads(line)["message"] == "/x\n" + FORGED


def test_printable_escapes_every_control_character() -> None:
    assert printable("a\tb\x00c\x7fd\x85e\u2028f\u202eg") == "a\\x09b\\x00c\\x7fd\\x85e\\u2028f\\u202eg"
    assert printable("plain text, ünïcödé ✓") == "plain text, ünïcödé ✓"
