"""``asterisk-config/README.md`` walked step by step, as a site administrator on Debian 12 would.

Every fenced ``sh`` block starting ``# step N:`` runs in order with bash (``set -eu``),
after step 0's variables; blocks marked ``(site only)`` — apt, systemd, the clock, the
git clone — are the only ones skipped (the suite's own setup did their work). The names
step 0 defines are pointed into a sandbox: ``ETC`` is a copy of the bundle's sample
``etc/asterisk``, ``ASTERISK`` the bundle's binary with ``-C`` the sandbox, ``CARECALL``
this checkout. Between steps the walker changes only what a shared test box needs: after
step 5, the ports (SIP bind, AMI, the FastAGI target) — as the rig does; before step 8,
the sandbox's directories and ``modules.conf`` (``autoload = no``, no other listener);
before step 9, ``carecall run`` as step 7's systemd unit would start it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.asterisk_rig import (
    MISSING_REASON,
    MODULES,
    AsteriskRig,
    find_asterisk,
    free_port,
    must_have_asterisk,
    substitute_extensions,
    substitute_manager,
    wait,
)
from tests.carecall_process import CarecallProcess

pytestmark = pytest.mark.asterisk
ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "asterisk-config" / "README.md"


def steps() -> list[tuple[int, str, str]]:
    """(number, title, script) for each ``# step N: title`` block, in document order."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S):
        m = re.match(r"# step (\d+): (.*)\n", block)
        if m:
            out.append((int(m.group(1)), m.group(2).strip(), block))
    return out


def test_the_guide_numbers_its_steps_in_order_and_says_which_are_site_only():
    numbers = [n for n, _, _ in steps()]
    assert numbers == list(range(len(numbers))) and len(numbers) >= 9
    site_only = [title for _, title, _ in steps() if "(site only)" in title]
    assert len(site_only) == 3, site_only  # clock, clone + virtualenv, systemd
    assert "apt-get install asterisk" not in GUIDE.read_text().split("## 1.")[1].split("```sh")[1]


@pytest.fixture
def sandbox(tmp_path):
    binary = find_asterisk()
    if binary is None:
        if must_have_asterisk():
            pytest.fail("CI=true with ../shared/asterisk present but no asterisk binary")
        pytest.skip(MISSING_REASON)
    prefix = binary.resolve().parent.parent
    etc = tmp_path / "etc"
    sample = prefix / "etc" / "asterisk"
    if not sample.is_dir():
        pytest.skip(f"no sample configuration in {sample}")
    subprocess.run(["cp", "-a", f"{sample}/.", str(etc)], check=True)
    return prefix, etc


def test_walk_the_admin_guide_on_this_box(sandbox, tmp_path, settings):
    prefix, etc = sandbox
    rig = AsteriskRig(tmp_path / "ast", prefix / "sbin" / "asterisk")  # the sandbox's dirs and ports
    agi_port = free_port()
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "sudo").write_text('#!/bin/sh\nexec "$@"\n')  # CI runs as root, where sudo may be absent
    (shim / "sudo").chmod(0o755)
    # "asterisk" for the guide's "$ASTERISK -rx …": the bundle's binary on the sandbox's asterisk.conf.
    (shim / "asterisk").write_text(f'#!/bin/sh\nexec {prefix}/sbin/asterisk -C {rig.etc}/asterisk.conf "$@"\n')
    (shim / "asterisk").chmod(0o755)
    env = dict(
        os.environ, PATH=f"{shim}:{os.environ['PATH']}", AST=str(prefix), ETC=str(etc),
        AGIBIN=str(rig.agi_dir), ASTERISK=str(shim / "asterisk"),
        BUNDLE=str(ROOT.parent / "shared" / "asterisk"), CARECALL=str(ROOT),
        CARECALL_ETC=str(tmp_path / "carecall"), DB_URL=settings.db_url, AGI_PORT=str(agi_port),
        WEB_PORT=str(free_port()),
    )
    step0 = steps()[0][2]
    walked: list[int] = []
    carecall = None
    try:
        for number, title, script in steps()[1:]:
            if "(site only)" in title:
                continue
            if number == 8:
                prepare_private_instance(rig, etc)
            if number == 9:
                carecall = start_carecall(settings, tmp_path, tmp_path / "carecall" / "carecall.toml")
            done = subprocess.run(["bash", "-c", f"set -eu\n{step0}\n{script}"], env=env, capture_output=True,
                                  text=True, timeout=180, cwd=tmp_path)
            assert done.returncode == 0, f"step {number} ({title}) failed:\n{done.stdout}\n{done.stderr}"
            walked.append(number)
            if number == 5:
                localise_ports(rig, etc, agi_port)
        assert walked == [1, 4, 5, 6, 8, 9]
        assert (rig.agi_dir / "carecall-agi").resolve() == (ROOT / ".venv" / "bin" / "carecall-agi").resolve()
        assert carecall is not None
        # Step 9's test call reached carecall through the guide's own configuration.
        wait(lambda: "script=checkin stage=answer" in carecall.text(), 60, "the test call in carecall's log")
    finally:
        if carecall is not None:
            carecall.stop()
        subprocess.run([str(shim / "asterisk"), "-rx", "core stop now"], capture_output=True, timeout=60)
        rig.stop()  # its short control-socket directory, if it needed one


def localise_ports(rig: AsteriskRig, etc: Path, agi_port: int) -> None:
    """Host and port substitutions only: a shared box has other Asterisks on 5060/5038."""
    pjsip = etc / "pjsip.conf"
    pjsip.write_text(re.sub(r"^(\s*bind\s*=\s*)\S+", rf"\g<1>127.0.0.1:{rig.sip_port}", pjsip.read_text(),
                            flags=re.M))
    manager = etc / "manager.conf"
    manager.write_text(substitute_manager(manager.read_text(), rig.ami_port).replace(
        '#include "manager_rig.conf"', ""))
    dialplan = etc / "extensions_carecall.conf"
    dialplan.write_text(substitute_extensions(dialplan.read_text(), f"agi://127.0.0.1:{agi_port}",
                                              f"agi://127.0.0.1:{free_port()}"))


def prepare_private_instance(rig: AsteriskRig, etc: Path) -> None:
    """The sandbox's own directories, and only the modules the tests load (no other listener)."""
    rig.write_config()  # the rig's asterisk.conf, modules.conf, logger.conf in rig.etc …
    text = (rig.etc / "asterisk.conf").read_text().replace(f"astetcdir => {rig.etc}", f"astetcdir => {etc}")
    (rig.etc / "asterisk.conf").write_text(text)
    (etc / "modules.conf").write_text("[modules]\nautoload = no\n" + "".join(f"load => {m}\n" for m in MODULES))
    for name in ("logger.conf", "rtp.conf"):
        (etc / name).write_text((rig.etc / name).read_text())
    assert "load =>" in (etc / "modules.conf").read_text()


def start_carecall(settings, tmp_path: Path, guide_config: Path) -> CarecallProcess:
    """``carecall run`` on the configuration step 4 wrote (what step 7's unit runs)."""
    proc = CarecallProcess(settings, tmp_path / "carecall-run")
    proc.config = guide_config
    return proc.start()
