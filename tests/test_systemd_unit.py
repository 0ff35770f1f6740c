"""The shipped systemd unit gives the graceful shutdown the time it needs."""

from __future__ import annotations

import configparser
from pathlib import Path

from carecall.config import Settings

UNIT = Path(__file__).resolve().parent.parent / "asterisk-config" / "carecall.service"


def test_timeout_stop_sec_covers_the_drain_the_last_command_and_the_apology():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    service = unit["Service"]
    settings = Settings()
    last_command = settings.digit_timeout_ms / 1000  # a GET DATA started just before the deadline
    apology_and_records = 10.0
    assert int(service["TimeoutStopSec"]) >= settings.agi_drain_seconds + last_command + apology_and_records
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert service["ExecStart"].endswith("carecall run")
