"""What every benchmark section shares: figures and their statistics, events, targets, machine facts.

A :class:`Figure` is one measured quantity (events/s of a contestant, a p50 latency, a peak RSS) with one
value per repeated run; it reports the median and the min-max. A :class:`Ratio` is computed per round from
two figures measured in that same round (the contestants alternate), then summarised the same way, so a
machine that slows down between rounds moves both sides of the ratio together.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_EVENT = REPO / "examples" / "evidence" / "siem-event.json"
#: a Standard Webhooks secret for the bench's own sink (not a credential of anything real)
BENCH_SIGNING_SECRET = "whsec_YmVuY2gtb25seS1zaWduaW5nLXNlY3JldC0wMDAx"
BENCH_TOKEN = "bench-only-token-0123456789abcdef"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; ``nan`` for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Figure:
    """One measured quantity: a value per run, summarised as median and min-max."""

    key: str
    label: str
    unit: str
    runs: list[float] = field(default_factory=list)
    skipped: str | None = None
    note: str | None = None
    higher_is_better: bool = True

    def add(self, value: float) -> None:
        self.runs.append(float(value))

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "median": _round(self.median),
            "min": _round(min(self.runs)) if self.runs else None,
            "max": _round(max(self.runs)) if self.runs else None,
            "runs": [_round(v) for v in self.runs],
            "skipped": self.skipped,
            "note": self.note,
        }


@dataclass
class Ratio:
    """``numerator / denominator`` per round (both measured in that round), summarised over rounds."""

    key: str
    label: str
    numerator: str
    denominator: str
    runs: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "median": _round(self.median),
            "min": _round(min(self.runs)) if self.runs else None,
            "max": _round(max(self.runs)) if self.runs else None,
            "runs": [_round(v) for v in self.runs],
            "skipped": self.skipped,
        }


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    if abs(value) >= 100:
        return round(value, 1)
    return round(value, 4)


@dataclass
class Section:
    """One part of the bench: its figures, its ratios, and notes on method and what is missing."""

    key: str
    title: str
    method: str
    figures: dict[str, Figure] = field(default_factory=dict)
    ratios: dict[str, Ratio] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: raw series kept in the results (e.g. RSS samples), for the figures' derivations
    series: dict[str, list[Any]] = field(default_factory=dict)

    def figure(self, key: str, label: str, unit: str, *, higher_is_better: bool = True) -> Figure:
        if key not in self.figures:
            self.figures[key] = Figure(key, label, unit, higher_is_better=higher_is_better)
        return self.figures[key]

    def ratio(self, key: str, label: str, numerator: str, denominator: str) -> Ratio:
        if key not in self.ratios:
            self.ratios[key] = Ratio(key, label, numerator, denominator)
        return self.ratios[key]

    def ratios_from_round(self, round_values: dict[str, float]) -> None:
        """Add this round's ratio for every ratio whose two figures were measured in the round."""
        for ratio in self.ratios.values():
            num, den = round_values.get(ratio.numerator), round_values.get(ratio.denominator)
            if num is not None and den:
                ratio.runs.append(num / den)

    def finish(self) -> None:
        for ratio in self.ratios.values():
            if not ratio.runs and ratio.skipped is None:
                missing = [
                    k
                    for k in (ratio.numerator, ratio.denominator)
                    if k not in self.figures or not self.figures[k].runs
                ]
                reasons = [self.figures[k].skipped for k in missing if k in self.figures]
                ratio.skipped = "; ".join(r for r in reasons if r) or f"not measured: {', '.join(missing)}"

    def to_dict(self) -> dict[str, Any]:
        self.finish()
        return {
            "key": self.key,
            "title": self.title,
            "method": self.method,
            "seconds": round(self.seconds, 1),
            "figures": [f.to_dict() for f in self.figures.values()],
            "ratios": [r.to_dict() for r in self.ratios.values()],
            "notes": self.notes,
            "series": self.series,
        }


@dataclass(frozen=True)
class Target:
    """A target of issue 7: ``value(result) <op> bound``."""

    key: str
    text: str
    section: str
    item: str  # a figure or ratio key in the section
    op: str  # ">=" or "<="
    bound: float
    unit: str = ""


@functools.cache
def _example_event() -> str:
    return EXAMPLE_EVENT.read_text(encoding="utf-8")


def sample_event(n: int, *, kind: int | None = None) -> dict[str, Any]:
    """A realistic CAVRA event (the example SIEM event), made distinct by ``n``."""
    base: dict[str, Any] = json.loads(_example_event())
    types = ("cavra.evidence_bundle", "cavra.release.promotion_execution", "cavra.release.rollback_execution")
    base["event_type"] = types[(n if kind is None else kind) % len(types)]
    base["event_id"] = f"evt_bench_{n:09d}"
    base["session_id"] = f"bench-session-{n % 97:02d}"
    base["decision_count"] = 3 + n % 11
    return base


def make_events(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [sample_event(i) for i in range(start, start + count)]


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rss_kib(pid: int | str = "self") -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from ``/proc/<pid>/status``."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem_gib = None
    with contextlib.suppress(ValueError, OSError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "load_average_at_start": None if load is None else [round(x, 2) for x in load],
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def package_versions() -> dict[str, str | None]:
    import sqlite3

    names = ("cavra-connectors", "aiohttp", "requests", "apprise", "sqlalchemy", "psycopg", "fastapi")
    found: dict[str, str | None] = {name: _version(name) for name in (*names, "uvicorn", "pydantic")}
    found["sqlite"] = sqlite3.sqlite_version
    return found


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
