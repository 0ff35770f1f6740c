"""Small builders shared by tests: a session factory and a world imported from CSV."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from carecall.config import Settings
from ivr.clock import format_local
from ivr.db import make_engine, session_factory
from ivr.importer import ImportContext, import_csv
from ivr.pins import PinHasher, load_or_create_key
from ivr.sensitive import site_sealer

DATA = Path(__file__).with_name("data")


def factory_for(settings: Settings) -> sessionmaker[Session]:
    return session_factory(make_engine(settings.db_url))


def context_for(settings: Settings) -> ImportContext:
    return ImportContext(tz=settings.tz, region=settings.phone_region,
                         hasher=PinHasher(load_or_create_key(settings.secret_path)),
                         sealer=site_sealer(settings.secret_path))


def import_world(settings: Settings, factory: sessionmaker[Session], visits_csv: str | None = None) -> None:
    """Residents, workers and packages from tests/data, then the given visits."""
    ctx = context_for(settings)
    for kind in ("residents", "workers", "packages"):
        report = import_csv(factory, kind, (DATA / f"{kind}.csv").read_bytes(), ctx)
        assert report.ok, report.errors
    if visits_csv is not None:
        report = import_csv(factory, "visits", visits_csv, ctx)
        assert report.ok, report.errors


def visit_row(ref: str, resident: str, start: dt.datetime, minutes: int, workers: str, critical: str = "no",
              settings: Settings | None = None) -> str:
    """One visits.csv row with local times computed from an aware ``start``."""
    tz = settings.tz if settings else dt.UTC
    end = start + dt.timedelta(minutes=minutes)
    return f"{ref},{resident},{format_local(start, tz)},{format_local(end, tz)},{workers},{critical}"


VISITS_HEADER = "visit_ref,resident_reference,planned_start,planned_end,workers,time_critical"


def add_visits(settings: Settings, factory: sessionmaker[Session], *rows: tuple) -> None:
    """Import visits given as ``visit_row`` argument tuples (ref, resident, start, minutes, workers)."""
    text = "\n".join([VISITS_HEADER, *(visit_row(*r, settings=settings) for r in rows)]) + "\n"
    report = import_csv(factory, "visits", text, context_for(settings))
    assert report.ok, report.errors


def on_today(now: dt.datetime, minutes: int, settings: Settings) -> dt.datetime:
    """``now`` + ``minutes``, pulled inside today's local date (00:00 … 23:40), for visits a test reads on
    today's board while the server runs on the real clock: near midnight "five minutes
    ago" is yesterday and "in twenty minutes" is tomorrow. A start pulled back to 23:40
    has begun at most 20 minutes ago, so such a visit is still "due" (late after 30)."""
    midnight = dt.datetime.combine(dt.datetime.now(settings.tz).date(), dt.time(), settings.tz)
    last = midnight + dt.timedelta(hours=23, minutes=40)
    at = now + dt.timedelta(minutes=minutes)
    return min(max(at, midnight.astimezone(dt.UTC)), last.astimezone(dt.UTC))
