"""``[notices]`` and ``[council]``: who is told what, in the provider's name.

Both are typed tables (``carecall.config.register_table``): a typo'd key or a wrong
type is a named error at start, never a brokerage address silently missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from carecall.config import ConfigError, register_table


def _addresses(table: str, key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"[{table}] {key} must be a table of funder = \"address\"")
    bad = [k for k, v in value.items() if "@" not in v or any(c.isspace() for c in v.strip())]
    if bad:
        raise ConfigError(f"[{table}] {key}: not an e-mail address for {', '.join(sorted(bad))}")
    return {k: v.strip() for k, v in value.items()}


@register_table("notices")
@dataclasses.dataclass(frozen=True)
class NoticesConfig:
    """Missed-visit e-mails (spec §3.44), lateness notices (§5.26), invitations and quality calls (§5.34)."""

    # Missed-visit notices: off only if explicitly disabled.
    missed_enabled: bool = True
    # funder (as in residents.funder) -> the Homecare Team (Brokerage) address told of a missed visit.
    brokerage_email: Mapping[str, str] = dataclasses.field(default_factory=dict)
    provider_name: str = "your home care provider"
    office_phone: str = ""
    # Lateness notices: the per-resident minutes are on the resident's preferences.
    lateness_enabled: bool = True
    lateness_attempts: int = 2
    lateness_retry_minutes: int = 3
    # The sound file (no extension, in Asterisk's sounds path) saying the provider's name,
    # and where the other recorded prompts are (docs/outreach.md lists them).
    provider_sound: str = "carecall/provider-name"
    sounds_dir: str = "carecall"
    # Family invitations: how long the one-time link works.
    invite_hours: int = 72
    # Quality calls: how many opted-in residents are called each month, and the attempts each.
    survey_sample: int = 20
    survey_attempts: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "brokerage_email", _addresses("notices", "brokerage_email", self.brokerage_email))
        for key, low, high in (("lateness_attempts", 1, 5), ("lateness_retry_minutes", 1, 60),
                               ("invite_hours", 1, 24 * 14), ("survey_sample", 0, 10000), ("survey_attempts", 1, 5)):
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(f"[notices] {key} must be between {low} and {high}, got {value}")
        if not self.provider_name.strip():
            raise ConfigError("[notices] provider_name must not be empty")
        for key in ("provider_sound", "sounds_dir"):
            value = getattr(self, key)
            if not value or any(c in value for c in " \"'\n") or value.endswith((".gsm", ".wav", ".sln", "/")):
                raise ConfigError(f"[notices] {key} must be a sound path without extension, spaces or quotes")


@register_table("council")
@dataclasses.dataclass(frozen=True)
class CouncilConfig:
    """The commissioners' read-only view (spec §5.19)."""

    # Funders whose commissioners see residents as a pseudonym ("P-3F2A…") instead of name and address.
    pseudonymise: tuple[str, ...] = ()
