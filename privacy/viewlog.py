"""Record and list views of a resident's or worker's personal details.

Page handlers call one hook, ``await viewed(ctx, entity, id)``, after loading what they
show: ``entity`` names what the page is about (a resident, worker, package, visit or
alert) and the hook resolves whom it names. The API calls :func:`viewed_keys` with the
references and worker numbers in its answer; a rostering system polling the same day
every minute is recorded once an hour per person, not a thousand times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.models import CarePackage, Resident, Visit, VisitWorker, Worker, utcnow
from privacy.models import Channel, PersonalDataView
from privacy.registry import RESIDENT, WORKER

API_DEDUPE = dt.timedelta(hours=1)


def record(session: Session, *, actor: str, role: str, channel: str, kind: str, subject_id: int, what: str,
           at: dt.datetime | None = None) -> None:
    column = "resident_id" if kind == RESIDENT else "worker_id"
    session.add(PersonalDataView(at=at or utcnow(), actor=actor, role=role, channel=channel, what=what,
                                 **{column: subject_id}))


def subjects_of(session: Session, entity: str, id: int) -> list[tuple[str, int]]:
    """Whom a page about ``entity`` #id shows: (kind, id) pairs."""
    if entity in ("resident", "residents"):
        return [(RESIDENT, id)] if session.get(Resident, id) else []
    if entity in ("worker", "workers"):
        return [(WORKER, id)] if session.get(Worker, id) else []
    if entity in ("package", "packages"):
        p = session.get(CarePackage, id)
        return [(RESIDENT, p.resident_id)] if p else []
    if entity == "visit":
        v = session.get(Visit, id)
        if v is None:
            return []
        workers = session.scalars(select(VisitWorker.worker_id).where(VisitWorker.visit_id == id))
        return [(RESIDENT, v.resident_id), *((WORKER, w) for w in workers)]
    if entity == "alert":
        from scheduler.models import Alert

        a = session.get(Alert, id)
        if a is None:
            return []
        return [*([(RESIDENT, a.resident_id)] if a.resident_id else []),
                *([(WORKER, a.worker_id)] if a.worker_id else [])]
    raise ValueError(f"unknown entity {entity!r}")


def _who(ctx: Any) -> tuple[str, str]:
    return ctx.user.username, ctx.user.role


async def viewed(ctx: Any, entity: str, id: int | str | None, what: str | None = None) -> None:
    """The page hook: record that the logged-in user viewed ``entity`` #id's details
    (``id`` None: a blank form for a new record, nothing to record)."""
    if id is None:
        return
    actor, role = _who(ctx)
    label = what or f"{entity.rstrip('s')} page"
    at = ctx.now()

    def work(session: Session) -> None:
        for kind, sid in subjects_of(session, entity, int(id)):
            record(session, actor=actor, role=role, channel=Channel.WEB, kind=kind, subject_id=sid, what=label, at=at)

    await ctx.db(work)


def record_keys(session: Session, *, actor: str, role: str, what: str, residents: Iterable[str],
                workers: Iterable[str], at: dt.datetime, channel: str = Channel.API) -> int:
    """One view per person named (by reference / worker number), skipping one already
    recorded for the same actor and purpose within the last hour. Returns rows written."""
    ids: list[tuple[str, int]] = []
    refs, numbers = sorted(set(residents)), sorted(set(workers))
    if refs:
        ids += [(RESIDENT, i) for i in session.scalars(select(Resident.id).where(Resident.reference.in_(refs)))]
    if numbers:
        ids += [(WORKER, i) for i in session.scalars(select(Worker.id).where(Worker.worker_number.in_(numbers)))]
    if not ids:
        return 0
    recent = session.execute(select(PersonalDataView.resident_id, PersonalDataView.worker_id).where(
        PersonalDataView.actor == actor, PersonalDataView.what == what,
        PersonalDataView.at > at - API_DEDUPE)).all()
    seen = {(RESIDENT, r) for r, _ in recent if r} | {(WORKER, w) for _, w in recent if w}
    written = 0
    for kind, sid in ids:
        if (kind, sid) not in seen:
            record(session, actor=actor, role=role, channel=channel, kind=kind, subject_id=sid, what=what, at=at)
            written += 1
    return written


async def viewed_keys(ctx: Any, what: str, *, residents: Iterable[str] = (), workers: Iterable[str] = ()) -> None:
    """The API hook: record views of everyone an answer names."""
    actor, role = _who(ctx)
    at = ctx.now()
    refs, numbers = list(residents), list(workers)
    await ctx.db(lambda s: record_keys(s, actor=actor, role=role, what=what, residents=refs, workers=numbers, at=at))


def views_of(session: Session, kind: str, subject_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    column = PersonalDataView.resident_id if kind == RESIDENT else PersonalDataView.worker_id
    q = select(PersonalDataView).where(column == subject_id).order_by(PersonalDataView.at.desc(),
                                                                       PersonalDataView.id.desc())
    if limit:
        q = q.limit(limit)
    return [{"at": v.at, "actor": v.actor, "role": v.role, "channel": v.channel, "what": v.what}
            for v in session.scalars(q)]
