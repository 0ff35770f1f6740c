"""A private, real Asterisk for the tests, running the project's own ``asterisk-config/``.

Why: the simulator proves our side of the AGI protocol; only a real Asterisk proves the
shipped dialplan, manager.conf and pjsip.conf work (the ``+44`` pattern that never
matched, the ``AGISTATUS`` a real server reports, DTMF over SIP).

Finding the binary: ``asterisk`` on ``PATH``, then ``/opt/asterisk-sip/sbin/asterisk``
(``CARECALL_ASTERISK`` names another). Missing → the tests are skipped with
:data:`MISSING_REASON`; under ``CI=true`` with ``../shared/asterisk`` present (the bundle
``scripts/setup.sh test`` installs) a missing binary fails the run instead.

What the instance is: own etc/run/log/spool/lib dirs under a tmp dir; ``modules.conf``
with ``autoload = no`` and only :data:`MODULES`; free ports for the AMI and the SIP UDP
transport and no other listener. The project's files are copied **unchanged apart from
host/port substitutions** (:meth:`AsteriskRig.write_config`):

* ``extensions.conf`` → ``etc/carecall.conf`` (``#include``\\ d, as the admin README
  says), ``CARECALL_AGI`` / ``CARECALL_AGI_BACKUP`` pointing at the test's FastAGI ports;
* ``manager.conf``: ``port`` and ``bindaddr``; a rig-only AMI user (``rig``, all
  permissions, for events and DTMF) is ``#include``\\ d from ``manager_rig.conf``;
* ``pjsip.conf``: the transport's ``bind`` → ``127.0.0.1:SIP_PORT`` and the carrier host
  → ``127.0.0.1`` (the carrier's registrar → a dead loopback port).

Plus rig-generated ``rig.conf`` (test-only dialplan, :data:`RIG_DIALPLAN`) and
``extensions.conf`` that includes both.

API (thread-safe; from a pytest-twisted test run the blocking waits in a thread with
``threads.deferToThread`` so the reactor keeps serving the in-process AGI server):

* ``rig = AsteriskRig.start(workdir)`` / ``rig.stop()`` (``core stop now``, then kill);
  the ``asterisk`` session fixture (``tests/asterisk_fixtures.py``) does both once per
  session, and ``asterisk_rig`` hands each test the instance with its AGI globals reset.
* ``rig.rx("core show channels") -> str``: one CLI command (``asterisk -rx``).
* ``rig.set_agi(primary_port, backup_port)``: where ``CARECALL_AGI`` / ``_BACKUP`` point
  (``dialplan set global``; an unused port = a server that is down).
* ``rig.reload_dialplan()`` after changing ``carecall.conf`` / ``rig.conf`` (``rig.etc``).
* ``call = rig.call(dialled, caller="02086989911")``: a Local channel into
  ``[carecall-inbound]`` (dialled number as the carrier sends it, ``+44…`` included) with
  that caller ID (``caller=""`` + ``withheld=True`` for a withheld number); returns a
  :class:`LocalCall` with the AGI side's ``uniqueid`` and ``channel`` name.
  ``rig.call(..., context="carecall-checkin-process", exten="s")`` enters another context.
* ``call.dtmf("1001#")``: keys pressed by the caller (AMI ``PlayDTMF`` ``Receive``
  on the AGI channel). Key only once the command that reads them runs (Asterisk
  discards DTMF between AGI commands): ``call.wait_agi_start("GET DATA agent-pass")``
  then ``call.dtmf("1234")``.
* ``call.wait_agi(prefix)`` → the AGIExecEnd event of the first command starting with
  ``prefix`` (``Result`` holds the reply); ``call.agi_commands()`` lists all sent so far,
  ``call.agi_transcript()`` the (command, reply) pairs (from the log);
  ``call.wait_hangup()`` → the Hangup event; ``call.var("AGISTATUS")`` after the AGI app
  returned (the rig's ``h`` extension copies it into a global for the test).
* ``rig.wait_event(predicate, timeout)``, ``rig.events`` (all AMI events seen, dicts).
* ``rig.wait_log(regex, timeout, since=offset) -> re.Match``; ``rig.log_offset()``;
  ``rig.full_log`` (path of the full log, verbose 3 + AGI debug).
* ``rig.ami_host``, ``rig.ami_port``, ``rig.ami_user``, ``rig.ami_secret``: the
  project's own manager.conf user (``carecall``) — what carecall itself logs in as.
* ``rig.sip_port`` (the shipped transport, on loopback), ``rig.prefix`` (install prefix:
  ``share/sip-ring.sh``), ``rig.pjsua``; ``rig.follow("PJSIP/carecall-trunk-", start)``
  follows a call that came in over SIP (``tests/sip_phone.py`` places one) like a
  :class:`LocalCall`; ``rig.wait(cond, timeout, what)``.

No fixed sleeps: every wait polls a condition until a generous timeout (the box running
the suite has 2 cores shared by many processes).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "asterisk-config"
SHARED_BUNDLE = ROOT.parent / "shared" / "asterisk"
FALLBACK = Path("/opt/asterisk-sip/sbin/asterisk")
MISSING_REASON = "no asterisk binary: run /work/shared/asterisk/install.sh or see asterisk-config/README.md"
DEFAULT_TIMEOUT = 30.0

# Only what the shipped configuration and the tests need: no other listener opens.
MODULES = (
    "res_pjproject.so", "res_sorcery_config.so", "res_sorcery_memory.so", "res_sorcery_astdb.so",
    "res_pjsip.so", "res_pjsip_session.so", "res_pjsip_pubsub.so", "chan_pjsip.so",
    "res_pjsip_endpoint_identifier_ip.so", "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_authenticator_digest.so", "res_pjsip_outbound_authenticator_digest.so",
    "res_pjsip_outbound_registration.so", "res_pjsip_caller_id.so", "res_pjsip_dtmf_info.so",
    "res_pjsip_sdp_rtp.so", "res_pjsip_nat.so", "res_pjsip_logger.so", "res_pjsip_rfc3326.so",
    "res_rtp_asterisk.so", "res_timing_timerfd.so",
    "codec_ulaw.so", "codec_alaw.so", "codec_gsm.so", "codec_a_mu.so",
    "format_gsm.so", "format_wav.so", "format_pcm.so", "format_sln.so",
    "pbx_config.so", "res_agi.so", "res_speech.so", "res_clioriginate.so",
    "app_playback.so", "app_read.so", "app_verbose.so", "app_senddtmf.so", "app_dial.so",
    "app_echo.so", "app_stack.so", "app_exec.so",
    "func_callerid.so", "func_channel.so", "func_strings.so", "func_global.so", "func_cut.so",
    "func_logic.so", "func_env.so",
)

# Test-only dialplan: how a test puts a call into the shipped contexts.
RIG_DIALPLAN = """\
; Generated by tests/asterisk_rig.py: test-only contexts (never shipped).
[rig-dial]
; Local/<dialled>@rig-dial/n: the ;2 leg is "the carrier's call": caller ID from the
; variables the rig set on originate, then into the context under test.
exten => _[+0-9].,1,Set(CALLERID(num)=${RIG_CID})
 same => n,ExecIf($["${RIG_WITHHELD}" = "yes"]?Set(CALLERID(pres)=prohib))
 same => n,Set(CHANNEL(hangup_handler_push)=rig-hangup,s,1)
 same => n,Goto(${RIG_CONTEXT},${IF($["${RIG_EXTEN}" = ""]?${EXTEN}:${RIG_EXTEN})},1)

[rig-hangup]
; Runs wherever the call ended: what the dialplan saw, kept for the test.
exten => s,1,Set(GLOBAL(RIG_AGISTATUS_${RIG_TAG})=${AGISTATUS})
 same => n,Set(GLOBAL(RIG_HANGUPCAUSE_${RIG_TAG})=${HANGUPCAUSE})
 same => n,Set(GLOBAL(RIG_DONE_${RIG_TAG})=yes)
 same => n,Return()

[rig-caller]
; The ;1 leg: the handset. It just stays on the line; the test presses keys (PlayDTMF).
exten => s,1,Wait(600)
"""

_tags = itertools.count(1)


def find_asterisk() -> Path | None:
    """The binary the rig runs: ``CARECALL_ASTERISK``, ``asterisk`` on PATH, then the bundle's prefix."""
    named = os.environ.get("CARECALL_ASTERISK")
    if named:
        return Path(named) if Path(named).is_file() else None
    on_path = shutil.which("asterisk")
    if on_path:
        return Path(on_path)
    return FALLBACK if FALLBACK.is_file() and os.access(FALLBACK, os.X_OK) else None


def must_have_asterisk() -> bool:
    """CI with the shared bundle beside the checkout: a missing binary is a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true" and SHARED_BUNDLE.is_dir()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def wait(cond: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, what: str = "condition",
         interval: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy; that value, or TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _set_key(text: str, key: str, value: str, count: int = 0) -> str:
    """``key = value`` lines (any spacing, ``=`` or ``=>``) → the new value; the key must exist."""
    pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=>?\s*)([^;\n]*?)(\s*(;.*)?)$", re.M)
    new, n = pattern.subn(lambda m: f"{m.group(1)}{value}{m.group(3)}", text, count=count)
    if n == 0:
        raise ValueError(f"{key} not found in the shipped configuration")
    return new


def substitute_extensions(text: str, primary: str, backup: str) -> str:
    text = _set_key(text, "CARECALL_AGI", primary, count=1)
    return _set_key(text, "CARECALL_AGI_BACKUP", backup, count=1)


def substitute_manager(text: str, port: int) -> str:
    text = _set_key(text, "port", str(port), count=1)
    text = _set_key(text, "bindaddr", "127.0.0.1", count=1)
    return text + '\n#include "manager_rig.conf"\n'


def substitute_pjsip(text: str, sip_port: int, registrar_port: int, carrier_hosts: tuple[str, ...]) -> str:
    """The transport binds to loopback; the carrier's host is loopback (the test phone is the carrier)."""
    text = re.sub(r"^(\s*bind\s*=\s*)\S+", rf"\g<1>127.0.0.1:{sip_port}", text, flags=re.M)
    for host in carrier_hosts:
        # identify/match takes an address; URIs get a dead port so registration fails quietly.
        text = re.sub(rf"^(\s*match\s*=\s*){re.escape(host)}\s*$", r"\g<1>127.0.0.1", text, flags=re.M)
        text = text.replace(f"@{host}", f"@127.0.0.1:{registrar_port}")
        text = text.replace(f"sip:{host}", f"sip:127.0.0.1:{registrar_port}")
        text = re.sub(rf"^(\s*from_domain\s*=\s*){re.escape(host)}", r"\g<1>127.0.0.1", text, flags=re.M)
    return text


def carrier_hosts(pjsip_text: str) -> tuple[str, ...]:
    """Hosts named by ``match =`` lines of identify sections in the shipped pjsip.conf."""
    return tuple(sorted({m.group(1) for m in re.finditer(r"^\s*match\s*=\s*([A-Za-z][\w.-]*)\s*$",
                                                          pjsip_text, re.M)}))


class AMI:
    """A minimal blocking AMI client: one reader thread, events collected in order."""

    def __init__(self, host: str, port: int, user: str, secret: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(None)
        self._file = self.sock.makefile("rb")
        self.banner = self._file.readline().decode(errors="replace").strip()
        self.events: list[dict[str, str]] = []
        self._responses: dict[str, dict[str, str]] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="ami-reader", daemon=True)
        self._reader.start()
        reply = self.action("Login", Username=user, Secret=secret, timeout=timeout)
        if reply.get("Response") != "Success":
            raise RuntimeError(f"AMI login failed: {reply.get('Message')}")

    def _read(self) -> None:
        message: dict[str, str] = {}
        try:
            for raw in self._file:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line:
                    key, _, value = line.partition(":")
                    message[key.strip()] = value.strip()
                    continue
                with self._cond:
                    if "Event" in message:
                        self.events.append(message)
                    elif "ActionID" in message:
                        self._responses[message["ActionID"]] = message
                    self._cond.notify_all()
                message = {}
        except (OSError, ValueError):
            pass
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def action(self, name: str, timeout: float = DEFAULT_TIMEOUT, **fields: str) -> dict[str, str]:
        action_id = f"rig-{next(self._ids)}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        for key, value in fields.items():
            if key == "Variable":
                lines += [f"Variable: {v}" for v in value.split("\n") if v]
            else:
                lines.append(f"{key}: {value}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + timeout
        with self._cond:
            while action_id not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise TimeoutError(f"no AMI response to {name}")
                self._cond.wait(left)
            return self._responses.pop(action_id)

    def wait_event(self, predicate: Callable[[dict[str, str]], bool], timeout: float = DEFAULT_TIMEOUT,
                   what: str = "AMI event", start: int = 0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                while seen < len(self.events):
                    event = self.events[seen]
                    seen += 1
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
                self._cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"Action: Logoff\r\n\r\n")
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@dataclass
class LocalCall:
    """One originated test call: the ;2 leg runs the shipped dialplan, ``channel`` is its name."""

    rig: AsteriskRig
    tag: str
    uniqueid: str
    handset_uniqueid: str
    event_start: int
    channel: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def _mine(self, event: dict[str, str]) -> bool:
        return event.get("Uniqueid") == self.uniqueid

    def wait_channel(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        if not self.channel:
            event = self.rig.wait_event(lambda e: e.get("Event") == "Newchannel" and self._mine(e),
                                        timeout, f"channel of call {self.tag}", start=self.event_start)
            self.channel = event["Channel"]
        return self.channel

    def _wait_agi(self, event: str, prefix: str, timeout: float, nth: int) -> dict[str, str]:
        up = prefix.upper()
        seen = 0

        def match(e: dict[str, str]) -> bool:
            nonlocal seen
            if e.get("Event") == event and self._mine(e) and e.get("Command", "").upper().startswith(up):
                seen += 1
            return seen == nth

        return self.rig.wait_event(match, timeout, f"{event} {prefix!r} #{nth} on call {self.tag}",
                                   start=self.event_start)

    def wait_agi(self, prefix: str, timeout: float = DEFAULT_TIMEOUT, nth: int = 1) -> dict[str, str]:
        """The AGIExecEnd event of the ``nth`` AGI command on this call starting with ``prefix``."""
        return self._wait_agi("AGIExecEnd", prefix, timeout, nth)

    def wait_agi_start(self, prefix: str, timeout: float = DEFAULT_TIMEOUT, nth: int = 1) -> dict[str, str]:
        """The AGIExecStart event: the command is running now (keys pressed from here are read)."""
        return self._wait_agi("AGIExecStart", prefix, timeout, nth)

    def agi_commands(self) -> list[str]:
        return [e["Command"] for e in self.rig.events[self.event_start:]
                if e.get("Event") == "AGIExecStart" and self._mine(e)]

    def agi_transcript(self) -> list[tuple[str, str]]:
        """(command, reply) pairs from the full log's AGI debug lines (the AMI events carry no reply text)."""
        channel = re.escape(self.wait_channel())
        pairs: list[tuple[str, str]] = []
        for m in re.finditer(rf"<{channel}>AGI (Rx <<|Tx >>) (.*)", self.rig.log_text()):
            if m.group(1) == "Rx <<":
                pairs.append((m.group(2).strip(), ""))
            elif pairs and not pairs[-1][1]:
                pairs[-1] = (pairs[-1][0], m.group(2).strip())
        return pairs

    def dtmf(self, digits: str, duration_ms: int = 120) -> None:
        """The caller presses ``digits`` (as the carrier would deliver them: received on the channel)."""
        channel = self.wait_channel()
        for digit in digits:
            start = len(self.rig.events)
            reply = self.rig.ami.action("PlayDTMF", Channel=channel, Digit=digit, Duration=str(duration_ms),
                                        Receive="true")
            if reply.get("Response") != "Success":
                raise RuntimeError(f"PlayDTMF {digit!r} on {channel}: {reply.get('Message')}")
            # The next key only once this one has ended on the channel: a PlayDTMF that arrives
            # while the previous digit is still sounding cuts it short, and on a loaded machine
            # AMI actions arrive in bursts (a PIN once reached the server one digit short).
            self.rig.wait_event(lambda e, d=digit: e.get("Event") == "DTMFEnd" and e.get("Channel") == channel
                                and e.get("Digit") == d, DEFAULT_TIMEOUT, f"key {digit} to end on {channel}",
                                start=start)

    def wait_hangup(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, str]:
        return self.rig.wait_event(lambda e: e.get("Event") == "Hangup" and self._mine(e), timeout,
                                   f"hang-up of call {self.tag}", start=self.event_start)

    def var(self, name: str, timeout: float = 3 * DEFAULT_TIMEOUT) -> str:
        """``AGISTATUS`` or ``HANGUPCAUSE`` as the dialplan saw them when the call ended.

        A generous limit: a call whose keys were missed still ends by itself (three PIN
        prompts of 6 s, then goodbye); once, on a machine running three suites, the end of
        a departure call took longer than 30 s to be seen."""
        def done() -> bool:
            return self.rig.global_var(f"RIG_DONE_{self.tag}") == "yes"

        wait(done, timeout, f"end of call {self.tag}")
        return self.rig.global_var(f"RIG_{name.upper()}_{self.tag}")

    def hangup(self) -> None:
        """The far end (Asterisk's side) drops the call."""
        with contextlib.suppress(Exception):
            self.rig.ami.action("Hangup", Channel=self.wait_channel(5))

    def hangup_handset(self) -> None:
        """The caller puts the phone down (the ;1 leg: Asterisk sees the caller leave)."""
        handset = self.wait_channel().rsplit(";", 1)[0] + ";1"
        self.rig.ami.action("Hangup", Channel=handset)


class AsteriskRig:
    """One private Asterisk instance (see the module docstring for the API)."""

    def __init__(self, workdir: Path, binary: Path | None = None) -> None:
        found = binary or find_asterisk()
        if found is None:
            raise FileNotFoundError(MISSING_REASON)
        self.binary = found.resolve()
        self.prefix = self.binary.parent.parent
        self.dir = Path(workdir)
        self.etc = self.dir / "etc"
        self.full_log = self.dir / "log" / "full"
        self.ami_host = "127.0.0.1"
        self.ami_port = free_port()
        self.sip_port = free_udp_port()
        self.registrar_port = free_udp_port()
        manager = (CONFIG / "manager.conf").read_text()
        self.ami_user, self.ami_secret = _first_manager_user(manager)
        self.rig_secret = f"rig-{os.getpid()}-{self.ami_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ami: AMI = None  # type: ignore[assignment]
        self.primary_port = 0
        self.backup_port = 0

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def start(cls, workdir: Path, binary: Path | None = None, timeout: float = 60.0) -> AsteriskRig:
        rig = cls(workdir, binary)
        rig.write_config()
        rig.launch(timeout)
        return rig

    @property
    def data_dir(self) -> Path:
        """Sounds, agi-bin: the prefix's var/lib/asterisk (the bundle links the Debian sounds there)."""
        for candidate in (self.prefix / "var" / "lib" / "asterisk", Path("/usr/share/asterisk")):
            if (candidate / "sounds").is_dir():
                return candidate
        return self.prefix / "var" / "lib" / "asterisk"

    @property
    def modules_dir(self) -> Path:
        for candidate in (self.prefix / "lib" / "asterisk" / "modules", Path("/usr/lib/asterisk/modules"),
                          Path("/usr/lib/x86_64-linux-gnu/asterisk/modules")):
            if candidate.is_dir():
                return candidate
        return self.prefix / "lib" / "asterisk" / "modules"

    @property
    def agi_dir(self) -> Path:
        return self.dir / "agi-bin"

    @functools.cached_property
    def run_dir(self) -> Path:
        """Where Asterisk puts its control socket: ``{dir}/run`` when that path fits a Unix
        socket's 107 bytes, else a short directory in /tmp. A deep test directory (a
        pytest-xdist worker's, a long checkout name) made Asterisk start without its socket,
        so every ``asterisk -rx`` failed with "Unable to connect to remote asterisk"."""
        inside = self.dir / "run"
        if len(str(inside / "asterisk.ctl").encode()) <= 100:
            return inside
        return Path(tempfile.mkdtemp(prefix="ccast-", dir="/tmp"))

    def write_config(self, primary_port: int = 0, backup_port: int = 0) -> None:
        d = self.dir
        for sub in ("etc", "log", "spool", "lib", "cache", "agi-bin"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.primary_port = primary_port or free_port()
        self.backup_port = backup_port or free_port()
        etc = self.etc
        (etc / "asterisk.conf").write_text(f"""\
[directories]
astcachedir => {d}/cache
astetcdir => {etc}
astmoddir => {self.modules_dir}
astvarlibdir => {d}/lib
astdbdir => {d}/lib
astkeydir => {d}/lib
astdatadir => {self.data_dir}
astagidir => {self.agi_dir}
astspooldir => {d}/spool
astrundir => {self.run_dir}
astlogdir => {d}/log
astsbindir => {self.binary.parent}

[options]
verbose = 3
debug = 0
nocolor = yes
transmit_silence = yes
hideconnect = yes
""")
        (etc / "modules.conf").write_text("[modules]\nautoload = no\n" + "".join(f"load => {m}\n" for m in MODULES))
        (etc / "logger.conf").write_text("[general]\ndateformat = %F %T.%3q\n[logfiles]\n"
                                         "full => notice,warning,error,verbose,dtmf\n")
        (etc / "rtp.conf").write_text("[general]\nrtpstart = 20000\nrtpend = 29999\n")
        (etc / "pjproject.conf").write_text("[startup]\nlog_level = 2\n")
        (etc / "cli.conf").write_text("[startup_commands]\n")
        (etc / "extensions.conf").write_text("[general]\nstatic = yes\nwriteprotect = yes\nclearglobalvars = no\n\n"
                                             '#include "carecall.conf"\n#include "rig.conf"\n')
        self.write_carecall_dialplan()
        (etc / "rig.conf").write_text(RIG_DIALPLAN)
        (etc / "manager.conf").write_text(substitute_manager((CONFIG / "manager.conf").read_text(), self.ami_port))
        (etc / "manager_rig.conf").write_text(
            f"[rig]\nsecret = {self.rig_secret}\ndeny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
            "read = all\nwrite = all\n")
        pjsip = (CONFIG / "pjsip.conf").read_text()
        (etc / "pjsip.conf").write_text(substitute_pjsip(pjsip, self.sip_port, self.registrar_port,
                                                         carrier_hosts(pjsip)))

    def write_carecall_dialplan(self) -> None:
        text = (CONFIG / "extensions.conf").read_text()
        (self.etc / "carecall.conf").write_text(substitute_extensions(
            text, f"agi://127.0.0.1:{self.primary_port}", f"agi://127.0.0.1:{self.backup_port}"))
        # Files extensions.conf #includes (extensions_alerts.conf: the outbound-call context), unchanged.
        for extra in CONFIG.glob("extensions_*.conf"):
            shutil.copyfile(extra, self.etc / extra.name)

    def _cli(self) -> list[str]:
        return [str(self.binary), "-C", str(self.etc / "asterisk.conf")]

    def launch(self, timeout: float = 60.0) -> None:
        out = open(self.dir / "log" / "stdout", "ab")  # noqa: SIM115 - lives as long as the process
        # -f: stay in the foreground, so this Popen owns the process and can always end it.
        self.proc = subprocess.Popen([*self._cli(), "-f", "-n"], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        ctl = self.run_dir / "asterisk.ctl"
        try:
            wait(lambda: ctl.exists() or self.proc.poll() is not None, timeout, "the Asterisk control socket")
            if self.proc.poll() is not None:
                raise RuntimeError(f"asterisk exited with {self.proc.returncode}: {self._tail()}")
            self.rx("core waitfullybooted", timeout=timeout)
            self.ami = AMI(self.ami_host, self.ami_port, "rig", self.rig_secret, timeout)
            self.rx("agi set debug on")
        except BaseException:
            self.stop()
            raise

    def _tail(self, n: int = 20) -> str:
        path = self.dir / "log" / "stdout"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-n:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.ami is not None:
            self.ami.close()
            self.ami = None  # type: ignore[assignment]
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.rx("core stop now", timeout=10)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.run_dir != self.dir / "run":
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # ------------------------------------------------------------ commands

    def rx(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        done = subprocess.run([*self._cli(), "-rx", command], capture_output=True, timeout=timeout, check=False)
        return done.stdout.decode(errors="replace")

    def set_agi(self, primary_port: int | None = None, backup_port: int | None = None) -> None:
        """Point ``CARECALL_AGI`` / ``_BACKUP`` at these loopback ports (None: a port nobody listens on)."""
        primary = primary_port if primary_port is not None else free_port()
        backup = backup_port if backup_port is not None else free_port()
        self.rx(f"dialplan set global CARECALL_AGI agi://127.0.0.1:{primary}")
        self.rx(f"dialplan set global CARECALL_AGI_BACKUP agi://127.0.0.1:{backup}")

    def reload_dialplan(self) -> None:
        offset = self.log_offset()
        # The CLI answers "Dialplan reloaded." once pbx_config has reloaded (Asterisk 22 logs
        # no line saying so at verbose 3, only the globals being set again).
        if "reloaded" in self.rx("dialplan reload").lower():
            return
        self.wait_log(r"pbx_config.*(Reload|reload)|extensions\.conf|Setting global variable 'CARECALL_AGI'",
                      since=offset, timeout=DEFAULT_TIMEOUT)

    def call(self, dialled: str, caller: str = "", *, withheld: bool = False, context: str = "carecall-inbound",
             exten: str = "", timeout: float = DEFAULT_TIMEOUT, ring_timeout: float = 120.0) -> LocalCall:
        """Originate a Local channel: the ;2 leg enters ``context`` at ``exten`` (default: ``dialled``)."""
        tag = f"{os.getpid()}x{next(_tags)}"
        uniqueid, handset = f"rigcall-{tag}", f"righandset-{tag}"
        start = len(self.ami.events)
        variables = "\n".join([f"RIG_CID={caller}", f"RIG_WITHHELD={'yes' if withheld else 'no'}",
                               f"RIG_CONTEXT={context}", f"RIG_EXTEN={exten}", f"RIG_TAG={tag}"])
        reply = self.ami.action(
            "Originate", timeout=timeout, Channel=f"Local/{dialled}@rig-dial/n", Context="rig-caller", Exten="s",
            Priority="1", Async="true", Timeout=str(int(ring_timeout * 1000)), ChannelId=handset,
            OtherChannelId=uniqueid, Variable=variables)
        if reply.get("Response") != "Success":
            raise RuntimeError(f"Originate failed: {reply.get('Message')}")
        return LocalCall(self, tag, uniqueid, handset, start)

    def global_var(self, name: str) -> str:
        reply = self.ami.action("Getvar", Variable=f"GLOBAL({name})")
        return reply.get("Value", "")

    def follow(self, channel_prefix: str, start: int, timeout: float = DEFAULT_TIMEOUT) -> LocalCall:
        """A call that did not come from :meth:`call` (a SIP call): the first new channel whose
        name starts with ``channel_prefix`` since event index ``start`` (``len(rig.events)``)."""
        event = self.wait_event(lambda e: e.get("Event") == "Newchannel" and e.get("Channel", "").startswith(
            channel_prefix), timeout, f"a {channel_prefix} channel", start=start)
        return LocalCall(self, f"followed-{event['Uniqueid']}", event["Uniqueid"], "", start, event["Channel"])

    @property
    def pjsua(self) -> Path:
        return self.prefix / "bin" / "pjsua"

    # ------------------------------------------------------------ waiting

    @property
    def events(self) -> list[dict[str, str]]:
        return self.ami.events

    def wait_event(self, predicate: Callable[[dict[str, str]], bool], timeout: float = DEFAULT_TIMEOUT,
                   what: str = "AMI event", start: int = 0) -> dict[str, str]:
        return self.ami.wait_event(predicate, timeout, what, start)

    def log_offset(self) -> int:
        return self.full_log.stat().st_size if self.full_log.exists() else 0

    def log_text(self, since: int = 0) -> str:
        if not self.full_log.exists():
            return ""
        with open(self.full_log, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def wait_log(self, pattern: str, timeout: float = DEFAULT_TIMEOUT, since: int = 0) -> re.Match[str]:
        regex = re.compile(pattern)
        return wait(lambda: regex.search(self.log_text(since)), timeout, f"log line /{pattern}/")

    @staticmethod
    def wait(cond: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, what: str = "condition") -> Any:
        return wait(cond, timeout, what)


def _first_manager_user(text: str) -> tuple[str, str]:
    """The first AMI user of the shipped manager.conf and its secret: what carecall logs in as."""
    section = ""
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        m = re.match(r"^\[([^\]]+)\]", line)
        if m:
            section = m.group(1)
            continue
        if section and section != "general":
            m = re.match(r"^secret\s*=\s*(.+)$", line)
            if m:
                return section, m.group(1).strip()
    raise ValueError("asterisk-config/manager.conf has no user with a secret")
