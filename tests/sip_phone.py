"""A SIP test phone: pjsua (from the Asterisk bundle) driven line by line from Python.

The bundle's ``share/sip-ring.sh`` sends its digits on a timer after the answer; a test
must key only once the ``GET DATA`` that reads them is running (Asterisk discards DTMF
between AGI commands), so this drives the same pjsua with the same options but sends
each group of digits when the test says. pjsua's output is line-buffered (``stdbuf
-oL``), else its state changes arrive after the call has ended.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from pathlib import Path

from tests.asterisk_rig import DEFAULT_TIMEOUT, free_udp_port, wait


class SipPhone:
    """One outgoing call: ``SipPhone(pjsua, "127.0.0.1:5070", caller, dialled, log)``."""

    def __init__(self, pjsua: Path, target: str, caller: str, dialled: str, log: Path) -> None:
        self.log_path = log
        self.lines: list[str] = []
        self._lock = threading.Lock()
        stdbuf = shutil.which("stdbuf")
        rtp = free_udp_port() & ~1  # pjsua uses this port and the next (RTCP)
        argv = [str(pjsua), "--null-audio", "--no-tcp", f"--local-port={free_udp_port()}", f"--rtp-port={rtp}",
                f"--id=sip:{caller}@127.0.0.1", "--max-calls=1", "--clock-rate=8000", "--no-vad",
                "--log-level=4", "--app-log-level=4", f"sip:{dialled}@{target}"]
        if stdbuf:
            argv = [stdbuf, "-oL", "-eL", *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name="pjsua-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "a") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                with self._lock:
                    self.lines.append(line)

    def seen(self, text: str) -> bool:
        with self._lock:
            return any(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        wait(lambda: self.seen(text) or self.proc.poll() is not None, timeout, f"pjsua: {text!r}")
        if not self.seen(text):
            raise AssertionError(f"pjsua exited before {text!r}; log: {self.log_path}")

    @property
    def answered(self) -> bool:
        return self.seen("state changed to CONFIRMED")

    @property
    def disconnected(self) -> bool:
        return self.seen("is DISCONNECTED")

    def wait_answered(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.wait_for("state changed to CONFIRMED", timeout)

    def wait_disconnected(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.wait_for("is DISCONNECTED", timeout)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def dtmf(self, digits: str) -> None:
        """RFC 4733 telephone-events (pjsua's ``#`` command), as a carrier sends them."""
        self.send("#")
        self.send(digits)

    def hangup(self) -> None:
        self.send("h")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send("q")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
