"""``carecall run`` as a child process, as a site runs it (for tests that signal it)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.asterisk_rig import DEFAULT_TIMEOUT, free_port, wait

ROOT = Path(__file__).resolve().parent.parent


class CarecallProcess:
    """``CarecallProcess(settings, workdir, agi_drain_seconds=…)``: its own AGI and web ports."""

    def __init__(self, settings: Any, workdir: Path, **carecall: Any) -> None:
        self.agi_port = free_port()
        self.web_port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "carecall.toml"
        # agi_effect_timeout: a fresh server's first effect waits for its worker process to
        # start (2-3 s on a loaded test box), past the 2.5 s default that journals the call.
        values = {"db_url": settings.db_url, "secret_file": str(settings.secret_path),
                  "data_dir": str(self.dir / "var"), "agi_port": self.agi_port, "web_port": self.web_port,
                  "timezone": settings.timezone, "agi_effect_timeout": 30.0, **carecall}
        lines = ["[carecall]"] + [f"{k} = {v!r}" if isinstance(v, int | float) else f'{k} = "{v}"'
                                  for k, v in values.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.log = self.dir / "carecall.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> CarecallProcess:
        out = open(self.log, "wb")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen([sys.executable, "-m", "carecall", "--config", str(self.config), "run"],
                                     cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        # "carecall running" is logged once the reactor runs: from then on SIGTERM is graceful.
        proc = self.proc
        wait(lambda: "carecall running" in self.text() or proc.poll() is not None, timeout, "carecall run to start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"carecall run exited {self.proc.returncode}:\n{self.text()}")
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait(10)
