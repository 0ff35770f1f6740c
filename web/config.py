"""The ``[web]`` table, registered with :func:`carecall.config.register_table` (checked once at start).

The office web reads these keys where it uses them (``web/app.py``, ``web/site.py``);
this dataclass is the list of what may be set, so a typo is an error at start rather
than a login throttle silently left at its default. A new ``[web]`` key goes here too.
"""

from __future__ import annotations

import dataclasses

from carecall.config import ConfigError, register_table


@register_table("web")
@dataclasses.dataclass(frozen=True)
class WebTable:
    poll_seconds: float = 2.0  # how often the live board reads the database
    session_idle_minutes: float = 60.0  # signed out after this long without a request
    session_max_hours: float = 12.0  # and after this long whatever happens
    login_free_attempts: int = 3  # wrong passwords per account before the growing delay
    login_ip_free_attempts: int = 10  # wrong passwords per address before the growing delay
    login_max_delay_seconds: float = 900.0
    secure_cookies: bool = False  # true behind an https proxy (automatic when base_url is https)

    def __post_init__(self) -> None:
        for name in ("poll_seconds", "session_idle_minutes", "session_max_hours"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[web] {name} must be positive, got {getattr(self, name)!r}")
        for name in ("login_free_attempts", "login_ip_free_attempts", "login_max_delay_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[web] {name} must not be negative, got {getattr(self, name)!r}")
