"""The pyst2 process-AGI script as a subprocess, with a scripted Asterisk on its stdin/stdout."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import pytest

from agi.simulator import CallScript, simulate_process
from ivr.importer import import_csv
from tests.callhelpers import attendances, calls
from tests.helpers import VISITS_HEADER, context_for, factory_for, import_world, visit_row

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def world(settings, tmp_path):
    factory = factory_for(settings)
    import_world(settings, factory)
    now = dt.datetime.now(dt.UTC)
    text = "\n".join([VISITS_HEADER, visit_row("V1", "R001", now - dt.timedelta(minutes=5), 30, "1001",
                                               settings=settings)]) + "\n"
    assert import_csv(factory, "visits", text, context_for(settings)).ok
    config = tmp_path / "agi.toml"
    config.write_text(f'[carecall]\nsecret_file = "{settings.secret_file}"\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT), CARECALL_DB=settings.db_url, CARECALL_CONFIG=str(config))
    return factory, env


def run(env, **kwargs):
    return simulate_process([sys.executable, "-m", "agi.process_agi"], CallScript(**kwargs), env=env, timeout=60)


def test_process_agi_script_logs_arrival_then_departure_like_the_server(world):
    factory, env = world
    result = run(env, callerid="020 8698 9911", digits=["1001", "1234"])
    assert result.completed and result.exit_status == 0, result
    commands = [c for c, _ in result.transcript]
    assert commands[:3] == ["ANSWER", "GET DATA agent-user 6000 8", "GET DATA agent-pass 6000 4"]
    assert commands[-1] == "HANGUP" and 'STREAM FILE agent-loginok ""' in commands
    [att] = attendances(factory)
    assert att.visit_id is not None and att.arrival_verified and att.arrival_uniqueid == result.uniqueid
    result = run(env, callerid="020 8698 9911", digits=["1001", "1234"])
    assert 'STREAM FILE agent-loggedoff ""' in [c for c, _ in result.transcript]
    assert [c.outcome for c in calls(factory)] == ["arrival", "departure"]


def test_process_agi_caller_hangup_records_the_stage_and_exits_cleanly(world):
    factory, env = world
    result = run(env, callerid="020 8698 9911", digits=["1001"], hangup_after=3)
    assert result.exit_status == 0 and not result.server_hung_up
    assert attendances(factory) == []
    [rec] = calls(factory)
    assert (rec.outcome, rec.stage) == ("hangup", "pin")


def test_process_agi_unknown_argument_hangs_up_with_an_error_record(world):
    factory, env = world
    result = run(env, callerid="020 8698 9911", script="payroll")
    assert result.exit_status == 0 and [c for c, _ in result.transcript] == ["HANGUP"]
    [rec] = calls(factory)
    assert rec.outcome == "error" and "payroll" in rec.detail
