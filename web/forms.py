"""Server-side checks for form fields: every value a handler uses passes through here."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from ivr.clock import LocalTimeError, parse_local
from web.app import Ctx, FormError, HTTPError

TEAM = re.compile(r"^[\w .&'-]{0,80}$")


def int_field(ctx: Ctx, name: str, *, required: bool = True) -> int | None:
    text = ctx.field(name, limit=12)
    if not text:
        if required:
            raise FormError({name: "is required"})
        return None
    if not text.isdigit() or not text.isascii() or len(text) > 9:
        raise FormError({name: "must be a number"})
    return int(text)


def local_time_field(ctx: Ctx, name: str, tz: ZoneInfo) -> dt.datetime:
    """A ``datetime-local`` value (``YYYY-MM-DDTHH:MM``) or ``YYYY-MM-DD HH:MM``, as UTC."""
    text = ctx.field(name, limit=25).replace("T", " ")
    if not text:
        raise FormError({name: "is required"})
    try:
        return parse_local(text[:16] if len(text) > 16 and text[16] == ":" else text, tz)
    except LocalTimeError as exc:
        raise FormError({name: str(exc)}) from exc


def day_arg(ctx: Ctx, tz: ZoneInfo) -> dt.date:
    text = ctx.arg("day", limit=10)
    if not text:
        return ctx.now().astimezone(tz).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise HTTPError(400, "day must be a date YYYY-MM-DD") from exc


def team_arg(ctx: Ctx) -> str:
    text = ctx.arg("team", limit=80)
    if not TEAM.match(text):
        raise HTTPError(400, "team must be letters, digits and spaces")
    return text
