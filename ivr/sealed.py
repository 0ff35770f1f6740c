"""Sensitive fields sealed at rest: key-safe codes, National Insurance numbers, device secrets.

These are encrypted with AES-256-GCM under a key derived (HKDF-SHA256) from the site's
secret file, which lives outside the database, so a leaked database or dump alone reveals
none of them. Each value is bound to where it belongs (``context``, e.g.
``"keysafe:resident:12"``) as associated data: a sealed value copied into another row or
column does not open there. ``cryptography`` is used rather than anything hand-written.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "s1:"
_INFO = b"carecall sealed fields v1"


class SealError(ValueError):
    """A sealed value that does not open under this key and context."""


class Sealer:
    """Seal and open short strings; one instance per site key."""

    def __init__(self, site_key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(site_key)
        self._aead = AESGCM(derived)

    def seal(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(nonce + ct).decode("ascii")

    def open(self, token: str, *, context: str) -> str:
        if not token.startswith(PREFIX):
            raise SealError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(token[len(PREFIX):].encode("ascii"))
            return self._aead.decrypt(raw[:12], raw[12:], context.encode("utf-8")).decode("utf-8")
        except (InvalidTag, ValueError) as exc:
            raise SealError("sealed value does not open with this key and context") from exc
