"""The KPI return's outputs: HTML/CSV/JSON, the CLI, the anonymised export, alert figures, config."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from carecall.config import ConfigError, Settings, load_settings
from ivr.models import Resident, UTCDateTime
from reports.alerts import alert_figures, alert_model
from reports.config import KpiConfig
from reports.kpi import compute, make_scope
from reports.render import headlines, to_csv, to_html, to_json
from tests.helpers import factory_for
from tests.test_kpi import FROM, NOW, TO, World, build_month

ROOT = Path(__file__).resolve().parent.parent

PERSONAL = [
    # resident names, addresses, postcodes; worker names and mobiles (E.164 and national)
    "Alice Brown", "Bob Green", "Cara White", "Dan Black", "Secret Street", "SE6 9ZZ",
    "Wendy Walker", "Sam Smith", "Priya Patel", "Tom Taylor", "Uma Upton",
    "+447911123001", "07911123001", "7911123", "123005",
]


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["CARECALL_SECRET_FILE"] = settings.secret_file
    env["CARECALL_DATA_DIR"] = settings.data_dir
    env.pop("CARECALL_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, *args],
                          capture_output=True, text=True, timeout=120, cwd=settings.data_dir, env=env)


@pytest.fixture
def month_settings(settings: Settings) -> Settings:
    build_month(factory_for(settings))
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return settings


def test_html_shows_each_figure_against_target_with_chart_and_links_to_its_visits(month_settings: Settings) -> None:
    report = compute(factory_for(month_settings), month_settings, FROM, TO, now=NOW)
    html = to_html(report)
    for h in headlines(report):
        # each figure row links to an anchor that exists and lists the rows behind it
        assert f'id="fig-{h.key}"' in html and f'href="#rows-{h.key}"' in html and f'id="rows-{h.key}"' in html
    row = re.search(r'<tr id="fig-compliance">(.*?)</tr>', html, re.S)
    assert row is not None
    assert "35 of 39 (89.7%)" in row.group(1) and "at least 90%" in row.group(1)
    assert "not met" in row.group(1) and "<svg" in row.group(1)
    # 35/39 of a 160 px bar = 144 px filled; the 90% target line at 144 px.
    assert 'width="144" height="10" fill="#c62828"' in row.group(1) and 'x1="144"' in row.group(1)
    late = html.split('id="rows-late"', 1)[1].split("<h3", 1)[0]
    assert "RB-TC2" in late and "RA-LATE31" in late and "RA-LATE30" not in late
    assert "2026-03-07 08:00" in late  # local planned start


def test_html_escapes_what_it_shows(settings: Settings) -> None:
    factory = factory_for(settings)
    with factory() as s, s.begin():
        w = World(s)
        w.resident("<script>alert(1)</script>", "Fund & Co", "T")
        w.worker("3001", "T", "X", "+447000000001")
        w.visit("<b>V1</b>", "<script>alert(1)</script>", "2026-03-02 09:00", 30, [("3001", 40, 30, "manual", "phone")])
    html = to_html(compute(factory, settings, FROM, TO, now=NOW))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<b>V1</b>" not in html and "&lt;b&gt;V1&lt;/b&gt;" in html


def test_csv_and_json_carry_the_same_figures(month_settings: Settings) -> None:
    report = compute(factory_for(month_settings), month_settings, FROM, TO, now=NOW)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    by = {(r["figure"], r["scope"]): r for r in rows}
    assert by[("compliance", "overall")]["numerator"] == "35" and by[("compliance", "overall")]["met"] == "no"
    assert by[("worker_compliance", "worker:2001")]["value"] == "85.0%"
    assert by[("worker_compliance", "worker:2001")]["met"] == "yes"
    assert by[("punctuality_time_critical", "overall")]["value"] == "50.0%"
    assert by[("consistency_95", "overall:band:<3 hrs:max 1 workers")]["met"] == "no"
    assert by[("missed", "funder:Lewisham")]["value"] == "1"
    data = json.loads(to_json(report))
    assert data["compliance"]["share"]["overall"]["percent"] == "89.7"
    assert data["late"]["count"] == 2
    assert [r["visit_ref"] for r in data["missed"]["rows"]] == ["RB-TC4"]
    assert data["hours"]["overall"]["delivered"] == "32.35"


def test_cli_writes_each_format_and_filters_by_funder(month_settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "kpi.json"
    done = run_cli(month_settings, "kpi", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "json",
                   "--funder", "Private", "--out", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["funder"] == "Private"
    assert data["visits_due"] == 3 and data["short_delivered"]["count"] == 1
    html = run_cli(month_settings, "kpi", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "html")
    assert html.returncode == 0 and "<h1>Contract monitoring return</h1>" in html.stdout
    # Run after the month: RA-EDGE-END is now due too -> 38.
    assert "38 visits due" in html.stdout
    csv_run = run_cli(month_settings, "kpi", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "csv")
    assert csv_run.returncode == 0 and csv_run.stdout.startswith("figure,scope,numerator")


def test_cli_refuses_bad_dates_with_a_clear_message(month_settings: Settings) -> None:
    bad = run_cli(month_settings, "kpi", "--from", "2026-03-31", "--to", "2026-03-01")
    assert bad.returncode == 2 and "--to 2026-03-01 is before --from 2026-03-31" in bad.stderr
    bad = run_cli(month_settings, "kpi", "--from", "31/03/2026", "--to", "2026-03-01")
    assert bad.returncode == 2 and "expected a date YYYY-MM-DD" in bad.stderr


def test_anonymised_export_has_no_names_addresses_phones_and_stable_pseudonyms(
        month_settings: Settings, tmp_path: Path) -> None:
    march, feb = tmp_path / "march.csv", tmp_path / "feb.csv"
    for out, a, b in ((march, "2026-03-01", "2026-03-31"), (feb, "2026-02-01", "2026-02-28")):
        done = run_cli(month_settings, "kpi", "export", "--from", a, "--to", b, "--out", str(out))
        assert done.returncode == 0, done.stderr
    text = march.read_text()
    for needle in [*PERSONAL, "RA-W1", "RB-TC", "PO-A", "2001", "2002"]:
        # As a token, not a substring: a pseudonym is 16 random hex digits under the site's
        # key, and one once read "R-d2002c5b31839e94" (about 1 run in 25 would).
        assert not re.search(rf"(?<![0-9A-Za-z]){re.escape(needle)}(?![0-9A-Za-z])", text), needle
    rows = list(csv.DictReader(io.StringIO(text)))
    # RA 24 attendances (EDGE-END included), RB 4 + TC1-3 + TC4 as a "missed" row + 1 unscheduled,
    # RC 3, RD 2 + 2 + 1 -> 41; the cancelled and out-of-range visits are not there.
    assert len(rows) == 41
    assert sum(r["kind"] == "missed" for r in rows) == 1
    assert {r["resident"][:2] for r in rows} == {"R-"} and all(re.fullmatch(r"R-[0-9a-f]{16}", r["resident"])
                                                          for r in rows)
    # The same resident has the same pseudonym in February's export (RA-OUT-BEFORE) as in March.
    feb_rows = list(csv.DictReader(io.StringIO(feb.read_text())))
    assert len(feb_rows) == 1
    assert feb_rows[0]["resident"] in {r["resident"] for r in rows}
    assert feb_rows[0]["worker"] in {r["worker"] for r in rows}  # 2004 also worked RC/RD in March
    # Re-running gives the same file; another site key gives other pseudonyms.
    again = tmp_path / "again.csv"
    run_cli(month_settings, "kpi", "export", "--from", "2026-03-01", "--to", "2026-03-31", "--out", str(again))
    assert again.read_text() == text
    other = load_settings(None, db_url=month_settings.db_url, environ={},
                          secret_file=str(tmp_path / "other.key"), data_dir=month_settings.data_dir)
    other_out = tmp_path / "other.csv"
    done = run_cli(other, "kpi", "export", "--from", "2026-03-01", "--to", "2026-03-31", "--out", str(other_out))
    assert done.returncode == 0, done.stderr
    other_rows = list(csv.DictReader(io.StringIO(other_out.read_text())))
    assert {r["resident"] for r in other_rows}.isdisjoint({r["resident"] for r in rows})


class AlertBase(DeclarativeBase):
    pass


class StandInAlert(AlertBase):
    """The columns the figures read from scheduler.models.Alert, in a table of the test's own."""

    __tablename__ = "kpi_test_alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    resident_id: Mapped[int] = mapped_column(Integer)
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))


def test_alert_counts_and_nearest_rank_time_to_acknowledge(settings: Settings) -> None:
    factory = factory_for(settings)
    build_month(factory)
    with factory() as s, s.begin():
        AlertBase.metadata.create_all(s.connection())
        ra = s.query(Resident).filter_by(reference="RA").one()
        rc = s.query(Resident).filter_by(reference="RC").one()
        t0 = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)

        def add(kind: str, ack: int | None, status: str, resident: Resident = ra, at: dt.datetime = t0) -> None:
            s.add(StandInAlert(kind=kind, resident_id=resident.id, raised_at=at, status=status,
                               acknowledged_at=None if ack is None else at + dt.timedelta(seconds=ack)))

        for secs in (240, 60, 180, 120):
            add("late", secs, "resolved")
        add("no_reply", 30, "resolved")
        add("no_reply", 600, "resolved")
        add("no_reply", 900, "escalated", rc)
        add("no_reply", None, "open")
        add("late", 5, "resolved", at=dt.datetime(2026, 2, 27, 9, 0, tzinfo=dt.UTC))  # before the range
    cfg = KpiConfig()
    with factory() as s:
        a = alert_figures(s, make_scope(settings, FROM, TO, None, None, NOW), cfg, model=StandInAlert)
        private = alert_figures(s, make_scope(settings, FROM, TO, "Private", None, NOW), cfg, model=StandInAlert)
    kinds = {k.kind: (k.raised, k.acknowledged, k.ack_median_seconds, k.ack_p90_seconds) for k in a.by_kind}
    # late [60,120,180,240]: median rank ceil(2)=2 -> 120, p90 rank ceil(3.6)=4 -> 240.
    # no_reply acked [30,600,900]: median rank 2 -> 600, p90 rank ceil(2.7)=3 -> 900.
    assert kinds == {"late": (4, 4, 120, 240), "no_reply": (4, 3, 600, 900)}
    # all 7 acknowledged [30,60,120,180,240,600,900]: median rank ceil(3.5)=4 -> 180; p90 rank ceil(6.3)=7 -> 900.
    assert (a.raised, a.acknowledged, a.ack_median_seconds, a.ack_p90_seconds) == (8, 7, 180, 900)
    assert a.no_reply_by_status == {"resolved": 2, "escalated": 1, "open": 1}
    assert (private.raised, private.no_reply_by_status) == (1, {"escalated": 1})


def test_alert_figures_follow_the_scheduler_table_when_it_exists(month_settings: Settings) -> None:
    report = compute(factory_for(month_settings), month_settings, FROM, TO, now=NOW)
    if alert_model() is None:
        assert report.alerts.available is False and "scheduler.models.Alert" in report.alerts.reason
    else:
        assert report.alerts.available is True


def test_consistency_95_percent_requirement_met_at_exactly_19_of_20(settings: Settings) -> None:
    factory = factory_for(settings)
    with factory() as s, s.begin():
        w = World(s)
        for n in range(1, 7):
            w.worker(f"40{n:02d}", "T", f"Worker {n}", f"+4470000000{n:02d}")
        for i in range(20):
            ref = f"P{i:02d}"
            w.resident(ref, "Lewisham", "T")
            w.package(ref, f"PO-{ref}", "Lewisham", "9.99", "2026-01-05")  # 9.99 h: band 3-10 (max 3 / max 5)
            n_workers = 4 if i == 0 else 3
            for k in range(n_workers):
                w.visit(f"{ref}-{k}", ref, f"2026-03-{k + 2:02d} 09:00", 60,
                        [(f"40{k + 1:02d}", 0, 60, "phone", "phone")])
    bands = compute(factory, settings, FROM, TO, now=NOW).consistency.bands
    band = next(b for b in bands if b.band.label == "3-10 hrs")
    # 19 of 20 packages with <= 3 workers: 95% exactly meets the 95% target; all 20 have <= 5.
    assert (band.primary.numerator, band.primary.denominator, band.primary.met) == (19, 20, True)
    assert (band.secondary.numerator, band.secondary.met) == (20, True)
    assert band.primary.percent == Decimal("95.0")


@pytest.mark.parametrize("raw, message", [
    ({"punctuality_window_minutes": "30"}, "whole number"),
    ({"compliance_target_percent": 101}, "at most 100"),
    ({"puntuality_window_minutes": 30}, "unknown setting [kpi]"),
])
def test_kpi_config_refuses_bad_values(tmp_path: Path, raw: dict[str, object], message: str) -> None:
    settings = Settings(raw={"kpi": raw})
    with pytest.raises(ConfigError, match=re.escape(message)):
        KpiConfig.from_settings(settings)


def test_configured_punctuality_window_changes_the_figure(settings: Settings, tmp_path: Path) -> None:
    factory = factory_for(settings)
    build_month(factory)
    wider = Settings(db_url=settings.db_url, raw={"kpi": {"punctuality_window_minutes": 31}})
    r = compute(factory, wider, FROM, TO, now=NOW)
    # With +-31 min, RA-LATE31 (+31) is punctual: 33 of 33 other visits; time-critical unchanged (15).
    assert (r.punctuality.other.overall.numerator, r.punctuality.time_critical.overall.numerator) == (33, 2)
    assert r.late.count == 1
