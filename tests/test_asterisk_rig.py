"""The real-Asterisk rig's own rules, checked without an Asterisk: what it changes in the
shipped configuration (host and port lines only) and when a missing binary skips or fails."""

from __future__ import annotations

import difflib
from pathlib import Path

from tests import asterisk_rig
from tests.asterisk_rig import (
    CONFIG,
    carrier_hosts,
    substitute_extensions,
    substitute_manager,
    substitute_pjsip,
)


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.ndiff(before.splitlines(), after.splitlines())
            if line.startswith(("- ", "+ "))]


def test_only_the_agi_targets_change_in_the_shipped_dialplan():
    shipped = (CONFIG / "extensions.conf").read_text()
    diff = changed_lines(shipped, substitute_extensions(shipped, "agi://127.0.0.1:1111", "agi://127.0.0.1:2222"))
    removed = [line for line in diff if line.startswith("- ")]
    assert [line for line in diff if line.startswith("+ ")] == [
        "+ CARECALL_AGI=agi://127.0.0.1:1111", "+ CARECALL_AGI_BACKUP=agi://127.0.0.1:2222"]
    assert all(line.startswith(("- CARECALL_AGI=", "- CARECALL_AGI_BACKUP=")) for line in removed)


def test_only_port_and_bind_address_change_in_manager_conf_plus_the_rig_user_include():
    shipped = (CONFIG / "manager.conf").read_text()
    diff = changed_lines(shipped, substitute_manager(shipped, 15038))
    added = {line for line in diff if line.startswith("+ ") and line.strip() != "+"}
    assert "+ port = 15038" in added and '+ #include "manager_rig.conf"' in added
    assert added <= {"+ port = 15038", "+ bindaddr = 127.0.0.1", '+ #include "manager_rig.conf"'}
    assert all(line.startswith(("- port", "- bindaddr")) for line in diff if line.startswith("- "))


def test_only_hosts_and_ports_change_in_pjsip_conf():
    shipped = (CONFIG / "pjsip.conf").read_text()
    hosts = carrier_hosts(shipped)
    assert hosts, "the sample trunk identifies the carrier by host"
    rewritten = substitute_pjsip(shipped, 15060, 15061, hosts)
    for line in changed_lines(shipped, rewritten):
        if line.startswith("+ "):
            assert "127.0.0.1" in line, line
    for host in hosts:
        assert host not in rewritten
    assert "bind = 127.0.0.1:15060" in rewritten


def test_missing_binary_is_a_skip_for_a_user_and_a_failure_in_ci_with_the_bundle(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(asterisk_rig, "SHARED_BUNDLE", tmp_path)
    assert asterisk_rig.must_have_asterisk()
    monkeypatch.setattr(asterisk_rig, "SHARED_BUNDLE", tmp_path / "absent")
    assert not asterisk_rig.must_have_asterisk()
    monkeypatch.delenv("CI")
    monkeypatch.setattr(asterisk_rig, "SHARED_BUNDLE", tmp_path)
    assert not asterisk_rig.must_have_asterisk()
    monkeypatch.setenv("CARECALL_ASTERISK", str(tmp_path / "no-such-asterisk"))
    assert asterisk_rig.find_asterisk() is None
    assert "install.sh" in asterisk_rig.MISSING_REASON
