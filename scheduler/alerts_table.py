"""The ``[alerts]`` table, registered with :func:`carecall.config.register_table`.

One table holds three owners' keys: ``enabled``, ``interval_seconds`` and
``pass_gap_seconds`` (the scheduler), the rules' thresholds
(:class:`scheduler.rules.Rules`) and the delivery settings
(:class:`scheduler.delivery.DeliveryConfig`). Its fields are made from those two
dataclasses, so a key added there is a key here, and its check runs their own
parsers, so each rule stays in one place. Validated once at start: an unknown key,
``late_minutes = -5`` or ``"thirty"`` is a line naming it, not a silent default or a
stack trace.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from carecall.config import ConfigError, register_table
from scheduler.delivery import DeliveryConfig
from scheduler.rules import Rules, RulesConfigError

SCHEDULER_KEYS: list[tuple[str, str, Any]] = [
    ("enabled", "bool", dataclasses.field(default=True)),  # false: no alert scheduler in this server
    ("interval_seconds", "float", dataclasses.field(default=15.0)),  # the safety-net pass
    ("pass_gap_seconds", "float", dataclasses.field(default=0.5)),  # shortest rest between two passes
]
_PLAIN = ("int", "float", "bool", "str")


def _fields() -> list[tuple[str, str, Any]]:
    out = list(SCHEDULER_KEYS)
    for cls, own in ((Rules, {"timezone"}), (DeliveryConfig, {"base_url", "timezone", "notices"})):
        for f in dataclasses.fields(cls):
            if f.name in own:  # taken from [carecall] ([notices] is a table of its own)
                continue
            kind = str(f.type) if str(f.type) in _PLAIN else "Any"  # lists and tables: the parser checks
            if f.default is not dataclasses.MISSING:
                default = dataclasses.field(default=f.default)
            else:
                default = dataclasses.field(default_factory=f.default_factory)
            out.append((f.name, kind, default))
    return out


def _check(self: Any) -> None:
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}  # as TOML gives them
    if values["interval_seconds"] <= 0:
        raise ConfigError(f"[alerts] interval_seconds must be positive, got {values['interval_seconds']!r}")
    if not 0 <= values["pass_gap_seconds"] <= values["interval_seconds"]:
        raise ConfigError(f"[alerts] pass_gap_seconds must be between 0 and interval_seconds, "
                          f"got {values['pass_gap_seconds']!r}")
    try:
        Rules.from_section(values)
    except RulesConfigError as exc:
        raise ConfigError(str(exc)) from exc
    DeliveryConfig.from_section(values)


AlertsTable = register_table("alerts")(dataclasses.make_dataclass(
    "AlertsTable", _fields(), frozen=True, namespace={"__post_init__": _check, "__module__": __name__,
                                                       "__doc__": "Every key of [alerts]."}))
