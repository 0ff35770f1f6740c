"""Failed-login throttling for the office login: per account and per client address.

Each key (``user:<name>``, ``ip:<address>``) may fail ``free`` times; every failure after
that locks the key for twice as long as the last (1 s, 2 s, 4 s … up to ``max_delay``).
While a key is locked the login is refused at once with 429 and the password is not even
checked, so guessing gains nothing. Nothing sleeps: the reactor answers immediately.
A key forgets its failures after ``forget`` seconds without one; a good password clears
the account's count (not the address's, so one valid account cannot reset an attacker's
address). Unknown names are counted exactly like real ones, so the lock reveals nothing.

State lives in this process's memory (bounded to ``max_keys``): two servers behind one
address each count separately, and a restart forgets — acceptable for a lock measured in
seconds to minutes; argon2 already makes each guess cost ~50 ms of CPU.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable


@dataclasses.dataclass
class _Entry:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(self, *, free: int = 3, ip_free: int = 10, base_delay: float = 1.0, max_delay: float = 900.0,
                 forget: float = 3600.0, max_keys: int = 20000, clock: Callable[[], float] = time.monotonic) -> None:
        self.free = free
        self.ip_free = ip_free
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget = forget
        self.max_keys = max_keys
        self.clock = clock
        self.entries: dict[str, _Entry] = {}

    @staticmethod
    def keys(username: str, address: str) -> tuple[str, str]:
        return f"user:{username.strip().lower()[:80]}", f"ip:{address}"

    def _entry(self, key: str, now: float) -> _Entry | None:
        e = self.entries.get(key)
        if e is not None and now - e.last > self.forget and now >= e.locked_until:
            del self.entries[key]
            return None
        return e

    def wait(self, keys: Iterable[str]) -> float:
        """Seconds until a login for these keys may be tried; 0 when it may be tried now."""
        now = self.clock()
        waits = [e.locked_until - now for k in keys if (e := self._entry(k, now)) is not None]
        return max([0.0, *waits])

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        for key in keys:
            e = self._entry(key, now)
            if e is None:
                if len(self.entries) >= self.max_keys:
                    self._prune(now)
                e = self.entries[key] = _Entry()
            e.failures += 1
            e.last = now
            free = self.ip_free if key.startswith("ip:") else self.free
            over = e.failures - free
            if over > 0:
                e.locked_until = now + min(self.max_delay, self.base_delay * 2 ** (over - 1))

    def succeeded(self, user_key: str) -> None:
        self.entries.pop(user_key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, e in self.entries.items() if now >= e.locked_until]:
            del self.entries[key]
        while len(self.entries) >= self.max_keys:  # all locked: drop the oldest
            del self.entries[min(self.entries, key=lambda k: self.entries[k].last)]
