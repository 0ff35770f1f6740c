"""Deadline → alert stored, with 1,000,000 visits in SQLite and the real scheduler service.

Builds a SQLite database (migrated by Alembic) with N visits spread over a year around
now (Core ``executemany`` in chunks), of which K have their "late" deadline spread over
the next RUN seconds. Then runs the real :class:`AlertService` (APScheduler
``TwistedScheduler``, 15 s interval, rules pass in the database thread pool) on the
wall clock and prints, for the K alerts, the time from deadline to the transaction that
stored them committing (p50/p99/max), plus the duration of each pass.

    PYTHONPATH=. python bench/alerts_deadline.py [--visits 1000000] [--due 300] [--run 120]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select

from carecall.config import load_settings
from carecall.runtime import Runtime
from ivr.db import make_engine, upgrade
from ivr.models import Resident, Visit, VisitWorker, Worker, utcnow
from scheduler.delivery import DeliveryConfig
from scheduler.rules import Rules
from scheduler.service import AlertService

CHUNK = 50_000


def populate(url: str, visits: int, due: int, run_seconds: float, now: dt.datetime) -> dt.datetime:
    engine = make_engine(url)
    rng = random.Random(7)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(Resident), [
            {"reference": f"R{i:05d}", "name": f"Resident {i}", "address": "", "postcode": "", "funder": "F",
             "team": "T", "phone_code": f"{100000 + i}", "active": True, "updated_at": now} for i in range(5000)])
        conn.execute(insert(Worker), [
            {"worker_number": f"{1000 + i}", "name": f"Worker {i}", "pin_hash": "0" * 64, "team": "T",
             "active": True, "updated_at": now} for i in range(800)])
        rids = list(conn.scalars(select(Resident.id)))
        wids = list(conn.scalars(select(Worker.id)))
    # Ordinary visits: a year around now, never with a deadline inside the measured run
    # (those more than 2 h from now), so every alert measured is one we planted.
    year = 365 * 24 * 3600
    vid = 0
    with engine.begin() as conn:
        for start in range(0, visits - due, CHUNK):
            rows, links = [], []
            for _ in range(min(CHUNK, visits - due - start)):
                vid += 1
                offset = rng.uniform(-year / 2, year / 2)
                if abs(offset) < 2 * 3600:
                    offset += 4 * 3600
                s = now + dt.timedelta(seconds=offset)
                rows.append({"id": vid, "visit_ref": f"B{vid}", "resident_id": rng.choice(rids), "planned_start": s,
                             "planned_end": s + dt.timedelta(minutes=rng.choice((15, 30, 45, 60))),
                             "workers_required": 1, "time_critical": False, "status": "scheduled",
                             "cancel_reason": "", "updated_at": now})
                links.append({"visit_id": vid, "worker_id": rng.choice(wids), "position": 1})
            conn.execute(insert(Visit), rows)
            conn.execute(insert(VisitWorker), links)
    # Planted: late deadlines (start + 30 min) spread over the run, from 5 s after the
    # bulk insert (which takes about a minute at 1M rows) so none is a catch-up.
    now = utcnow()
    with engine.begin() as conn:
        rows, links = [], []
        for i in range(due):
            vid += 1
            deadline = now + dt.timedelta(seconds=5 + (run_seconds - 20) * i / max(1, due - 1))
            s = deadline - dt.timedelta(minutes=30)
            rows.append({"id": vid, "visit_ref": f"D{vid}", "resident_id": rng.choice(rids), "planned_start": s,
                         "planned_end": s + dt.timedelta(hours=2), "workers_required": 1, "time_critical": False,
                         "status": "scheduled", "cancel_reason": "", "updated_at": now})
            links.append({"visit_id": vid, "worker_id": rng.choice(wids), "position": 1})
        conn.execute(insert(Visit), rows)
        conn.execute(insert(VisitWorker), links)
    engine.dispose()
    print(f"inserted {visits:,} visits in {time.perf_counter() - t0:.1f} s")
    return now


class TimedService(AlertService):
    """Stamps when each pass's transaction committed, and how long the pass took."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.committed: dict[int, tuple[dt.datetime, dt.datetime]] = {}
        self.pass_seconds: list[float] = []
        self.visits_read: list[int] = []

    def _db_pass(self, now: dt.datetime) -> dict[str, Any]:
        t0 = time.perf_counter()
        result = super()._db_pass(now)
        done = utcnow()
        self.pass_seconds.append(time.perf_counter() - t0)
        for r in result["raised"]:
            self.committed[r["id"]] = (dt.datetime.fromisoformat(r["due_at"]), done)
        return result


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=300)
    parser.add_argument("--run", type=float, default=120.0)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--db", default="")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="carecall-bench-"))
    url = args.db or f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    now = utcnow()
    now = populate(url, args.visits, args.due, args.run, now)

    from twisted.internet import reactor

    settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "k.key"), data_dir=str(tmp))
    runtime = Runtime.create(settings, reactor)
    runtime.start()
    # Look-back 12 h (the default): every pass reads about a day's visits around now.
    service = TimedService(runtime, interval=args.interval, rules=Rules(), cfg=DeliveryConfig())
    service.startService()
    reactor.callLater(args.run, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    service.stopService()
    runtime.stop()

    delays = [(done - due).total_seconds() for due, done in service.committed.values() if due > now]
    print(f"visits stored: {args.visits:,}; interval {args.interval:g} s; run {args.run:g} s")
    print(f"passes: {len(service.pass_seconds)}; pass duration p50 {statistics.median(service.pass_seconds):.3f} s, "
          f"max {max(service.pass_seconds):.3f} s (first = catch-up: {service.pass_seconds[0]:.3f} s)")
    print(f"alerts measured: {len(delays)} of {args.due} planted")
    if delays:
        print(f"deadline → alert committed: p50 {pct(delays, 50):.2f} s, p99 {pct(delays, 99):.2f} s, "
              f"max {max(delays):.2f} s")
    return 0 if len(delays) >= args.due * 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
