"""Demo data: a few residents, workers and packages, and today's visits around now.

Written as the same CSV files a site imports, so the demo exercises the real importer.
Visits are placed in local time (Europe/London by default) on today's date, with one
visit for worker 1001 at resident R001 starting at the current quarter hour, so that
``carecall simulate-call --from "020 8698 9911" --digits 1001,1234`` logs an arrival.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from ivr.importer import ImportContext, ImportReport, import_csv

RESIDENTS = """reference,name,landline,address,postcode,funder,phone_code
R001,Alice Brown,020 8698 9911,"1 Elm Road, London",SE6 1AA,Lewisham,101
R002,Bob Green,020 8698 9922,"2 Oak Lane, London",SE6 2BB,Lewisham,102
R003,Cara White,020 8698 9933,"3 Ash Close, London",SE6 3CC,Private,103
R004,Dan Black,,"4 Fir Walk, London",SE6 4DD,Lewisham,104
R005,Eve Grey,020 8698 9955,"5 Yew Court, London",SE6 5EE,Lewisham,105
"""

WORKERS = """worker_number,name,pin,mobile
1001,Wendy Walker,1234,07911 123001
1002,Sam Smith,2345,07911 123002
1003,Priya Patel,3456,07911 123003
1004,Tom Taylor,4567,07911 123004
"""

PACKAGES = """\
resident_reference,purchase_order,funder,weekly_hours,hourly_rate,weekend_rate,bank_holiday_rate,start_date,end_date
R001,PO-1001,Lewisham,10.5,21.50,23.00,32.25,2026-01-05,
R002,PO-1002,Lewisham,14,21.50,23.00,32.25,2026-01-05,
R003,PRIV-R003,Private,7,25.00,27.50,37.50,2026-01-05,
R004,PO-1004,Lewisham,3,21.50,23.00,32.25,2026-01-05,
R005,PO-1005,Lewisham,21,21.50,23.00,32.25,2026-01-05,
"""

CONTACTS = """resident_reference,name,relation,relation_note,phone,phone2,email,notify_missed,billing_address
R001,Carol Brown,next_of_kin,daughter,07911 123101,020 8698 1101,carol.brown@example.org,yes,
R001,Mr Patel,other,neighbour at no. 3,020 8698 1102,,,no,
R003,Paul White,representative,son (attorney),07911 123103,,paul.white@example.org,yes,"9 Birch Way, London SE6 9ZZ"
R004,Diane Black,next_of_kin,wife,07911 123104,,,yes,
R005,Gary Grey,next_of_kin,brother,07911 123105,,,no,
"""

# (resident, local start "HH:MM", minutes, workers, time critical)
ROTA = [
    ("R002", "08:00", 45, "1002", "yes"),
    ("R002", "13:00", 30, "1002", "no"),
    ("R002", "18:30", 30, "1003", "no"),
    ("R003", "09:00", 60, "1003", "no"),
    ("R004", "10:30", 30, "1004", "no"),
    ("R005", "07:30", 60, "1002;1004", "yes"),
    ("R005", "12:00", 30, "1004", "yes"),
    ("R005", "19:00", 45, "1003;1004", "no"),
]


def visits_csv(now: dt.datetime, tz: ZoneInfo) -> str:
    local = now.astimezone(tz)
    today = local.date()
    rows = ["visit_ref,resident_reference,planned_start,planned_end,workers,time_critical"]
    for i, (resident, start, minutes, workers, critical) in enumerate(ROTA, 1):
        t = dt.datetime.combine(today, dt.time.fromisoformat(start))
        rows.append(f"D{today:%Y%m%d}-{i:02d},{resident},{t:%Y-%m-%d %H:%M},"
                    f"{t + dt.timedelta(minutes=minutes):%Y-%m-%d %H:%M},{workers},{critical}")
    quarter = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0, tzinfo=None)
    rows.append(f"D{today:%Y%m%d}-NOW,R001,{quarter:%Y-%m-%d %H:%M},"
                f"{quarter + dt.timedelta(minutes=45):%Y-%m-%d %H:%M},1001,yes")
    return "\n".join(rows) + "\n"


def load_demo(factory: sessionmaker[Session], ctx: ImportContext, now: dt.datetime | None = None,
              out_dir: Path | None = None) -> list[ImportReport]:
    now = now or dt.datetime.now(dt.UTC)
    files = {"residents": RESIDENTS, "workers": WORKERS, "packages": PACKAGES, "contacts": CONTACTS,
             "visits": visits_csv(now, ctx.tz)}
    reports = []
    for kind, text in files.items():
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f"demo-{kind}.csv").write_text(text, encoding="utf-8")
        reports.append(import_csv(factory, kind, text, ctx))
    return reports
