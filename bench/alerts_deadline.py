"""Deadline → alert stored → first delivery started, with 1,000,000 visits and the real service.

Builds a SQLite database (migrated by Alembic) with N visits spread over a year around
now (Core ``executemany`` in chunks), of which K have their "late" deadline spread over
the next RUN seconds. Then runs the real :class:`AlertService` (a pass at each deadline
read from the database, the 15 s safety-net interval, rules pass in the database thread
pool, an office e-mail address so every alert gets a delivery) on the wall clock and
prints, for the K alerts, the time from deadline to the transaction that stored them
committing, and from deadline to the first delivery attempt being started (the sender
called in its thread; the sender here only stamps the time, so SMTP's own speed is not
measured) — p50/p99/max — plus the passes' durations, the process's CPU and the load.

    PYTHONPATH=. python bench/alerts_deadline.py [--visits 1000000] [--due 300] [--run 120]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from carecall.config import load_settings
from carecall.runtime import Runtime
from ivr.db import make_engine, upgrade
from ivr.models import Resident, Visit, VisitWorker, Worker, utcnow
from scheduler.delivery import DeliveryConfig, Job
from scheduler.models import Alert
from scheduler.rules import Rules
from scheduler.service import AlertService
from scheduler.store import run_pass

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
    # The steady state of a server that has been running all along: the look-back window's
    # alerts (≈2,700 late/missed of the last 12 h) are already stored and delivered, so the
    # measured alerts are not queued behind a catch-up's outbox. Every pass still reads
    # those visits and open alerts, as it would on a real day.
    with Session(engine) as s, s.begin():
        early = run_pass(s, now, Rules())
        s.execute(update(Alert).values(deliveries_planned_at=now))
    # Planted: late deadlines (start + 30 min) spread over the run, from 15 s after the
    # bulk insert (1–4 min at 1M rows) and the service's start, so none is a catch-up.
    now = utcnow()
    with engine.begin() as conn:
        rows, links = [], []
        for i in range(due):
            vid += 1
            deadline = now + dt.timedelta(seconds=15 + (run_seconds - 30) * i / max(1, due - 1))
            s = deadline - dt.timedelta(minutes=30)
            rows.append({"id": vid, "visit_ref": f"D{vid}", "resident_id": rng.choice(rids), "planned_start": s,
                         "planned_end": s + dt.timedelta(hours=2), "workers_required": 1, "time_critical": False,
                         "status": "scheduled", "cancel_reason": "", "updated_at": now})
            links.append({"visit_id": vid, "worker_id": rng.choice(wids), "position": 1})
        conn.execute(insert(Visit), rows)
        conn.execute(insert(VisitWorker), links)
    engine.dispose()
    print(f"inserted {visits:,} visits in {time.perf_counter() - t0:.1f} s; "
          f"{len(early.raised):,} alerts of the last {Rules().lookback_hours:g} h stored beforehand")
    return now


class TimedService(AlertService):
    """Stamps when each pass's transaction committed, and how long the pass took."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.committed: dict[int, tuple[dt.datetime, dt.datetime]] = {}
        self.started: dict[int, dt.datetime] = {}  # alert id → its first delivery attempt started
        self.pass_seconds: list[float] = []
        self.visits_read: list[int] = []
        self.full_passes = 0
        self.sender = self._stamp

    def _stamp(self, job: Job, cfg: DeliveryConfig) -> None:
        self.started.setdefault(job.alert_id, utcnow())  # runs in a reactor pool thread, as SMTP would

    def _db_pass(self, now: dt.datetime, full: bool = True) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.full_passes += full
        result = super()._db_pass(now, full)
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
    parser.add_argument("--pass-gap", type=float, default=0.5)
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
    service = TimedService(runtime, interval=args.interval, pass_gap=args.pass_gap, rules=Rules(),
                           cfg=DeliveryConfig(office_email="office@bench.test"))
    load_before = os.getloadavg()
    cpu0, wall0 = time.process_time(), time.monotonic()
    service.startService()
    reactor.callLater(args.run, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    load_after = os.getloadavg()
    service.stopService()
    runtime.stop()

    measured = {i: due for i, (due, _done) in service.committed.items() if due > now}
    delays = [(service.committed[i][1] - due).total_seconds() for i, due in measured.items()]
    first = [(service.started[i] - due).total_seconds() for i, due in measured.items() if i in service.started]
    print(f"visits stored: {args.visits:,}; safety-net interval {args.interval:g} s; pass gap {args.pass_gap:g} s; "
          f"run {args.run:g} s")
    print(f"passes: {len(service.pass_seconds)} ({service.full_passes} full); pass duration p50 "
          f"{statistics.median(service.pass_seconds):.3f} s, max {max(service.pass_seconds):.3f} s "
          f"(first = catch-up: {service.pass_seconds[0]:.3f} s)")
    print(f"process CPU during the run: {cpu:.1f} s of {wall:.1f} s ({100 * cpu / wall:.0f} % of one core); "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (2 cores)")
    print(f"alerts measured: {len(delays)} of {args.due} planted; first delivery started for {len(first)}")
    for name, values in (("deadline → alert committed", delays), ("deadline → first delivery started", first)):
        if values:
            print(f"{name}: p50 {pct(values, 50):.2f} s, p99 {pct(values, 99):.2f} s, max {max(values):.2f} s")
    return 0 if len(delays) >= args.due * 0.8 and len(first) == len(delays) else 1


if __name__ == "__main__":
    sys.exit(main())
