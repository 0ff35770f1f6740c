"""Helpers for the fault tests (issue 7): a private PostgreSQL the tests may stop, a world, servers.

The destructive tests get their *own* cluster (not the suite's ``pg_server``), so
stopping it never disturbs another test. ``carecall run`` subprocesses are started
with ``[sys.executable, "-m", "carecall", ...]`` and killed by pid only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from agi.simulator import CallScript, FakeAsterisk, SimResult
from carecall.config import Settings, load_settings
from ivr.db import upgrade
from tests.callhelpers import T0
from tests.conftest import SUITE_EFFECT_TIMEOUT
from tests.helpers import VISITS_HEADER, factory_for, import_world, visit_row
from tests.pg import PgCluster, find_bindir, free_port

ROOT = Path(__file__).resolve().parent.parent


class OwnCluster:
    """A private PostgreSQL for tests that stop it; databases created per test."""

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.cluster = PgCluster(bindir)
        self.cluster.init()
        self.cluster.start()
        self._n = 0

    def new_database(self) -> str:
        self.ensure_running()
        self._n += 1
        name = f"fault_{os.getpid()}_{self._n}"
        engine = create_engine(self.cluster.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
        finally:
            engine.dispose()
        url = self.cluster.url(name)
        upgrade(url)
        return url

    def stop(self) -> None:
        self.cluster.stop("fast")

    def start(self) -> None:
        self.cluster.start()

    def ensure_running(self) -> None:
        if not self.cluster.is_running():
            self.cluster.start()

    def destroy(self) -> None:
        self.cluster.destroy()


def settings_for(db_url: str, tmp: Path, **overrides: Any) -> Settings:
    (tmp / "empty.toml").write_text("")
    values: dict[str, Any] = {"secret_file": str(tmp / "carecall.key"), "data_dir": str(tmp / "var"),
                              "journal_retry_seconds": 3600.0, "agi_effect_timeout": SUITE_EFFECT_TIMEOUT}
    values.update(overrides)
    return load_settings(tmp / "empty.toml", db_url=db_url, environ={}, **values)


def world(settings: Settings, *rows: tuple[Any, ...]) -> Any:
    factory = factory_for(settings)
    visits = "\n".join([VISITS_HEADER, *(visit_row(*r, settings=settings) for r in rows)]) + "\n"
    import_world(settings, factory, visits if rows else None)
    return factory


def default_visits() -> list[tuple[Any, ...]]:
    return [("V1", "R001", T0, 60, "1001"), ("V2", "R002", T0, 60, "1002"), ("V3", "R003", T0, 60, "1003")]


# ---------------------------------------------------------------- carecall run as a subprocess


@dataclasses.dataclass
class ServerProcess:
    """``carecall run`` in a child process, on its own ports and data directory."""

    proc: subprocess.Popen[bytes]
    agi_port: int
    web_port: int
    log_path: Path

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the server *takes* calls, not only listens: the port is bound at start but
        accepts once the effect workers are ready (agi/service.py, GatedListener). A probe
        that connects and closes its side at once is answered by the server's close only
        after it has accepted it; before, it waits in the listen backlog."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.agi_port),
                                                                        timeout=0.5) as probe:
                probe.shutdown(socket.SHUT_WR)
                probe.settimeout(max(0.1, deadline - time.monotonic()))
                if probe.recv(1) == b"":
                    return
            time.sleep(0.05)
        raise TimeoutError(f"server not taking calls after {timeout} s: {self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the crash the tests inject)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_process(tmp: Path, db_url: str, name: str = "server", *, data_dir: Path | None = None,
                  journal_retry: float = 0.5, log_level: str = "info", extra_toml: str = "") -> ServerProcess:
    agi_port, web_port = free_port(), free_port()
    data_dir = data_dir or tmp / "var"
    config = tmp / f"{name}.toml"
    config.write_text(
        "[carecall]\n"
        f'agi_port = {agi_port}\nweb_port = {web_port}\nbase_url = "http://127.0.0.1:{web_port}"\n'
        f'secret_file = "{tmp / "carecall.key"}"\ndata_dir = "{data_dir}"\n'
        f"journal_retry_seconds = {journal_retry}\n"
        + ("" if "agi_effect_timeout" in extra_toml else f"agi_effect_timeout = {SUITE_EFFECT_TIMEOUT}\n")
        + extra_toml
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("CARECALL_DB", None)
    log_path = tmp / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "carecall", "--db", db_url, "--config", str(config), "run", "--log-level",
             log_level],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(tmp),
        )
    server = ServerProcess(proc, agi_port, web_port, log_path)
    try:
        server.wait_ready()
    except BaseException:
        server.kill()
        raise
    return server


@contextlib.contextmanager
def running(tmp: Path, db_url: str, name: str = "server", **kwargs: Any) -> Iterator[ServerProcess]:
    server = start_process(tmp, db_url, name, **kwargs)
    try:
        yield server
    finally:
        server.kill()


# ---------------------------------------------------------------- a blocking Asterisk that can stop anywhere


def ring_until(port: int, call: CallScript, stop_at: str | None = None, timeout: float = 20.0,
               ) -> tuple[SimResult, socket.socket | None]:
    """Play Asterisk until the server sends a command starting with ``stop_at``; do not answer it.

    Returns the transcript so far and the still-open socket (the caller closes it), or
    the finished call and ``None`` when ``stop_at`` never came.
    """
    fake = FakeAsterisk(call)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(fake.environment())
    buffer = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            data = b""
        if not data:
            sock.close()
            return fake.result(server_closed=True), None
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if stop_at is not None and line.decode().startswith(stop_at):
                fake.transcript.append((line.decode(), ""))
                return fake.result(server_closed=False), sock
            out = fake.receive_data(line + b"\n")
            if out:
                sock.sendall(out)
    sock.close()
    return fake.result(server_closed=False, error="timeout"), None
