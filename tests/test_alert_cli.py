"""``carecall alerts check --now`` runs one pass at a local time and prints what it raised."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.test_alerts_world import stored, world


def _cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CARECALL_SECRET_FILE=settings.secret_file)
    return subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_alerts_check_at_a_local_time_raises_once_and_ack_refuses_twice(settings):
    factory = world(settings, (("V1", "R001", "10:00", 45, "1001", "no"),))
    out = _cli(settings, "alerts", "check", "--now", "2026-03-10 10:30")
    assert out.returncode == 0, out.stderr
    assert "late" in out.stdout and "1 raised, 0 settled at 2026-03-10 10:30" in out.stdout
    again = _cli(settings, "alerts", "check", "--now", "2026-03-10 10:30")
    assert "0 raised" in again.stdout and len(stored(factory)) == 1
    alert_id = str(stored(factory)[0].id)
    assert _cli(settings, "alerts", "ack", alert_id, "--by", "jo").returncode == 0
    refused = _cli(settings, "alerts", "ack", alert_id, "--by", "sam")
    assert refused.returncode == 1 and "already acknowledged by jo" in refused.stderr
    bad = _cli(settings, "alerts", "check", "--now", "10:30 yesterday")
    assert bad.returncode == 2 and "--now" in bad.stderr
