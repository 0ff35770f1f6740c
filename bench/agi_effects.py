"""Micro-benchmark of the call path's database effects, without sockets or the reactor.

Runs the two effects of an arrival call (line lookup; PIN check + decision + attendance +
call record) directly through ``CallStore.run`` for N workers, as the database thread
does, and prints CPU and wall time per call. CPU time is steadier than wall time on a
shared machine, so this is the figure to compare before and after a change.

    PYTHONPATH=$PWD python bench/agi_effects.py [--calls 3000] [--db sqlite|URL] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agi_load import build_world, uk_line  # noqa: E402
from ivr.callstore import CallStore  # noqa: E402
from ivr.db import make_engine  # noqa: E402
from ivr.dialog import CallInfo, CheckIn, LookupLine  # noqa: E402
from ivr.phone import normalise  # noqa: E402
from ivr.pins import PinHasher, load_or_create_key  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'bench.db'}" if args.db == "sqlite" else args.db
        info = build_world(args.calls, workdir, url)
        store = CallStore(make_engine(url), PinHasher(load_or_create_key(info["key"])))
        lines = [normalise(uk_line(i)) for i in range(args.calls)]

        def one(i: int) -> None:
            now = dt.datetime.now(dt.UTC)
            call = CallInfo(f"bench-{i}", "checkin", now, lines[i])
            rids = store.run(LookupLine(lines[i]))
            result = store.run(CheckIn(call, str(20000 + i), "1234", rids, True, now, 0, False))
            assert result.direction == "arrival" and result.visit_id is not None, result

        profiler = cProfile.Profile() if args.profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(args.calls):
            one(i)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(f"{args.calls} arrival calls: {cpu / args.calls * 1e6:.0f} µs CPU, "
              f"{wall / args.calls * 1e6:.0f} µs wall per call ({args.calls / wall:.0f} calls/s, one thread)")
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
