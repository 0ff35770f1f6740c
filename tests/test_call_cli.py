"""``carecall simulate-call`` end to end against ``carecall run`` in a subprocess."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ivr.importer import import_csv
from tests.callhelpers import attendances, calls
from tests.helpers import VISITS_HEADER, context_for, factory_for, import_world, visit_row

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def carecall(*args: str, config: Path, db: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "carecall", "--db", db, "--config", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not listen in time")


def test_simulate_call_rings_a_running_server_and_prints_the_dialog(settings, tmp_path):
    factory = factory_for(settings)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    import_world(settings, factory)
    report = import_csv(factory, "visits", "\n".join([
        VISITS_HEADER, visit_row("V1", "R001", now - dt.timedelta(minutes=5), 30, "1001", settings=settings)
    ]) + "\n", context_for(settings))
    assert report.ok
    agi_port, web_port = free_port(), free_port()
    config = tmp_path / "carecall.toml"
    config.write_text(
        "[carecall]\n"
        f'agi_port = {agi_port}\nweb_port = {web_port}\nsecret_file = "{settings.secret_file}"\n'
        f'data_dir = "{settings.data_dir}"\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "carecall", "--db", settings.db_url, "--config", str(config), "run"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    try:
        wait_for_port(agi_port, server)
        out = carecall("simulate-call", "--from", "020 8698 9911", "--digits", "1001,1234",
                       "--port", str(agi_port), "--uniqueid", "cli-a", config=config, db=settings.db_url)
        assert out.returncode == 0, out.stderr
        assert "> GET DATA agent-user 6000 8" in out.stdout and "< 200 result=1001" in out.stdout
        assert "> HANGUP" in out.stdout and "server closed the connection" in out.stdout
        assert "outcome: arrival logged at " in out.stdout
        [att] = attendances(factory)
        assert att.visit_id is not None and att.arrival_verified
        out = carecall("simulate-call", "--from", "020 8698 9911", "--digits", "1001,1234",
                       "--port", str(agi_port), "--uniqueid", "cli-b", config=config, db=settings.db_url)
        assert "outcome: departure logged at " in out.stdout
        assert [c.outcome for c in calls(factory)] == ["arrival", "departure"]
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    text = (tmp_path / "server.log").read_text()
    assert "outcome=arrival" in text and "*******911" in text
    assert "1234" not in text.replace(str(agi_port), "")  # the PIN never reaches the log


def test_simulate_call_fails_clearly_when_nothing_listens(settings, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("")
    out = carecall("simulate-call", "--from", "020 8698 9911", "--digits", "1001,1234",
                   "--port", str(free_port()), config=config, db=settings.db_url)
    assert out.returncode == 2 and "cannot connect to FastAGI server" in out.stderr
