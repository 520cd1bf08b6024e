"""Server logging: one JSON object per line (``--log-format json``) or readable lines (``text``).

Every formatted line passes the application's redactor, so a configured connector secret cannot reach the
log even through an exception message or a traceback. A text line cannot be forged by what a client sends
(a path such as ``/x%0a2024-05-01 … INFO …``): control characters in the message and the fields are
escaped (``\x0a``), and every line of a traceback after the first is indented, so a line that starts in
the first column is always the start of a record. JSON lines escape them by construction.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal

from cavra.redaction import Redactor

LogFormat = Literal["json", "text"]

#: ``extra`` fields copied into JSON lines (and appended to text lines)
_FIELDS = (
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "client",
    "provider",
    "event_id",
    "attempts",
)


#: C0 and C1 controls, DEL, the Unicode line and paragraph separators and the bidirectional overrides
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x0a``, ``\\u2028``): it stays on one line."""
    return _CONTROL.sub(_escape, text)


class _Scrubbing(logging.Formatter):
    def __init__(self, redactor: Redactor, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.scrub(self.render(record))

    def render(self, record: logging.LogRecord) -> str:
        return super().format(record)


class JsonFormatter(_Scrubbing):
    """``{"ts", "level", "logger", "message", ...extra fields, "exc_type", "traceback"}``."""

    def render(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(_Scrubbing):
    """``2024-05-01 12:00:00,000 INFO cavra.api.access POST /integrations 200 request_id=… duration_ms=…``."""

    def render(self, record: logging.LogRecord) -> str:
        record.message = printable(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        head = self.formatMessage(record)
        extras = [
            f"{n}={printable(str(record.__dict__[n]))}"
            for n in _FIELDS
            if n not in ("method", "path", "status") and record.__dict__.get(n) is not None
        ]
        if extras:
            head = f"{head} {' '.join(extras)}"
        tail: list[str] = []
        if record.exc_info and record.exc_info[0] is not None:
            tail.append(self.formatException(record.exc_info))
        if record.stack_info:
            tail.append(self.formatStack(record.stack_info))
        if not tail:
            return head
        # continuation lines are indented: only a record's first line starts in the first column
        lines = "\n".join(tail).splitlines()
        return head + "".join(f"\n    {printable(line)}" for line in lines)


def configure_logging(fmt: LogFormat, level: str, redactor: Redactor | None = None) -> None:
    """Route the project's, uvicorn's and the root logger's output through one formatter on stderr."""
    red = redactor or Redactor()
    formatter: logging.Formatter = (
        JsonFormatter(red)
        if fmt == "json"
        else TextFormatter(red, "%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    # our own access log replaces uvicorn's (which would print query strings)
    logging.getLogger("uvicorn.access").disabled = True


def set_redactor(redactor: Redactor) -> None:
    """Give every installed scrubbing formatter the redactor (once the connector secrets are known)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, _Scrubbing):
            handler.formatter.redactor = redactor
