"""Local time at the edges, UTC inside.

Imports and screens speak Europe/London (configurable); the database speaks UTC. The
two conversions live here so that a wall-clock time that happens twice (01:30 on the
last Sunday of October) or never (01:30 on the last Sunday of March) is handled in one
place, with a clear error rather than a silent guess.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "Europe/London"
LOCAL_FORMAT = "%Y-%m-%d %H:%M"


class LocalTimeError(ValueError):
    """A local time that cannot name one instant."""


def zone(name: str = DEFAULT_ZONE) -> ZoneInfo:
    return ZoneInfo(name)


def local_to_utc(naive: dt.datetime, tz: ZoneInfo, *, fold: int | None = None) -> dt.datetime:
    """Interpret a wall-clock time in ``tz``.

    A time skipped by the spring-forward gap is refused. A time that happens twice is
    refused unless ``fold`` says which (0 = the first, BST; 1 = the second, GMT).
    """
    if naive.tzinfo is not None:
        raise LocalTimeError("expected a local wall-clock time without a zone")
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        if first.astimezone(dt.UTC) > second.astimezone(dt.UTC):  # spring gap
            raise LocalTimeError(f"{naive:%Y-%m-%d %H:%M} does not exist in {tz.key} (clocks go forward)")
        if fold is None:
            raise LocalTimeError(f"{naive:%Y-%m-%d %H:%M} happens twice in {tz.key} (clocks go back)")
        return (second if fold else first).astimezone(dt.UTC)
    return first.astimezone(dt.UTC)


_EXACT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}\Z")


def parse_local(text: str, tz: ZoneInfo) -> dt.datetime:
    """``YYYY-MM-DD HH:MM`` local → aware UTC. An ambiguous time may end ``+01:00``/``+00:00``."""
    text = text.strip()
    offset = None
    if len(text) > 16 and text[16:17] in "+-":
        text, offset = text[:16], text[16:]
    try:
        # The usual exact form through fromisoformat (about 10x quicker than strptime: an
        # import parses two per visit); anything else strptime decides, as before.
        naive = dt.datetime.fromisoformat(text) if _EXACT.match(text) else dt.datetime.strptime(text, LOCAL_FORMAT)
    except ValueError as exc:
        raise LocalTimeError(f"expected YYYY-MM-DD HH:MM, got {text!r}") from exc
    if offset is None:
        return local_to_utc(naive, tz)
    for fold in (0, 1):
        candidate = naive.replace(tzinfo=tz, fold=fold)
        if candidate.strftime("%z") == offset.replace(":", ""):
            return candidate.astimezone(dt.UTC)
    raise LocalTimeError(f"offset {offset} is not valid for {text} in {tz.key}")


def to_local(instant: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    if instant.tzinfo is None:
        raise LocalTimeError("naive datetime: UTC instants must carry their zone")
    return instant.astimezone(tz)


def format_local(instant: dt.datetime | None, tz: ZoneInfo, fmt: str = LOCAL_FORMAT) -> str:
    return "" if instant is None else to_local(instant, tz).strftime(fmt)


def local_day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants of local midnight starting and ending ``day`` (23 or 25 h on DST days)."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    return start, end
