"""Configuration validated once at start (issue 14): every table and key, one line per mistake.

The ``carecall`` command is run for real (a subprocess); the README's reference block
is checked against the registered dataclasses so the documentation stays true.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import subprocess
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from carecall.config import (
    BUILT_IN_TABLES,
    ConfigError,
    Prompts,
    Settings,
    load_settings,
    load_table_modules,
    register_table,
    registered_tables,
    validate_tables,
)

ROOT = Path(__file__).resolve().parent.parent

BAD = """
[carecall]
agi_port = "x"
agi_prot = 4573

[alerts]
late_minutes = -5
no_departure_minutes = "thirty"
smtp_prot = 25

[kpi]
compliance_target_percent = 101

[web]
login_free_attemps = 3

[billing]
rounding = "sometimes"

[billing.funders.Lewisham]
anchor = "2026-01-06"

[alrts]
x = 1
"""

EXPECTED = [
    "[carecall] agi_port must be a whole number, got 'x'",
    "unknown setting [carecall] agi_prot",
    "[alerts] late_minutes must not be negative",
    "[alerts] no_departure_minutes must be a whole number, got 'thirty'",
    "unknown setting [alerts] smtp_prot",
    "[kpi] compliance_target_percent must be at most 100, got 101",
    "unknown setting [web] login_free_attemps",
    "[billing]: rounding must be one of minute, nearest, planned, got 'sometimes'",
    "[billing.funders.Lewisham]: anchor 2026-01-06 is not a Monday",
]


def _carecall(tmp_path: Path, toml: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "carecall.toml"
    config.write_text(toml)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CARECALL_DB", None)
    return subprocess.run([sys.executable, "-m", "carecall", "--db", f"sqlite:///{tmp_path / 'x.db'}",
                           "--config", str(config), *args], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path), timeout=120)


def test_every_mistake_in_every_table_is_one_line_and_nothing_starts(tmp_path):
    done = _carecall(tmp_path, BAD, "run")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert all(line.startswith("carecall: configuration error: ") for line in lines), lines
    problems = [line.removeprefix("carecall: configuration error: ") for line in lines]
    assert problems[:-1] == EXPECTED
    known = problems[-1].removeprefix("unknown table [alrts] (known: ").rstrip(")").split(", ")
    assert problems[-1].startswith("unknown table [alrts] (known: ") and known == sorted(known)
    assert {"[alerts]", "[billing]", "[carecall]", "[kpi]", "[prompts]", "[oncall]", "[ami]"} <= set(known)
    assert not (tmp_path / "x.db").exists()  # nothing started: not even the database was created


@pytest.mark.parametrize(("value", "line"), [
    ("-5", "[alerts] late_minutes must not be negative"),
    ('"thirty"', "[alerts] late_minutes must be a whole number, got 'thirty'"),
])
def test_a_bad_alert_threshold_is_a_line_not_a_stack_trace(tmp_path, value, line):
    done = _carecall(tmp_path, f"[alerts]\nlate_minutes = {value}\n", "journal", "show")
    assert (done.returncode, done.stderr) == (2, f"carecall: configuration error: {line}\n")


@pytest.mark.parametrize("value", ["-1", "30"])
def test_a_pass_gap_outside_zero_to_the_interval_is_a_line(tmp_path, value):
    done = _carecall(tmp_path, f"[alerts]\npass_gap_seconds = {value}\n", "journal", "show")
    assert (done.returncode, done.stderr) == (2, "carecall: configuration error: [alerts] pass_gap_seconds must be "
                                                 f"between 0 and interval_seconds, got {float(value)!r}\n")


def test_a_table_registered_by_a_feature_is_checked_with_the_rest():
    @register_table("_feature")
    @dataclasses.dataclass(frozen=True)
    class _Feature:
        minutes: int = 5

        def __post_init__(self) -> None:
            if self.minutes > 60:
                raise ConfigError(f"[_feature] minutes must be at most 60, got {self.minutes}")

    raw = {"_feature": {"minutes": 90, "hours": 1}, "kpi": {"worker_floor_percent": "85"}}
    assert validate_tables(raw) == [
        "[_feature] minutes must be at most 60, got 90",
        "unknown setting [_feature] hours",
        "[kpi] worker_floor_percent must be a whole number, got '85'",
    ]
    assert validate_tables({"_feature": {"minutes": 30}}) == []


def test_a_good_configuration_passes(tmp_path):
    toml = ("[carecall]\nagi_port = 4600\n[alerts]\nlate_minutes = 20\nescalate_kinds = \"missed, no_reply\"\n"
            "[billing]\nanchor = 2026-01-05\n[billing.funders.Lewisham]\nrounding = \"nearest\"\n"
            "[web]\npoll_seconds = 1\n")
    done = _carecall(tmp_path, toml, "journal", "show", "--json")
    assert done.returncode == 0, done.stderr


def _readme_reference() -> dict[str, dict[str, object]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- config-reference:start -->\n```toml\n(.*?)```\n<!-- config-reference:end -->", text,
                      re.S)
    assert block, "README.md has no configuration reference block"
    return tomllib.loads(block.group(1))


def _defaults(cls: type, skip: tuple[str, ...] = ()) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def test_the_readme_lists_every_key_of_every_table_with_its_default():
    load_table_modules()
    reference = _readme_reference()
    tables = {name: cls for name, cls in registered_tables().items() if not name.startswith("_")}
    assert set(reference) == {*BUILT_IN_TABLES, *tables}
    assert reference["carecall"] == _defaults(Settings, ("prompts", "raw"))
    assert reference["prompts"] == _defaults(Prompts)
    for name, cls in tables.items():
        documented = reference[name]
        defaults = _defaults(cls)
        assert set(documented) == set(defaults), name
        for key, value in defaults.items():
            if isinstance(value, dt.date) and not isinstance(documented[key], dt.date):
                value = value.isoformat()
            if isinstance(value, Decimal):  # money is written as a string (TOML has no decimal)
                value = str(value)
            assert documented[key] == value, (name, key)
    # And the reference itself is a valid configuration.
    assert validate_tables({k: v for k, v in reference.items() if k not in BUILT_IN_TABLES}) == []


def test_load_settings_names_every_carecall_and_prompts_mistake_at_once(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[carecall]\nagi_port = -1\ntimezone = "Mars/Olympus"\n[prompts]\npin = 3\nbeep = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.problems == [
        "[carecall] agi_port must not be negative, got -1",
        "unknown setting [prompts] beep",
        "[prompts] pin must be a sound file name, got 3",
        "[carecall] timezone: unknown time zone 'Mars/Olympus'",
    ]
