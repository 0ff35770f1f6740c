"""The ``[kpi]`` table of the site configuration: targets and tolerances of the figures.

Defaults are the commissioner's (spec 004 §3.27, §5.27, §8.13–8.14, §10.2, §10.5);
a site changes them only when its contract says otherwise.
"""

from __future__ import annotations

import dataclasses

from carecall.config import ConfigError, Settings, register_table


@register_table("kpi")
@dataclasses.dataclass(frozen=True)
class KpiConfig:
    time_critical_window_minutes: int = 15  # §8.13: ±15 min
    punctuality_window_minutes: int = 30  # other visits: the agreed window, ±30 by default
    punctuality_target_percent: int = 100  # §8.13: "all will be required to be delivered within"
    compliance_target_percent: int = 90  # §10.5
    worker_floor_percent: int = 85  # §10.2
    short_visit_minutes: int = 15  # §3.27: "15 minutes or less"
    double_up_apart_minutes: int = 15  # §8.14: "within 15 minutes of each other"
    no_reply_kind: str = "no_reply"  # the alert kind the no-reply procedure raises

    def __post_init__(self) -> None:
        # Types (whole numbers, a string) are checked by carecall.config before this runs.
        if not self.no_reply_kind:
            raise ConfigError("[kpi] no_reply_kind must be a non-empty string")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "no_reply_kind":
                continue
            if value < 0:
                raise ConfigError(f"[kpi] {f.name} must be a whole number >= 0, got {value!r}")
            if f.name.endswith("_percent") and value > 100:
                raise ConfigError(f"[kpi] {f.name} must be at most 100, got {value!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> KpiConfig:
        return settings.table("kpi")  # type: ignore[no-any-return]
