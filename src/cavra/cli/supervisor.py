"""``cavra worker --processes N``: one supervisor process running N worker processes on one store.

Each child is ``cavra worker`` with the same options and ``--processes 1`` (the metrics port and the
checkpoint schedule go to the first child only: one port, one witness). Children claim from the same store
(SQLite: WAL and one short ``BEGIN IMMEDIATE`` per claim; PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so
they never hold the same job at once. The supervisor

* forwards SIGTERM and SIGINT to every child (each stops gracefully, as a single worker does);
* relays the children's stderr, and replaces their one-line summaries by one summary of them all;
* reports a child that dies (non-zero exit or killed by a signal) at once, keeps the others running, and
  exits non-zero when any child failed;
* takes its children with it when it is killed outright (Linux ``PR_SET_PDEATHSIG``): as for a single
  worker, their leases expire and other workers run the jobs again.

With ``--once`` each child drains what is due and exits; the supervisor exits when all have.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from cavra.cli.common import err_console

#: how the CLI is started in a child (the same interpreter and installation as the supervisor)
CHILD_MAIN = "from cavra.cli.main import main; main()"
#: a child's closing line (printed by ``cavra worker``): owner, then the counters in order
SUMMARY = re.compile(
    r"^worker (?P<owner>\S+): (?P<claimed>\d+) claimed, (?P<succeeded>\d+) delivered, "
    r"(?P<failed>\d+) failed, "
    r"(?P<rescheduled>\d+) rescheduled, (?P<dead>\d+) dead letters, (?P<released>\d+) released$"
)
COUNTERS = ("claimed", "succeeded", "failed", "rescheduled", "dead", "released")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: a child outlives a supervisor killed outright, as a lone worker would


@dataclass
class Child:
    index: int
    proc: subprocess.Popen[str]
    counters: dict[str, int] = field(default_factory=dict)
    reader: threading.Thread | None = None


class Supervisor:
    """Start ``processes`` children running ``cavra worker`` with ``args(index)``, wait for them all."""

    def __init__(self, processes: int, args: Sequence[Sequence[str]]) -> None:
        self.processes = processes
        self.args = args
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._stopping = False

    def _relay(self, child: Child, stream: IO[str]) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            m = SUMMARY.match(line)
            if m is not None:
                child.counters = {k: int(m.group(k)) for k in COUNTERS}
                continue
            with self._lock:
                err_console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(signum)

    def start(self) -> None:
        env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "200")}
        for index in range(self.processes):
            proc = subprocess.Popen(
                [sys.executable, "-c", CHILD_MAIN, "worker", *self.args[index]],
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                preexec_fn=_die_with_parent,  # only sets the death signal
            )
            child = Child(index, proc)
            assert proc.stderr is not None
            child.reader = threading.Thread(target=self._relay, args=(child, proc.stderr), daemon=True)
            child.reader.start()
            self.children.append(child)

    def wait(self) -> int:
        """Wait for every child (polling only our own children); report each that failed; return how many."""
        failed = 0
        pending = list(self.children)
        while pending:
            for child in list(pending):
                try:
                    code = child.proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    continue
                pending.remove(child)
                if child.reader is not None:
                    child.reader.join(timeout=5)
                stopped = self._stopping and code in (-signal.SIGTERM, -signal.SIGINT)  # before its handler
                if code != 0 and not stopped:
                    failed += 1
                    self._report(child, code)
        return failed

    def _report(self, child: Child, code: int) -> None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        with self._lock:
            err_console.print(
                f"error: worker process {child.index + 1} of {self.processes} (pid {child.proc.pid}) {how}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def run(self) -> int:
        """Start, forward signals, wait; return how many children failed."""
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, self._forward) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
        try:
            self.start()
            return self.wait()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def totals(self) -> dict[str, int]:
        return {k: sum(c.counters.get(k, 0) for c in self.children) for k in COUNTERS}

    def claimed(self) -> list[int]:
        """Jobs each child claimed (0 for a child that printed no summary)."""
        return [c.counters.get("claimed", 0) for c in self.children]
