"""Site configuration: one TOML file, a few environment variables, command-line flags.

Precedence, highest first: ``--db``/flags, ``CARECALL_*`` environment variables, the
TOML file (``--config``, ``CARECALL_CONFIG`` or ``./carecall.toml``), built-in defaults.
Feature packages read their own table (``[alerts]``, ``[billing]``, ``[web]``) with
:meth:`Settings.section`, so each keeps its options beside its rules.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.clock import DEFAULT_ZONE

DEFAULT_DB = "sqlite:///carecall.db"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class Prompts:
    """Asterisk sound names; the defaults ship in Debian's asterisk-core-sounds-en."""

    phone_code: str = "telephone-number"  # sites should record "enter the home's phone code"
    worker_number: str = "agent-user"  # "agent login, please enter your agent number"
    pin: str = "agent-pass"  # "please enter your password"
    invalid: str = "agent-incorrect"  # "login incorrect"
    arrival: str = "agent-loginok"  # "agent logged in", then the time
    departure: str = "agent-loggedoff"  # "agent logged off", then the time
    goodbye: str = "goodbye"
    sorry: str = "im-sorry"
    no_reply: str = "auth-thankyou"
    device_code: str = "vm-password"  # sites should record "enter the code shown on the device"
    journalled: str = "auth-thankyou"  # database down, check-in kept in the journal: "thank you", then the time


@dataclasses.dataclass(frozen=True)
class Settings:
    db_url: str = DEFAULT_DB
    timezone: str = DEFAULT_ZONE
    phone_region: str = "GB"
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    base_url: str = "http://127.0.0.1:8080"
    secret_file: str = "carecall.key"
    data_dir: str = "var"
    # Call matching (issue: the spine): a departure closes an open arrival of this age.
    open_attendance_hours: float = 12.0
    match_before_minutes: int = 120
    match_after_minutes: int = 120
    digit_timeout_ms: int = 6000
    # No-reply calls match the worker's visit from this long before its planned start.
    noreply_before_minutes: int = 30
    # No landline (docs/no-landline.md): a device code keyed this long after it was shown
    # is accepted, logged at the code's time and flagged "entered late".
    device_code_late_minutes: int = 120
    # FastAGI: a call whose peer is silent this long, or that lasts this long, is cut.
    agi_idle_timeout: float = 60.0
    agi_call_limit: float = 600.0
    max_tries: int = 3
    # Database down (issue 7): check-ins go to this append-only journal (under data_dir)
    # and are replayed into the database every journal_retry_seconds.
    journal_dir: str = "journal"
    journal_retry_seconds: float = 15.0
    # PIN guessing (docs/reliability.md): failures counted over lockout_window_minutes.
    lockout_window_minutes: int = 60
    lockout_free_failures: int = 3  # a whole call of typos costs nothing
    lockout_base_delay: float = 2.0  # then 2, 4, 8 … seconds before "incorrect"
    lockout_max_delay: float = 30.0
    lockout_pair_after: int = 10  # this worker number on this line: locked for lockout_minutes
    lockout_minutes: int = 30
    lockout_worker_alert_after: int = 10  # this worker number on any lines: alert + delay, no lock
    db_threads: int = 0  # 0 = 1 for SQLite, 10 for PostgreSQL
    # Group commit (agi/effects.py): batches of call effects in the pool at once.
    # 0 = 1 for SQLite (one writer anyway), 2 for PostgreSQL (measured best, docs/benchmarks.md).
    agi_batches_in_flight: int = 0
    # Where those batches run: "process" (worker processes, agi/effectprocess.py: their
    # Python work never holds the reactor's GIL) or "thread" (the database thread pool).
    agi_effects: str = "process"
    prompts: Prompts = dataclasses.field(default_factory=Prompts)
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        return value

    def table(self, name: str) -> Any:
        """The typed ``[name]`` table (see :func:`register_table`), parsed and checked."""
        return parse_table(name, self.section(name))

    def path(self, relative: str) -> Path:
        """A path from the config, relative to the data directory unless absolute."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.data_dir) / p

    @property
    def secret_path(self) -> Path:
        p = Path(self.secret_file)
        return p if p.is_absolute() or p.parent != Path(".") else Path(self.secret_file)


_ENV = {
    "CARECALL_DB": "db_url",
    "CARECALL_TIMEZONE": "timezone",
    "CARECALL_SECRET_FILE": "secret_file",
    "CARECALL_DATA_DIR": "data_dir",
    "CARECALL_BASE_URL": "base_url",
}


def _coerce(field: dataclasses.Field[Any], value: Any) -> Any:
    kind = field.type if isinstance(field.type, type) else str(field.type)
    try:
        if kind in (int, "int"):
            return int(value)
        if kind in (float, "float"):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{field.name} must be a number, got {value!r}") from exc
    return value


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    db_url: str | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = config_file or env.get("CARECALL_CONFIG")
    if path is None and Path("carecall.toml").exists():
        path = "carecall.toml"
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    for key, value in raw.get("carecall", {}).items():
        if key not in fields or key in ("prompts", "raw"):
            raise ConfigError(f"unknown setting [carecall] {key}")
        values[key] = _coerce(fields[key], value)
    for var, key in _ENV.items():
        if env.get(var):
            values[key] = env[var]
    if db_url:
        values["db_url"] = db_url
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(fields[key], value)

    prompt_fields = {f.name for f in dataclasses.fields(Prompts)}
    prompts_raw = raw.get("prompts", {})
    unknown = set(prompts_raw) - prompt_fields
    if unknown:
        raise ConfigError(f"unknown prompt(s): {', '.join(sorted(unknown))}")
    settings = Settings(prompts=Prompts(**prompts_raw), raw=raw, **values)
    try:
        settings.tz  # noqa: B018 - validate early with a clear message
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {settings.timezone!r}") from exc
    return settings


# --- Typed configuration tables --------------------------------------------------------
#
# A feature declares its ``[table]`` once, as a frozen dataclass whose fields are the keys
# (with their defaults) and whose ``__post_init__`` raises ConfigError for a bad value,
# and registers it here. ``Settings.table(name)`` then parses the raw TOML into that
# dataclass: unknown keys and wrong types are errors that name the key, so a typo never
# leaves a safety threshold silently at its default.

_TABLES: dict[str, type[Any]] = {}


def register_table(name: str) -> Any:
    """Class decorator: ``@register_table("provider")`` on a frozen dataclass."""

    def wrap(cls: type[Any]) -> type[Any]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} must be a dataclass")
        _TABLES[name] = cls
        return cls

    return wrap


def registered_tables() -> dict[str, type[Any]]:
    return dict(_TABLES)


def _typed(table: str, key: str, kind: Any, value: Any) -> Any:
    where = f"[{table}] {key}"
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    kind_name = kind_name.replace(" ", "")
    if kind_name in ("bool",):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind_name in ("int",):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return value
    if kind_name in ("float",):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind_name in ("str",):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if kind_name in ("Decimal",):
        import decimal

        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where} must be an amount, got {value!r}")
        try:
            return decimal.Decimal(str(value))
        except decimal.InvalidOperation as exc:
            raise ConfigError(f"{where} must be an amount, got {value!r}") from exc
    if kind_name.startswith(("tuple[str", "list[str")):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)
    return value  # anything richer: the dataclass's __post_init__ checks it


def parse_table(name: str, raw: dict[str, Any]) -> Any:
    """The registered dataclass for ``[name]`` built from ``raw``; ConfigError names the key."""
    cls = _TABLES[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"unknown setting [{name}] {key}")
        values[key] = _typed(name, key, fields[key].type, value)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{name}] {exc}") from exc


def settings_table(settings: Settings, name: str) -> Any:
    return parse_table(name, settings.section(name))
