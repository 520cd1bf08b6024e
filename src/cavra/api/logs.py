"""Server logging: one JSON object per line (``--log-format json``) or readable lines (``text``).

Every formatted line passes the application's redactor, so a configured connector secret cannot reach the
log even through an exception message or a traceback.
"""

from __future__ import annotations

import json
import logging
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
        base = super().render(record)
        extras = [f"{n}={record.__dict__[n]}" for n in _FIELDS if record.__dict__.get(n) is not None]
        extras = [e for e in extras if not e.startswith(("method=", "path=", "status="))]
        if not extras:
            return base
        head, sep, tail = base.partition("\n")
        return f"{head} {' '.join(extras)}{sep}{tail}"


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
