"""Phone numbers: one normal form (E.164) and one masked form for logs."""

from __future__ import annotations

import functools

import phonenumbers

DEFAULT_REGION = "GB"

# What Asterisk puts in agi_callerid when there is no usable number.
WITHHELD = {"", "unknown", "anonymous", "restricted", "private", "unavailable", "withheld"}


class PhoneNumberError(ValueError):
    """Text that is not a valid phone number for the region."""


def normalise(text: str, region: str = DEFAULT_REGION) -> str:
    """Any common spelling (``020 8698 9911``, ``+44 (0)20…``, ``00442086989911``) → E.164."""
    cleaned = text.strip().replace("(0)", "")
    if not cleaned:
        raise PhoneNumberError("empty phone number")
    try:
        parsed = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneNumberError(f"not a phone number: {mask(text)}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise PhoneNumberError(f"not a valid {region} phone number: {mask(text)}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=65536)
def caller_e164(callerid: str | None, region: str = DEFAULT_REGION) -> str | None:
    """The caller ID as E.164, or None when it is withheld or not a valid number.

    Cached: the same homes ring every day, and parsing costs more than the rest of
    the dialog's own work for a call."""
    if callerid is None or callerid.strip().lower() in WITHHELD:
        return None
    try:
        return normalise(callerid, region)
    except PhoneNumberError:
        return None


@functools.lru_cache(maxsize=4096)
def mask(number: str | None) -> str:
    """All but the last three digits hidden: enough for the office to tell lines apart.

    Cached: every log line of a call masks the same caller."""
    if not number:
        return "-"
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= 3:
        return "*" * len(digits)
    return "*" * (len(digits) - 3) + "".join(digits[-3:])


@functools.lru_cache(maxsize=4096)
def format_uk(number: str | None) -> str:
    """E.164 as a UK office reads it (``+442086989911`` → ``020 8698 9911``); foreign numbers
    international. The one display form of a phone number on every page; ``""`` for none."""
    if not number:
        return ""
    try:
        parsed = phonenumbers.parse(number, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return number
    fmt = (phonenumbers.PhoneNumberFormat.NATIONAL if parsed.country_code == 44
           else phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return phonenumbers.format_number(parsed, fmt)
