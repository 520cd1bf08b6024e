"""``python -m bench.profile_worker [EVENTS]``: cProfile of the worker path, the top of the profile printed.

The same pipeline as the bench's ``cavra_worker_sqlite`` contestant (enqueue → ``Worker``, 32 in flight →
the record stored with the job's completion), on a fresh SQLite store, against the nginx sink, in this
process under ``cProfile``. Prints the functions with the most own time, then the most cumulative time,
and the CPU per event of the whole run (``/proc/self/stat``). Used for docs/performance.md.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time

from bench.common import make_events
from bench.contestants.worker_path import WorkerPath
from bench.processes import cpu_seconds
from bench.sink import Sink


def main(argv: list[str]) -> int:
    events = int(argv[0]) if argv else 4000
    profile = "--no-profile" not in argv
    with Sink() as sink:
        c = WorkerPath(sink.url, backend="sqlite", stores=None)
        if c.skipped:
            print(c.skipped)
            return 1
        c.setup()
        c.run(make_events(200, start=90_000_000))  # warm-up: imports, first connections
        c.deadline = time.monotonic() + 600
        prof = cProfile.Profile()
        cpu0 = cpu_seconds("self")
        if profile:
            prof.enable()
        done, seconds = c.run(make_events(events, start=91_000_000))
        if profile:
            prof.disable()
        cpu = cpu_seconds("self") - cpu0
        c.teardown()
    print(
        f"{done} events in {seconds:.2f} s: {done / seconds:,.0f} events/s, "
        f"{cpu / done * 1e6:,.0f} µs CPU/event"
    )
    if profile:
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(prof, stream=out).strip_dirs().sort_stats(order).print_stats(25)
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
