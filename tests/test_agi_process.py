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


_FAIL_WRITES = [
    f"CREATE TRIGGER fault_{table}_{op} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    for table in ("attendances", "call_records") for op in ("INSERT", "UPDATE")
]


def test_process_agi_with_failing_writes_journals_confirms_and_replays_once(sqlite_template, tmp_path):
    """Database writes fail: the script journals (fsync) and confirms; the replay records it once.

    SQLite only: the fault is injected with triggers (PostgreSQL outages: test_fault_database.py)."""
    import shutil
    import subprocess

    from sqlalchemy import text

    from tests.faults import settings_for

    shutil.copyfile(sqlite_template, tmp_path / "carecall.db")
    settings = settings_for(f"sqlite:///{tmp_path / 'carecall.db'}", tmp_path)
    factory = factory_for(settings)
    import_world(settings, factory)
    now = dt.datetime.now(dt.UTC)
    text_csv = "\n".join([VISITS_HEADER, visit_row("V1", "R002", now - dt.timedelta(minutes=5), 30, "1002",
                                                   settings=settings)]) + "\n"
    assert import_csv(factory, "visits", text_csv, context_for(settings)).ok
    config = tmp_path / "agi.toml"
    config.write_text(f'[carecall]\nsecret_file = "{settings.secret_file}"\ndata_dir = "{settings.data_dir}"\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT), CARECALL_DB=settings.db_url, CARECALL_CONFIG=str(config))
    with factory.kw["bind"].begin() as conn:
        for sql in _FAIL_WRITES:
            conn.execute(text(sql))
    result = run(env, callerid="020 8698 9922", digits=["1002", "2345"], uniqueid="proc.down")
    assert result.completed and result.said_time() is not None, result
    assert attendances(factory) == [] and calls(factory) == []
    with factory.kw["bind"].begin() as conn:
        for sql in _FAIL_WRITES:
            conn.execute(text("DROP TRIGGER " + sql.split()[2]))
    for _ in range(2):  # replayed once, whatever the number of replays
        replay = subprocess.run([sys.executable, "-m", "carecall", "--config", str(config), "journal", "replay"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr
    [att] = attendances(factory)
    assert att.arrival_uniqueid == "proc.down" and int(att.arrival_at.timestamp()) == result.said_time()
    assert [c.outcome for c in calls(factory)] == ["arrival"]


class _PipeAGI:
    """What ``run_call`` needs of pyst2's ``AGI``, wired to the sans-IO fake Asterisk."""

    def __init__(self, call: CallScript) -> None:
        from agi.simulator import FakeAsterisk

        self.fake = FakeAsterisk(call)
        lines = self.fake.environment().decode().splitlines()
        self.env = dict(line.split(": ", 1) for line in lines if ": " in line)
        self._replies: list[str] = []
        self.stdin = self

    def readline(self) -> str:
        return self._replies.pop(0) if self._replies else ""

    def send_command(self, command: str) -> None:
        reply = self.fake.receive_data((command + "\n").encode()).decode()
        self._replies.extend(line + "\n" for line in reply.splitlines())


def test_process_agi_pin_guessing_delay_blocks_this_call_only_and_is_not_a_database_error(world, settings):
    from agi.process_agi import run_call
    from ivr.callstore import CallStore, MatchWindows
    from ivr.db import make_engine
    from ivr.dialog import DialogConfig
    from ivr.pins import PinHasher, load_or_create_key

    factory, _env = world
    store = CallStore(make_engine(settings.db_url), PinHasher(load_or_create_key(settings.secret_path)),
                      MatchWindows.from_settings(settings))
    config = DialogConfig.from_settings(settings)
    slept: list[float] = []
    wrong = ["1001", "0000"] * 3
    # A whole call of typos is free (lockout_free_failures = 3) …
    assert run_call(_PipeAGI(CallScript(callerid="020 8698 9911", digits=wrong, uniqueid="g.1")), store, config,
                    sleep=slept.append) == "failed_login"
    assert slept == []
    # … after that each further wrong PIN from the line waits, and the call goes on after the wait.
    outcome = run_call(_PipeAGI(CallScript(callerid="020 8698 9911", digits=wrong, uniqueid="g.2")), store, config,
                       sleep=slept.append)
    assert outcome == "failed_login" and slept and slept[0] > 0
    assert all(c.outcome == "failed_login" for c in calls(factory))
