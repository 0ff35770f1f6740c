"""The office side of the sealed fields: checking an NI number typed on a form, saying
whether one is held, and the explicit, logged reveal (manager and finance only)."""

from __future__ import annotations

from sqlalchemy.orm import Session, object_session

from ivr.models import Worker
from ivr.sealed import Sealer
from ivr.sensitive import NIError, has_ni, normalise_ni, open_ni
from privacy import viewlog
from privacy.models import Channel
from privacy.registry import WORKER
from web.app import FormError

NI_READERS = frozenset({"manager", "finance"})  # payroll and the monitoring upload (spec 004 §10.2)


def ni_value(text: str) -> str:
    try:
        return normalise_ni(text)
    except NIError as exc:
        raise FormError({"ni_number": str(exc)}) from None


def ni_held(w: Worker) -> bool:
    session = object_session(w)
    return session is not None and w.id is not None and has_ni(session, w.id)


def reveal_ni(session: Session, sealer: Sealer, worker_id: int, *, actor: str, role: str,
              channel: str = Channel.WEB) -> str | None:
    """The clear NI number, recorded in the view log in the same transaction."""
    if role not in NI_READERS:
        raise PermissionError("only managers and finance see NI numbers")
    value = open_ni(session, sealer, worker_id)
    if value is not None:
        viewlog.record(session, actor=actor, role=role, channel=channel, kind=WORKER, subject_id=worker_id,
                       what="NI number revealed")
    return value
