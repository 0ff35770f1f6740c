"""Privacy operations at size: the retention run, one resident's export and erasure.

    PYTHONPATH=. python bench/privacy_ops.py [--db URL] [--residents 500 --years 8]

Builds a database (Core executemany) with ``residents`` residents, one worker each and
two visits a day for ``years`` years, each with its attendance, call record and (one in
twenty) an alert with a history row; then times: a retention dry run, the retention run
(which deletes everything older than the default periods), one resident's subject-access
export (JSON only) and that resident's erasure (plan + erase + leftover search).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402

from ivr.db import make_engine, session_factory, unit_of_work, upgrade  # noqa: E402
from ivr.models import Attendance, CallRecord, Resident, Visit, Worker  # noqa: E402
from privacy.erase import erase, leftovers, plan  # noqa: E402
from privacy.export import build_export  # noqa: E402
from privacy.retention import RetentionPolicy, run  # noqa: E402
from scheduler.models import Alert, AlertAction  # noqa: E402

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
CHUNK = 20_000


def build(url: str, residents: int, years: int) -> dict[str, int]:
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(insert(Resident), [{"reference": f"R{i:05d}", "name": f"Resident {i}", "address": f"{i} Road",
                                      "postcode": "SE6 1AA", "funder": "Lewisham"} for i in range(residents)])
        c.execute(insert(Worker), [{"worker_number": f"{1000 + i}", "name": f"Worker {i}", "pin_hash": "x"}
                                   for i in range(residents)])
    with engine.begin() as c:
        rids = dict(c.execute(select(Resident.reference, Resident.id)).all())
        wids = dict(c.execute(select(Worker.worker_number, Worker.id)).all())
    days = years * 365
    n = 0
    visits, atts, calls, alerts = [], [], [], []
    vid = aid = cid = alid = 0
    start = NOW - dt.timedelta(days=days)

    def flush() -> None:
        with engine.begin() as c:
            for model, rows in ((Visit, visits), (Attendance, atts), (CallRecord, calls), (Alert, alerts)):
                if rows:
                    c.execute(insert(model), rows)
            if alerts:
                c.execute(insert(AlertAction), [{"alert_id": a["id"], "actor": "x", "action": "raised",
                                                 "at": a["raised_at"]} for a in alerts])
        for rows in (visits, atts, calls, alerts):
            rows.clear()

    for d in range(days):
        for i in range(residents):
            for h in (9, 17):
                at = start + dt.timedelta(days=d, hours=h - 12)
                vid += 1
                aid += 1
                cid += 1
                r, w = rids[f"R{i:05d}"], wids[f"{1000 + i}"]
                visits.append({"id": vid, "visit_ref": f"V{vid}", "resident_id": r, "planned_start": at,
                               "planned_end": at + dt.timedelta(minutes=30), "updated_at": at})
                atts.append({"id": aid, "visit_id": vid, "resident_id": r, "worker_id": w, "arrival_at": at,
                             "created_at": at, "updated_at": at})
                calls.append({"id": cid, "uniqueid": f"u{cid}", "script": "checkin", "started_at": at,
                              "resident_id": r, "worker_id": w, "attendance_id": aid, "visit_id": vid,
                              "caller_e164": "+442000000000"})
                if vid % 20 == 0:
                    alid += 1
                    alerts.append({"id": alid, "kind": "late", "dedupe_key": f"late:{vid}", "visit_id": vid,
                                   "resident_id": r, "worker_id": w, "due_at": at, "raised_at": at})
                n += 1
        if len(visits) >= CHUNK:
            flush()
    flush()
    return {"visits": n, "alerts": alid}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db")
    ap.add_argument("--residents", type=int, default=100)
    ap.add_argument("--years", type=int, default=8)
    args = ap.parse_args()
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp()) / 'privacy.db'}"
    upgrade(url)
    t0 = time.perf_counter()
    sizes = build(url, args.residents, args.years)
    print(f"built {sizes['visits']} visits (+ attendances, calls) and {sizes['alerts']} alerts "
          f"in {time.perf_counter() - t0:.1f} s on {url.split(':')[0]}")
    factory = session_factory(make_engine(url))
    for label, dry in (("retention dry run", True), ("retention run", False)):
        t0 = time.perf_counter()
        with unit_of_work(factory) as s:
            report = run(s, RetentionPolicy(), NOW, dry_run=dry)
        rows = sum(x.rows for x in report)
        print(f"{label}: {rows} rows {'found' if dry else 'deleted'} in {time.perf_counter() - t0:.2f} s")
    with factory() as s:
        rid = s.scalar(select(Resident.id).where(Resident.reference == "R00001"))
    t0 = time.perf_counter()
    with unit_of_work(factory) as s:
        x = build_export(s, "resident", rid, actor="bench", role="manager", channel="cli", sealer=None, now=NOW)
        size = len(x.json_bytes())
    print(f"export of one resident: {sum(len(s['rows']) for s in x.sections)} records, {size / 1e6:.1f} MB JSON "
          f"in {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    with unit_of_work(factory) as s:
        the_plan = plan(s, "resident", rid)
        erase(s, the_plan, actor="bench")
        t1 = time.perf_counter()
        left = leftovers(s, the_plan.person)
    print(f"erasure of one resident: {sum(st.rows for st in the_plan.steps)} rows in {t1 - t0:.2f} s; "
          f"leftover search over every text column {time.perf_counter() - t1:.2f} s ({len(left)} found)")


if __name__ == "__main__":
    main()
