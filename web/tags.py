"""Home tags: what is written on the NFC sticker and printed as a QR code. Pure functions.

A tag carries ``<base_url>/t/<tag_id>.<signature>``: a random 80-bit id and an HMAC
(site key) over the id *and the home it was issued for*. Forging a tag for a home needs
the site key; a tag's id typed onto another sticker still names its own home, and one
whose id or home was altered fails the signature. A URL (rather than bare text) lets an
Android phone open the worker app straight from a tap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_PAYLOAD = re.compile(r"(?:^|/t/)(?P<tag>[A-Z2-7]{16})\.(?P<sig>[A-Z2-7]{16})$")


def new_tag_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii")


def signature(site_key: bytes, tag_id: str, resident_id: int) -> str:
    mac = hmac.new(site_key, f"carecall-tag\x00{tag_id}\x00{resident_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:10]).decode("ascii")


def payload(base_url: str, site_key: bytes, tag_id: str, resident_id: int) -> str:
    return f"{base_url.rstrip('/')}/t/{tag_id}.{signature(site_key, tag_id, resident_id)}"


def parse(text: str) -> tuple[str, str] | None:
    """(tag_id, signature) from a scanned URL or bare ``id.sig``; None for anything else."""
    m = _PAYLOAD.search(text.strip()[:300])
    return (m.group("tag"), m.group("sig")) if m else None


def verify(site_key: bytes, tag_id: str, sig: str, resident_id: int) -> bool:
    return hmac.compare_digest(signature(site_key, tag_id, resident_id), sig)
