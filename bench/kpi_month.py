"""How long the contract-monitoring return takes for a month of 300,000 attendances.

    PYTHONPATH=$PWD python bench/kpi_month.py [--attendances 300000] [--pg]

Builds a database (SQLite in a temp dir; with --pg also a private PostgreSQL cluster via
tests/pg.py), inserts residents, workers, packages, visits and attendances for March
2026 with Core executemany, then times ``reports.kpi.compute``, each renderer and the
anonymised export. Prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from carecall.config import load_settings  # noqa: E402
from ivr.clock import local_to_utc  # noqa: E402
from ivr.db import make_engine, session_factory, upgrade  # noqa: E402
from ivr.models import Attendance, CarePackage, Resident, Visit, Worker  # noqa: E402
from reports.export import write_export  # noqa: E402
from reports.kpi import compute, make_scope  # noqa: E402
from reports.render import to_csv, to_html, to_json  # noqa: E402

FROM, TO = dt.date(2026, 3, 1), dt.date(2026, 3, 31)
NOW = dt.datetime(2026, 4, 2, tzinfo=dt.UTC)
SLOTS = ((7, 30, 45), (12, 0, 30), (17, 0, 30), (20, 30, 30))  # local hour, minute, planned minutes
FUNDERS = ("Lewisham", "Lewisham", "Lewisham", "Greenwich", "Private")
TEAMS = ("North", "South", "East")


def populate(url: str, attendances: int, seed: int = 6) -> dict[str, float]:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/London")
    rng = random.Random(seed)
    # ~3.3 visits a day per resident, 7% double-ups: residents sized for the target.
    residents = max(10, round(attendances / (31 * 3.3 * 1.07)))
    workers = max(5, residents // 3)
    engine = make_engine(url)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(Resident.__table__), [
            {"id": i, "reference": f"R{i:05d}", "name": f"Resident {i}", "address": "x", "postcode": "x",
             "funder": FUNDERS[i % len(FUNDERS)], "team": TEAMS[i % len(TEAMS)], "active": True,
             "updated_at": NOW} for i in range(1, residents + 1)])
        conn.execute(insert(Worker.__table__), [
            {"id": i, "worker_number": f"{1000 + i}", "name": f"Worker {i}", "pin_hash": "0" * 64,
             "team": TEAMS[i % len(TEAMS)], "active": True, "updated_at": NOW} for i in range(1, workers + 1)])
        conn.execute(insert(CarePackage.__table__), [
            {"id": i, "resident_id": i, "purchase_order": f"PO-{i}", "funder": FUNDERS[i % len(FUNDERS)],
             "weekly_hours": Decimal(rng.choice(("2.5", "7", "14", "21", "30", "40"))),
             "hourly_rate": Decimal("21.50"), "weekend_rate": Decimal("23"), "bank_holiday_rate": Decimal("32"),
             "start_date": dt.date(2026, 1, 5), "end_date": None, "updated_at": NOW}
            for i in range(1, residents + 1)])
    visits: list[dict[str, object]] = []
    atts: list[dict[str, object]] = []
    vid = aid = 0
    regulars = {r: [rng.randrange(1, workers + 1) for _ in range(4)] for r in range(1, residents + 1)}
    # Day by day, as weekly roster imports add them: ids roughly follow planned start.
    for day in range(1, 32):
        for r in range(1, residents + 1):
            slots = SLOTS if r % 10 < 3 else SLOTS[:3]
            for hour, minute, planned in slots:
                vid += 1
                start = local_to_utc(dt.datetime(2026, 3, day, hour, minute), tz)
                required = 2 if rng.random() < 0.07 else 1
                visits.append({"id": vid, "visit_ref": f"V{vid}", "resident_id": r, "planned_start": start,
                               "planned_end": start + dt.timedelta(minutes=planned), "workers_required": required,
                               "time_critical": hour == 7, "status": "cancelled" if rng.random() < 0.02 else
                               "scheduled", "cancel_reason": "", "updated_at": NOW})
                if rng.random() < 0.01:
                    continue  # missed
                for k in range(required):
                    aid += 1
                    worker = rng.choice(regulars[r]) if rng.random() < 0.9 else rng.randrange(1, workers + 1)
                    if k == 1 and worker == atts[-1]["worker_id"]:
                        worker = worker % workers + 1
                    arr = start + dt.timedelta(seconds=int(rng.gauss(300, 600)))
                    stay = max(5, int(rng.gauss(planned, 6)))
                    manual_a, manual_d = rng.random() < 0.05, rng.random() < 0.06
                    atts.append({"id": aid, "visit_id": vid, "resident_id": r, "worker_id": worker,
                                 "kind": "scheduled", "arrival_at": arr,
                                 "arrival_method": "manual" if manual_a else "phone", "arrival_verified": True,
                                 "departure_at": arr + dt.timedelta(minutes=stay),
                                 "departure_method": "manual" if manual_d else "phone", "departure_verified": True,
                                 "created_at": NOW, "updated_at": NOW})
    t1 = time.perf_counter()
    with engine.begin() as conn:
        for i in range(0, len(visits), 20000):
            conn.execute(insert(Visit.__table__), visits[i:i + 20000])
        for i in range(0, len(atts), 20000):
            conn.execute(insert(Attendance.__table__), atts[i:i + 20000])
    t2 = time.perf_counter()
    if url.startswith("postgresql"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {"residents": residents, "workers": workers, "visits": len(visits), "attendances": len(atts),
            "generate_s": t1 - t0, "insert_s": t2 - t1}


def measure(url: str, tmp: Path, label: str, attendances: int) -> None:
    upgrade(url)
    sizes = populate(url, attendances)
    print(f"[{label}] {sizes['residents']} residents, {sizes['workers']} workers, {sizes['visits']} visits, "
          f"{sizes['attendances']} attendances; inserted in {sizes['insert_s']:.1f} s")
    settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "bench.key"), data_dir=str(tmp))
    factory = session_factory(make_engine(url))
    for run in (1, 2):
        t = time.perf_counter()
        report = compute(factory, settings, FROM, TO, now=NOW)
        took = time.perf_counter() - t
        print(f"[{label}] compute run {run}: {took:.2f} s")
    t = time.perf_counter()
    for name, fn in (("html", to_html), ("csv", to_csv), ("json", to_json)):
        t = time.perf_counter()
        size = len(fn(report))
        print(f"[{label}] render {name}: {time.perf_counter() - t:.2f} s, {size / 1e6:.1f} MB")
    t = time.perf_counter()
    buf = io.StringIO()
    rows = write_export(factory, settings, make_scope(settings, FROM, TO, None, None, NOW), buf)
    print(f"[{label}] anonymised export: {rows} rows in {time.perf_counter() - t:.2f} s")
    c = report.compliance.share.overall
    print(f"[{label}] compliance {c.percent}% ({c.numerator}/{c.denominator}); "
          f"time-critical punctual {report.punctuality.time_critical.overall.percent}%; "
          f"missed {report.missed.count}; late {report.late.count}; short {report.short_delivered.count}; "
          f"workers below 85%: {len(report.compliance.workers_below_floor)}; "
          f"packages outside 95% band: {len(report.consistency.outside)}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attendances", type=int, default=300_000)
    parser.add_argument("--pg", action="store_true", help="also on a private PostgreSQL cluster (tests/pg.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        measure(f"sqlite:///{tmp / 'bench.db'}", tmp, "sqlite", args.attendances)
        if args.pg:
            from tests.pg import PgCluster, find_bindir

            bindir = find_bindir()
            if bindir is None:
                print("no PostgreSQL binaries; skipped")
                return 0
            cluster = PgCluster(bindir)
            cluster.init()
            cluster.start()
            try:
                measure(cluster.url(), tmp, "postgresql", args.attendances)
            finally:
                cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
