"""A private Asterisk 22 for the on-call alert tests: the project's asterisk-config/, host/port changed.

Minimal on purpose (the ``telephony`` branch builds the shared rig): it copies
``asterisk-config/*.conf`` into a private etc directory, changes only the FastAGI
address in ``[globals]`` and the AMI port in ``manager.conf``, and appends one
``#include`` of the test's *phones*: a dialplan context whose extensions play the person
we ring (answer and key 1 + PIN, ring without answering, …). A number with no extension
there is a channel that cannot be dialled. Only the modules those need are loaded (no SIP:
the phones are Local channels).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

PREFIX = Path(os.environ.get("CARECALL_ASTERISK_PREFIX", "/opt/asterisk-sip"))
BINARY = PREFIX / "sbin" / "asterisk"
CONFIG = Path(__file__).resolve().parent.parent / "asterisk-config"

MODULES = ("pbx_config.so", "res_speech.so", "res_agi.so", "app_senddtmf.so", "func_channel.so", "app_playback.so",
           "format_gsm.so", "format_wav.so", "codec_gsm.so", "codec_ulaw.so", "codec_alaw.so",
           "res_timing_timerfd.so", "func_callerid.so")


def available() -> bool:
    return BINARY.exists() and os.access(BINARY, os.X_OK)


class PrivateAsterisk:
    def __init__(self, run: Path, *, agi_port: int, backup_port: int, ami_port: int, phones: str) -> None:
        self.run = run
        self.agi_port, self.backup_port, self.ami_port = agi_port, backup_port, ami_port
        self.phones = phones
        self.conf = run / "etc" / "asterisk.conf"

    def _write_config(self) -> None:
        run = self.run
        if run.exists():
            shutil.rmtree(run)
        for d in ("etc", "varlib", "spool", "run", "log", "cache"):
            (run / d).mkdir(parents=True)
        etc = run / "etc"
        for conf in CONFIG.glob("*.conf"):
            shutil.copy(conf, etc / conf.name)
        ext = (etc / "extensions.conf").read_text()
        ext, n1 = re.subn(r"agi://127\.0\.0\.1:4573\b", f"agi://127.0.0.1:{self.agi_port}", ext)
        ext, n2 = re.subn(r"agi://127\.0\.0\.1:4574\b", f"agi://127.0.0.1:{self.backup_port}", ext)
        assert n1 and n2, "asterisk-config/extensions.conf no longer names agi://127.0.0.1:4573/4574"
        (etc / "extensions.conf").write_text(ext + "\n#include carecall_test_phones.conf\n")
        (etc / "carecall_test_phones.conf").write_text(self.phones)
        manager, n = re.subn(r"(?m)^port = 5038$", f"port = {self.ami_port}", (etc / "manager.conf").read_text())
        assert n == 1, "asterisk-config/manager.conf no longer has 'port = 5038'"
        (etc / "manager.conf").write_text(manager)
        (etc / "modules.conf").write_text("[modules]\nautoload = no\n" + "".join(f"load => {m}\n" for m in MODULES))
        (etc / "logger.conf").write_text("[general]\n[logfiles]\nfull => notice,warning,error,verbose,dtmf\n")
        self.conf.write_text(f"""[directories]
astcachedir => {run}/cache
astetcdir => {etc}
astmoddir => {PREFIX}/lib/asterisk/modules
astvarlibdir => {run}/varlib
astdbdir => {run}/varlib
astkeydir => {run}/varlib
astdatadir => {PREFIX}/var/lib/asterisk
astagidir => {PREFIX}/var/lib/asterisk/agi-bin
astspooldir => {run}/spool
astrundir => {run}/run
astlogdir => {run}/log
astsbindir => {PREFIX}/sbin

[options]
verbose = 3
""")

    def rx(self, command: str, timeout: float = 20) -> str:
        return subprocess.run([str(BINARY), "-C", str(self.conf), "-rx", command], capture_output=True,
                              text=True, timeout=timeout).stdout

    def start(self) -> None:
        self._write_config()
        subprocess.run([str(BINARY), "-C", str(self.conf)], check=True, timeout=30)
        deadline = time.monotonic() + 20
        while not (self.run / "run" / "asterisk.ctl").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Asterisk did not start; see {self.run / 'log'}")
            time.sleep(0.1)
        self.rx("core waitfullybooted", timeout=30)
        shown = self.rx("dialplan show carecall-outbound")
        assert "AGI(" in shown, f"carecall-outbound context not loaded: {shown}"

    def stop(self) -> None:
        if (self.run / "run" / "asterisk.ctl").exists():
            self.rx("core stop now")
        deadline = time.monotonic() + 10
        while (self.run / "run" / "asterisk.ctl").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def log(self) -> str:
        path = self.run / "log" / "full"
        return path.read_text(errors="replace") if path.exists() else ""
