"""What SQLite alone costs for the invoice run, its CSV and the pay export: the floor under them.

    PYTHONPATH=. python bench/billing_floor.py [--residents 3000 --attendances 350000]

Builds the same database as ``bench/billing_run.py``, then times, with plain ``sqlite3``
and no billing code at all, the statements the runs cannot do without, with the
connection settings the application uses (WAL, ``synchronous=NORMAL``, foreign keys on):

- ``read``: every attendance of the period with its visit and worker, a batch of 100
  residents at a time (what ``billing.queries.attendances_for`` reads);
- ``insert``: one 19-column invoice line per attendance with ``executemany`` in chunks of
  5,000, into the real ``billing_invoice_lines`` table (its indexes, foreign keys and
  check constraint), then ``commit``;
- ``csv_read``: the CSV's columns of every invoice's lines, invoice by invoice;
- ``pay_read``: the pay export's attendances in (worker, arrival) order.

Each figure is CPU seconds (``process_time``) and wall seconds; the sum of read + insert +
commit + csv_read is what issue + CSV would cost if the Python between them were free.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.billing_run import build  # noqa: E402

START, END = "2026-01-05 00:00:00.000000", "2026-02-02 00:00:00.000000"
READ = """SELECT a.id, v.visit_ref, v.resident_id, w.worker_number, v.planned_start, v.planned_end, a.arrival_at,
 a.arrival_method, a.arrival_entered_at, a.departure_at, a.departure_method, a.departure_entered_at,
 a.arrival_unanswered, a.departure_unanswered
 FROM attendances a JOIN visits v ON a.visit_id = v.id JOIN workers w ON a.worker_id = w.id
 WHERE v.resident_id IN ({ids}) AND v.planned_start >= ? AND v.planned_start < ?"""
INSERT = """INSERT INTO billing_invoice_lines (invoice_id, kind, attendance_id, package_id, service_period_start,
 resident_reference, visit_ref, worker_number, planned_start, planned_end, arrival_at, departure_at, method,
 billable_minutes, over_cap_minutes, rate_kind, rate_pence, amount_pence, reason)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
CSV = """SELECT resident_reference, visit_ref, worker_number, arrival_at, departure_at, method, billable_minutes,
 rate_pence, amount_pence FROM billing_invoice_lines
 WHERE invoice_id = ? AND kind IN ('billed', 'reversal', 'adjustment')
 AND (billable_minutes != 0 OR amount_pence != 0) ORDER BY id"""
PAY = """SELECT a.worker_id, w.worker_number, w.name, a.id, r.reference, a.arrival_at, a.departure_at,
 a.arrival_method, a.departure_method, a.arrival_uniqueid IS NOT NULL, a.departure_uniqueid IS NOT NULL
 FROM attendances a JOIN workers w ON a.worker_id = w.id JOIN residents r ON a.resident_id = r.id
 WHERE a.arrival_at >= ? AND a.arrival_at < ? ORDER BY a.worker_id, a.arrival_at, a.id"""


def timed(figures: dict, name: str, fn: Callable[[], object]) -> object:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    figures[name] = dict(cpu_s=round(time.process_time() - c0, 2), wall_s=round(time.perf_counter() - w0, 2))
    return out


def floor(path: Path, residents: int) -> dict:
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        con.execute(f"PRAGMA {pragma}")
    figures: dict = {}

    def read() -> list[tuple]:
        out = []
        for lo in range(0, residents, 100):
            ids = ",".join(str(i) for i in range(lo + 1, min(lo + 100, residents) + 1))
            out.extend(row[:10] for row in con.execute(READ.format(ids=ids), (START, END)))
        return out

    rows = timed(figures, "read", read)
    assert isinstance(rows, list)
    con.execute("BEGIN")
    con.execute("INSERT INTO billing_runs (period_start, funder, issued_at, issued_by) "
                "VALUES ('2026-01-05', '', '2026-02-10 00:00:00.000000', 'floor')")
    con.executemany("INSERT INTO billing_invoices (id, number, run_id, group_key, period_start, period_end, funder, "
                    "purchase_order, issue_date, due_date, issued_at, cap_minutes, billed_minutes, "
                    "over_cap_minutes, visits, total_pence, bill_to, bill_to_email) VALUES (?, ?, 1, ?, "
                    "'2026-01-05', '2026-02-01', 'Council', ?, '2026-02-02', '2026-03-02', "
                    "'2026-02-10 00:00:00.000000', 0, 0, 0, 0, 0, '', '')",
                    [(i, i, f"po:{i}", f"PO-{i:05d}") for i in range(1, residents + 1)])
    lines = [(rid, "billed", aid, rid, "2026-01-05", f"R{rid:05d}", ref, number, ps, pe, arr, dep, "phone", 30, 0,
              "hourly", 2150, 1075, "") for (aid, ref, rid, number, ps, pe, arr, _m, _e, dep) in rows]
    rows.clear()

    def insert() -> None:
        for i in range(0, len(lines), 5000):
            con.executemany(INSERT, lines[i:i + 5000])

    timed(figures, "insert", insert)
    figures["lines"] = len(lines)
    lines.clear()
    timed(figures, "commit", lambda: con.execute("COMMIT"))

    def csv_read() -> int:
        n = 0
        for (iid,) in con.execute("SELECT id FROM billing_invoices ORDER BY number").fetchall():
            for _row in con.execute(CSV, (iid,)):
                n += 1
        return n

    figures["csv_rows"] = timed(figures, "csv_read", csv_read)
    figures["pay_rows"] = timed(figures, "pay_read", lambda: sum(1 for _ in con.execute(PAY, (START, END))))
    con.close()
    figures["issue_csv_floor_cpu_s"] = round(sum(figures[k]["cpu_s"] for k in ("read", "insert", "commit",
                                                                                "csv_read")), 2)
    figures["load"] = round(os.getloadavg()[0], 1)
    return figures


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--residents", type=int, default=3000)
    p.add_argument("--attendances", type=int, default=350_000)
    p.add_argument("--db", type=Path, help="a database billing_run.build made before (copied, not changed)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "floor.db"
        if args.db:
            shutil.copyfile(args.db, db)
        else:
            build(db, args.residents, args.attendances)
        print(json.dumps(dict(residents=args.residents, attendances=args.attendances, **floor(db, args.residents))))


if __name__ == "__main__":
    main()
