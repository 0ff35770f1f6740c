"""The ``carecall`` command as an office user runs it: import files, see every bad row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from ivr.models import Visit
from tests.helpers import DATA, factory_for

ROOT = Path(__file__).resolve().parent.parent


def carecall(settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CARECALL_SECRET_FILE=str(settings.secret_path),
               CARECALL_DATA_DIR=settings.data_dir)
    env.pop("CARECALL_DB", None)
    return subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=120, cwd=settings.data_dir
                          if os.path.isdir(settings.data_dir) else None)


def test_import_commands_load_a_world_and_report_counts(settings):
    for kind in ("residents", "workers", "packages"):
        result = carecall(settings, "import", kind, str(DATA / f"{kind}.csv"))
        assert result.returncode == 0, result.stderr
        assert "4 created" in result.stdout
    visits = ("visit_ref,resident_reference,planned_start,planned_end,workers,time_critical\n"
              "V1,R001,2026-06-01 09:00,2026-06-01 09:30,1001,yes\n")
    result = carecall(settings, "import", "visits", "-", stdin=visits)
    assert result.returncode == 0, result.stderr
    with factory_for(settings)() as s:
        assert s.scalar(select(func.count()).select_from(Visit)) == 1


def test_bad_visits_file_exits_non_zero_with_line_numbers_and_imports_nothing(settings, tmp_path):
    for kind in ("residents", "workers"):
        assert carecall(settings, "import", kind, str(DATA / f"{kind}.csv")).returncode == 0
    bad = tmp_path / "visits.csv"
    bad.write_text(
        "visit_ref,resident_reference,planned_start,planned_end,workers,time_critical\n"
        "V1,R001,2026-06-01 09:00,2026-06-01 09:30,1001,yes\n"
        "V2,R404,2026-06-01 09:00,2026-06-01 09:30,1001,yes\n"
        "V3,R001,2026-06-01 09:00,2026-06-01 08:30,1001,yes\n"
        "V4,R001,01/06/2026 09:00,2026-06-01 09:30,1001;1002;1003,maybe\n"
    )
    result = carecall(settings, "import", "visits", str(bad))
    assert result.returncode == 1
    assert "line 3: resident_reference 'R404' is not a known resident" in result.stderr
    assert "line 4: planned_end must be after planned_start" in result.stderr
    assert "line 5: expected YYYY-MM-DD HH:MM" in result.stderr
    assert "nothing imported, 3 bad row(s)" in result.stderr
    with factory_for(settings)() as s:
        assert s.scalar(select(func.count()).select_from(Visit)) == 0


def test_missing_file_is_a_clear_error(settings):
    result = carecall(settings, "import", "workers", "/nonexistent/workers.csv")
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_demo_loads_todays_visits(settings):
    result = carecall(settings, "demo")
    assert result.returncode == 0, result.stderr
    assert "visits: 9 created" in result.stdout
