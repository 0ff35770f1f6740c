"""The process-AGI script (``carecall-agi``) run by a real Asterisk, installed as the admin
README says (a link in Asterisk's agi-bin) and reached by the documented switch
``CARECALL_PROCESS_AGI=yes`` from the shipped ``[carecall-checkin]``."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import pytest

from ivr.models import CallOutcome
from tests.callhelpers import attendances, calls
from tests.helpers import add_visits, factory_for, import_world

pytestmark = pytest.mark.asterisk


def installed_script() -> Path:
    """The console script pip made for this interpreter (what `pip install` gives a site)."""
    found = Path(sys.executable).with_name("carecall-agi")
    if not found.exists():
        found = Path(shutil.which("carecall-agi") or "")
    assert found.is_file(), "carecall-agi is not installed: pip install -e ."
    return found


@pytest.fixture
def process_agi(asterisk_rig, settings, tmp_path):
    """carecall-agi linked into the rig's agi-bin; its config named in Asterisk's environment."""
    rig = asterisk_rig
    link = rig.agi_dir / "carecall-agi"
    link.unlink(missing_ok=True)
    link.symlink_to(installed_script())
    config = tmp_path / "carecall.toml"
    config.write_text(f'[carecall]\ndb_url = "{settings.db_url}"\nsecret_file = "{settings.secret_path}"\n'
                      f'data_dir = "{settings.data_dir}"\n')
    # What `Environment=CARECALL_CONFIG=…` in asterisk.service does for a site.
    rig.rx(f"dialplan set global ENV(CARECALL_CONFIG) {config}")
    rig.rx("dialplan set global CARECALL_PROCESS_AGI yes")
    yield rig
    rig.rx("dialplan set global CARECALL_PROCESS_AGI no")
    link.unlink(missing_ok=True)


def test_process_agi_checkin_through_the_documented_switch(settings, process_agi):
    rig = process_agi
    world = factory_for(settings)
    import_world(settings, world)
    now = dt.datetime.now(dt.UTC)
    add_visits(settings, world, ("V1", "R001", now - dt.timedelta(minutes=5), 30, "1001"))
    offset = rig.log_offset()
    call = rig.call("+448001234567", "02086989911")
    call.wait_agi_start("GET DATA agent-user", timeout=60)  # a Python process starts per call: allow for it
    call.dtmf("1001#")
    call.wait_agi_start("GET DATA agent-pass")
    call.dtmf("1234")
    assert call.var("AGISTATUS", timeout=60) == "HANGUP"
    log = rig.log_text(offset)
    assert "Goto (carecall-checkin-process,s,1)" in log
    assert "AGI Script carecall-agi completed, returning 4" in log
    [att] = attendances(world)
    assert att.arrival_uniqueid == call.uniqueid and att.arrival_verified
    [rec] = calls(world)
    assert rec.outcome == CallOutcome.ARRIVAL


def test_without_the_script_installed_the_caller_hears_something_is_wrong(asterisk_rig):
    rig = asterisk_rig
    (rig.agi_dir / "carecall-agi").unlink(missing_ok=True)
    rig.rx("dialplan set global CARECALL_PROCESS_AGI yes")
    try:
        offset = rig.log_offset()
        call = rig.call("08001234567", "02086989911")
        assert call.var("AGISTATUS") == "NOTFOUND"
        log = rig.log_text(offset)
        assert "carecall-agi" in log and "Playing 'im-sorry" in log and "Playing 'tt-somethingwrong" in log
    finally:
        rig.rx("dialplan set global CARECALL_PROCESS_AGI no")
