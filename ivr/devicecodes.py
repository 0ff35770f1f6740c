"""Matching a keyed device code to the home it was read in. Pure: no database, no clock.

A code is checked against the devices of the homes the worker can be at (their visits
due now, or an open arrival), for every time step from ``late_limit`` ago to one step
ahead (device clocks drift). A code of the current step or one either side is *fresh*;
an older one is accepted as *entered late* (the worker had no signal and rang later),
and the check-in is logged at the start of the code's step, not at the call's time.
A code that opens two homes at once is refused as ambiguous rather than guessed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
from collections.abc import Iterable

import pyotp

FRESH_STEPS = 1  # ±1 step: clock drift and the time to key six digits


@dataclasses.dataclass(frozen=True)
class DeviceKey:
    device_id: int
    resident_id: int
    secret: str  # base32
    digits: int = 6
    step_seconds: int = 60


@dataclasses.dataclass(frozen=True)
class CodeMatch:
    device_id: int
    resident_id: int
    counter: int  # the code's time step
    at: dt.datetime  # when the code was shown: the step's start (late) or now (fresh)
    late: bool


class Refusal:
    NO_MATCH = "no_match"
    AMBIGUOUS = "ambiguous"
    USED = "used"


def valid_secret(secret: str) -> bool:
    """A base32 secret of at least 80 bits (RFC 4226 asks 128, tokens ship 80–160)."""
    try:
        raw = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= 10


def code_at(key: DeviceKey, counter: int) -> str:
    return pyotp.TOTP(key.secret, digits=key.digits, interval=key.step_seconds).generate_otp(counter)


def match_code(code: str, keys: Iterable[DeviceKey], now: dt.datetime,
               late_limit: dt.timedelta) -> CodeMatch | str:
    """The one device step this code belongs to, or a :class:`Refusal` reason."""
    matches: list[CodeMatch] = []
    t = now.timestamp()
    for key in keys:
        if len(code) != key.digits or not code.isdigit():
            continue
        step = key.step_seconds
        current = int(t // step)
        oldest = int((t - late_limit.total_seconds()) // step)
        for counter in range(current + FRESH_STEPS, min(oldest, current - FRESH_STEPS) - 1, -1):
            if pyotp.utils.strings_equal(code_at(key, counter), code):
                late = counter < current - FRESH_STEPS
                at = dt.datetime.fromtimestamp(counter * step, dt.UTC) if late else now
                matches.append(CodeMatch(key.device_id, key.resident_id, counter, at, late))
                break
    homes = {m.resident_id for m in matches}
    if not matches:
        return Refusal.NO_MATCH
    if len(homes) > 1:
        return Refusal.AMBIGUOUS
    return min(matches, key=lambda m: (m.late, -m.counter))
