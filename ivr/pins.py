"""Worker PINs: a keyed hash, checked in microseconds.

A 4-digit PIN has 10,000 values, so a slow password hash buys nothing against someone
holding the database (they can try them all anyway) while costing 50-100 ms of CPU on
every call. HMAC-SHA256 under a secret that lives outside the database makes a leaked
table useless without the key file, at microsecond cost; guessing by phone is stopped by
lockouts, not by the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_BYTES = 32


class PinKeyError(RuntimeError):
    """The PIN key file is missing, unreadable or too permissive."""


def valid_pin(pin: str) -> bool:
    return len(pin) == 4 and pin.isdigit()


def load_or_create_key(path: Path) -> bytes:
    """Read the secret, creating it (mode 0600) on first start of a new site."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(KEY_BYTES).encode() + b"\n")
    if path.stat().st_mode & 0o077:
        raise PinKeyError(f"{path} is readable by other users; chmod 600 it")
    text = path.read_bytes().strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PinKeyError(f"{path} does not hold a hex key") from exc
    if len(key) < 16:
        raise PinKeyError(f"{path} holds too short a key")
    return key


class PinHasher:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @property
    def site_key(self) -> bytes:
        """The site secret, for deriving other keys (:mod:`ivr.sealed`); never stored or logged."""
        return self._key

    def hash(self, worker_number: str, pin: str) -> str:
        # The worker number is mixed in so equal PINs give different hashes.
        msg = f"{worker_number}\x00{pin}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def verify(self, worker_number: str, pin: str, stored: str) -> bool:
        return hmac.compare_digest(self.hash(worker_number, pin), stored)
