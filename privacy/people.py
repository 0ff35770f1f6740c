"""A resident or worker looked up for export or erasure, with what identifies them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.models import Resident, ResidentContact, Worker
from ivr.sealed import Sealer
from ivr.sensitive import open_ni
from privacy.registry import RESIDENT, WORKER, Person

ERASED = "[erased]"


class NoSuchPerson(LookupError):
    """No resident with that reference / no worker with that number."""


def _add(out: dict[str, str], value: str | None, replacement: str = ERASED) -> None:
    if value and value.strip() and value.strip() not in out:
        out[value.strip()] = replacement


def resident_pseudonym(resident_id: int) -> str:
    return f"erased-resident-{resident_id}"


def worker_pseudonym(worker_id: int) -> str:
    return f"X{worker_id:07d}"  # fits workers.worker_number (8)


def find_id(session: Session, kind: str, key: str) -> int:
    if kind == RESIDENT:
        rid = session.scalar(select(Resident.id).where(Resident.reference == key))
    else:
        rid = session.scalar(select(Worker.id).where(Worker.worker_number == key))
    if rid is None:
        raise NoSuchPerson(f"no {kind} {key}")
    return rid


def load_person(session: Session, kind: str, id: int, sealer: Sealer | None = None) -> Person:
    """The person with every string that identifies them (longest first, so a name is
    replaced before a part of it)."""
    out: dict[str, str] = {}
    values: dict[str, tuple[str, ...]] = {}
    if kind == RESIDENT:
        r = session.get(Resident, id)
        if r is None:
            raise NoSuchPerson(f"no resident #{id}")
        pseudonym = key_pseudonym = resident_pseudonym(r.id)
        _add(out, r.reference, key_pseudonym)
        _add(out, r.name, pseudonym)
        _add(out, r.address)
        _add(out, r.address.replace("\n", ", "))
        _add(out, r.address.split("\n")[0].split(",")[0] if ("," in r.address or "\n" in r.address) else "")
        _add(out, r.postcode)
        _add(out, r.access_notes)
        _add(out, r.keysafe_reference)
        lines = tuple(ln.e164 for ln in r.lines)
        for e in lines:
            _add(out, e)
        for c in session.scalars(select(ResidentContact).where(ResidentContact.resident_id == r.id)):
            for v in (c.name, c.phone_e164, c.phone2_e164, c.email, c.billing_address):
                _add(out, v)
        values["lines"] = lines
        key = r.reference
    elif kind == WORKER:
        w = session.get(Worker, id)
        if w is None:
            raise NoSuchPerson(f"no worker #{id}")
        pseudonym = f"Erased worker {worker_pseudonym(w.id)}"
        key_pseudonym = worker_pseudonym(w.id)
        _add(out, w.worker_number, key_pseudonym)
        _add(out, w.name, pseudonym)
        _add(out, w.mobile_e164)
        if sealer is not None:
            _add(out, open_ni(session, sealer, w.id))
        key = w.worker_number
    else:
        raise ValueError(kind)
    ordered = dict(sorted(out.items(), key=lambda kv: -len(kv[0])))
    return Person(kind, id, key, pseudonym, key_pseudonym, ordered, values)
