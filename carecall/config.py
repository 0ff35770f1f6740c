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
    """A configuration value that cannot be used; the message names it.

    ``problems`` holds one line per mistake when several were found at once (the
    message is then those lines joined).
    """

    def __init__(self, message: str, problems: list[str] | None = None, raw: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]
        self.raw = raw  # the parsed file, so the other tables can still be checked


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
    # The server stopped mid-call (graceful shutdown ran out of time): record your own
    # "your call was not logged, please ring again" as custom/not-logged for a clearer message.
    not_logged: str = "im-sorry&please-try-again"


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
    # A peer that has not sent its whole environment this long after connecting is cut
    # (Asterisk sends it at once); at most agi_max_connections calls at once, the rest closed
    # (0 = the process's open-file limit less 256 kept for the database, web and logs).
    agi_environment_timeout: float = 10.0
    agi_max_connections: int = 0
    # A database effect (line lookup, check-in) that has not answered in this many seconds
    # counts as failed: the caller goes on via the journal instead of waiting in silence.
    agi_effect_timeout: float = 2.5
    # Graceful shutdown (SIGTERM): stop accepting calls at once (Asterisk tries the next
    # agi:// target), let calls in progress finish for this long, then cut the rest
    # (they hear prompts.not_logged and get a "cut" call record). systemd's TimeoutStopSec
    # must be longer (asterisk-config/carecall.service).
    agi_drain_seconds: float = 60.0
    # The unanswered check-in: once logged, the call rings this much longer (the worker
    # hangs up on hearing it) before carecall ends it; not logged, the caller hears engaged.
    unanswered_ring_seconds: float = 3.0
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
    lockout_worker_alert_after: int = 10  # this worker number on any lines: alert the office
    # The worker-wide budget (issue 14 item 9): after this many wrong PINs in the window on
    # any lines, the number is guarded for lockout_guard_minutes — its PIN is checked only
    # from a home where the worker has a visit now; lines that are not a known landline
    # (unknown caller ID + phone code, withheld) share the smaller unknown budget.
    lockout_worker_budget: int = 10
    lockout_unknown_budget: int = 5
    lockout_guard_minutes: int = 60
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
    problems: list[str] = []
    for name in ("carecall", "prompts"):
        if not isinstance(raw.get(name, {}), dict):
            problems.append(f"[{name}] must be a table")
            raw[name] = {}
    for key, value in raw.get("carecall", {}).items():
        if key not in fields or key in ("prompts", "raw"):
            problems.append(f"unknown setting [carecall] {key}")
            continue
        try:
            values[key] = _checked_setting(fields[key], value)
        except ConfigError as exc:
            problems.append(str(exc))
    for var, key in _ENV.items():
        if env.get(var):
            values[key] = env[var]
    if db_url:
        values["db_url"] = db_url
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(fields[key], value)

    prompt_fields = {f.name for f in dataclasses.fields(Prompts)}
    prompts_raw = dict(raw.get("prompts", {}))
    for key in sorted(prompts_raw):
        if key not in prompt_fields:
            problems.append(f"unknown setting [prompts] {key}")
            del prompts_raw[key]
        elif not isinstance(prompts_raw[key], str) or not prompts_raw[key]:
            problems.append(f"[prompts] {key} must be a sound file name, got {prompts_raw[key]!r}")
            del prompts_raw[key]
    settings = Settings(prompts=Prompts(**prompts_raw), raw=raw, **values)
    try:
        settings.tz  # noqa: B018 - validate early with a clear message
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"[carecall] timezone: unknown time zone {settings.timezone!r}")
    if problems:
        raise ConfigError("\n".join(problems), problems, raw)
    return settings


def _checked_setting(field: dataclasses.Field[Any], value: Any) -> Any:
    """A ``[carecall]`` value of the field's type, or ConfigError naming the key (never a traceback)."""
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    where = f"[carecall] {field.name}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind in ("int", "float"):
        wrong = isinstance(value, bool) or not isinstance(value, (int, float))
        if wrong or (kind == "int" and isinstance(value, float)):
            raise ConfigError(f"{where} must be a {'whole number' if kind == 'int' else 'number'}, got {value!r}")
        if value < 0:
            raise ConfigError(f"{where} must not be negative, got {value!r}")
        return int(value) if kind == "int" else float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


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


# --- Validation once at start ------------------------------------------------------------

BUILT_IN_TABLES = ("carecall", "prompts")  # parsed by load_settings itself
_NOT_FEATURES = ("tests", "bench")  # every other package of ours may register a table


def load_table_modules() -> None:
    """Import every module of ours that registers a table, so validation sees them all.

    A table registers itself when its module is imported, and a command imports only
    what it needs; so the modules whose source says ``register_table(`` are imported
    here (a text scan, cheaper than importing everything). A new table therefore needs
    no list kept anywhere.
    """
    import importlib

    root = Path(__file__).resolve().parent.parent
    packages = sorted(p.name for p in root.iterdir()
                      if (p / "__init__.py").exists() and p.name not in _NOT_FEATURES)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if path.name == "config.py" and package == "carecall":
                continue
            try:
                if "register_table(" not in path.read_text(encoding="utf-8"):
                    continue
            except OSError:
                continue
            importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))


def table_problems(name: str, raw: Any) -> list[str]:
    """Every mistake in one registered ``[name]`` table, one line each (not just the first).

    Unknown keys and wrong types are found key by key; a bad value by building the
    table with that key alone (the dataclass's ``__post_init__`` names it); a rule
    between keys by building it with all of them once each key is fine on its own.
    """
    cls = _TABLES[name]
    if not isinstance(raw, dict):
        return [f"[{name}] must be a table"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems: list[str] = []
    good: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(f"unknown setting [{name}] {key}")
            continue
        try:
            parse_table(name, {key: value})
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        good[key] = value
    if not problems:
        try:
            parse_table(name, good)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def validate(settings: Settings) -> list[str]:
    """Every problem in every table of the configuration, one clear line each; [] when all is well.

    Run once at start (``carecall`` before any command), so a typo cannot leave a
    safety threshold at its default and a bad value never waits for the first invoice
    or report to fail.
    """
    return validate_tables(settings.raw)


def validate_tables(raw: dict[str, Any]) -> list[str]:
    """:func:`validate` for the parsed file's tables other than ``[carecall]`` and ``[prompts]``."""
    load_table_modules()
    problems: list[str] = []
    for name, value in raw.items():
        if name in BUILT_IN_TABLES:
            continue
        if name not in _TABLES:
            known = ", ".join(f"[{t}]" for t in sorted({*BUILT_IN_TABLES, *_TABLES}) if not t.startswith("_"))
            problems.append(f"unknown table [{name}] (known: {known})")
            continue
        problems.extend(table_problems(name, value))
    return problems
