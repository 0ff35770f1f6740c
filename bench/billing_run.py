"""Invoice-run and payroll benchmark: issue one 4-weekly period, write its CSV, export pay.

    PYTHONPATH=. python bench/billing_run.py [--residents 3000 --attendances 350000] [--also-half]

Builds a SQLite database (Core executemany), then in a child process runs
``billing.invoices.issue``, writes the invoice CSV (``billing.stored_csv.write``) and
streams the pay CSV (every worker, the period's four weeks as one pay run, ``[pay]
period = "4-weekly"``): ``--runs`` times for wall time, CPU time of the run's own process
(``process_time``) and of its worker processes (``RUSAGE_CHILDREN``; big runs use them,
``[billing] workers``) and peak RSS (``ru_maxrss``, the run's and its largest worker's),
then once under ``tracemalloc`` for the run's peak Python allocation. With
``--also-half`` it repeats at half the size, to show memory stays flat as data grows.
The target is wall time ("issue + CSV under 5 s"): read it on an idle machine; the load
average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from ivr.db import make_engine, upgrade  # noqa: E402
from ivr.models import Attendance, CarePackage, Resident, Visit, Worker  # noqa: E402

PERIOD = dt.date(2026, 1, 5)
CHUNK = 20_000


def build(path: Path | str, residents: int, attendances: int, seed: int = 7) -> None:
    """The benchmark's period of visits (a SQLite file, or any database URL, migrated here)."""
    url = path if isinstance(path, str) else f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    rnd = random.Random(seed)
    now = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(insert(Worker), [dict(id=i, worker_number=f"{1000 + i}", name=f"W{i}", pin_hash="0" * 64,
                                           team="", active=True, updated_at=now) for i in range(1, 301)])
        conn.execute(insert(Resident), [dict(id=i, reference=f"R{i:05d}", name=f"Resident {i}", address="",
                                             postcode="", funder="Council", team="", active=True, updated_at=now)
                                        for i in range(1, residents + 1)])
        conn.execute(insert(CarePackage), [dict(
            id=i, resident_id=i, purchase_order=f"PO-{i:05d}", funder="Council" if i % 10 else "Private",
            weekly_hours=Decimal(rnd.choice((10, 15, 20, 25))), hourly_rate=Decimal("21.50"),
            weekend_rate=Decimal("23.00"), bank_holiday_rate=Decimal("32.25"), start_date=dt.date(2025, 4, 1),
            end_date=None, updated_at=now) for i in range(1, residents + 1)])
    per = attendances // residents
    start0 = dt.datetime(2026, 1, 5, 7, tzinfo=dt.UTC)
    vid = 0
    visits: list[dict] = []
    atts: list[dict] = []

    def flush(conn) -> None:  # type: ignore[no-untyped-def]
        if visits:
            conn.execute(insert(Visit), visits)
            conn.execute(insert(Attendance), atts)
            visits.clear()
            atts.clear()

    with engine.begin() as conn:
        for r in range(1, residents + 1):
            for k in range(per):
                vid += 1
                start = start0 + dt.timedelta(days=k % 28, hours=(k // 28) * 3 % 15)
                minutes = rnd.choice((30, 30, 45, 60))
                end = start + dt.timedelta(minutes=minutes)
                visits.append(dict(id=vid, visit_ref=f"V{vid}", resident_id=r, planned_start=start, planned_end=end,
                                   workers_required=1, time_critical=False, status="scheduled", cancel_reason="",
                                   updated_at=now))
                arr = start + dt.timedelta(seconds=rnd.randint(-300, 900))
                dep = arr + dt.timedelta(minutes=minutes, seconds=rnd.randint(-400, 300))
                manual = rnd.random() < 0.03
                atts.append(dict(
                    id=vid, visit_id=vid, resident_id=r, worker_id=1 + (r + k) % 300, kind="scheduled",
                    arrival_at=arr, arrival_method="manual" if manual else "phone", arrival_verified=not manual,
                    arrival_entered_at=(end + dt.timedelta(hours=rnd.choice((2, 30)))) if manual else None,
                    departure_at=None if rnd.random() < 0.01 else dep,
                    departure_method="manual" if manual else "phone", departure_verified=not manual,
                    departure_entered_at=(end + dt.timedelta(hours=2)) if manual else None,
                    created_at=now, updated_at=now))
                if len(visits) >= CHUNK:
                    flush(conn)
        flush(conn)
    engine.dispose()


def run(path: Path, out: Path, trace: bool) -> dict:
    from billing import invoices, payroll, stored_csv
    from billing.pay import PayConfig, pay_period_starting
    from billing.render import write_csv
    from carecall.config import load_settings
    from ivr.db import session_factory

    settings = load_settings(None, db_url=f"sqlite:///{path}", environ={})
    settings = dataclasses.replace(settings, raw={"pay": {"period": "4-weekly"}})
    engine = make_engine(settings.db_url)
    factory = session_factory(engine)
    if trace:
        tracemalloc.start()
    def children_cpu() -> float:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return used.ru_utime + used.ru_stime

    t0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
    result = invoices.issue(factory, settings, PERIOD, with_lines=False)
    t1, c1, k1 = time.perf_counter(), time.process_time(), children_cpu()
    with out.open("w", encoding="utf-8", newline="") as fh:
        rows = stored_csv.write(factory, settings, PERIOD, fh)
    t2, c2, k2 = time.perf_counter(), time.process_time(), children_cpu()
    period = pay_period_starting(PERIOD, PayConfig.from_settings(settings), settings.tz)
    with out.with_suffix(".pay.csv").open("w", encoding="utf-8", newline="") as fh:
        workers = write_csv(payroll.CSV_COLUMNS, payroll.csv_rows(factory, settings, period), fh)
    t3, c3 = time.perf_counter(), time.process_time()
    figures = dict(invoices=len(result.invoices), csv_rows=rows, issue_s=round(t1 - t0, 2), csv_s=round(t2 - t1, 2),
                   issue_csv_s=round(t2 - t0, 2), issue_cpu_s=round(c1 - c0, 2), csv_cpu_s=round(c2 - c1, 2),
                   issue_workers_cpu_s=round(k1 - k0, 2), csv_workers_cpu_s=round(k2 - k1, 2), pay_workers=workers,
                   pay_s=round(t3 - t2, 2), pay_cpu_s=round(c3 - c2, 2), load=round(os.getloadavg()[0], 1),
                   total=str(sum(d.total for d in result.invoices)))
    if trace:
        figures["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    figures["maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["workers_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    engine.dispose()
    return figures


def measure(residents: int, attendances: int, workdir: Path, runs: int = 3) -> dict:
    db = workdir / f"bench-{residents}.db"
    t0 = time.perf_counter()
    build(db, residents, attendances)
    built = time.perf_counter() - t0
    results: dict = dict(residents=residents, attendances=attendances, build_s=round(built, 1),
                         db_mb=round(db.stat().st_size / 2**20, 1))
    for n, mode in enumerate(["time"] * runs + ["trace"]):
        copy = workdir / f"run-{mode}.db"
        shutil.copyfile(db, copy)
        proc = subprocess.run([sys.executable, __file__, "--child", str(copy), mode], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
        results[f"{mode}{n + 1 if mode == 'time' else ''}"] = json.loads(proc.stdout.strip().splitlines()[-1])
        copy.unlink()
    totals = sorted(results[f"time{n + 1}"]["issue_csv_s"] for n in range(runs))
    results["issue_csv_s_median"] = totals[len(totals) // 2]
    db.unlink()
    return results


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        path = Path(sys.argv[2])
        print(json.dumps(run(path, path.with_suffix(".csv"), sys.argv[3] == "trace")))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--residents", type=int, default=3000)
    p.add_argument("--attendances", type=int, default=350_000)
    p.add_argument("--also-half", action="store_true")
    p.add_argument("--runs", type=int, default=3, help="timed runs per size (the median is reported)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = [(args.residents, args.attendances)]
        if args.also_half:
            sizes.insert(0, (args.residents // 2, args.attendances // 2))
        for residents, attendances in sizes:
            print(json.dumps(measure(residents, attendances, Path(tmp), args.runs)), flush=True)


if __name__ == "__main__":
    main()
