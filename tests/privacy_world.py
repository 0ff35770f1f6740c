"""A world for the privacy tests: two residents and two workers with one of everything.

R003 (Cara White, a private client) and worker 1003 (Priya Patel) are the subjects;
R001 (Alice Brown) and worker 1001 (Wendy Walker) are the others, with their own rows
of every kind, so a test can check an export holds all of one and none of the other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing import invoices
from carecall.config import Settings
from ivr.corrections import cancel_visit
from ivr.models import (
    AuditEntry,
    CallRecord,
    LoginFailure,
    LoginLock,
    Resident,
    ResidentContact,
    Visit,
    Worker,
)
from ivr.sensitive import set_ni, site_sealer
from privacy import viewlog
from privacy.models import Channel
from scheduler.models import Alert, AlertAction, AlertCheck, AlertDelivery
from tests.billing_world import World, utc
from tests.helpers import factory_for, import_world

P0 = dt.date(2026, 1, 5)
NI = {"1003": "AB123456C", "1001": "CE654321A"}
CONTACTS = {"R003": ("Colin White", "+447700900333", "colin.white@example.org"),
            "R001": ("Adam Brown", "+447700900111", "adam.brown@example.org")}


@dataclasses.dataclass
class Planted:
    factory: sessionmaker[Session]
    settings: Settings
    ids: dict[str, dict[str, set[int]]]  # subject ("R003", "1003", ...) -> table -> ids
    resident_id: dict[str, int]
    worker_id: dict[str, int]


def _add(ids: dict[str, dict[str, set[int]]], subject: str, table: str, id: int) -> None:
    ids.setdefault(subject, {}).setdefault(table, set()).add(id)


def plant(settings: Settings) -> Planted:
    factory = factory_for(settings)
    import_world(settings, factory)
    sealer = site_sealer(settings.secret_path)
    w = World(factory)
    ids: dict[str, dict[str, set[int]]] = {}
    pairs = (("R003", "1003", "PRIV"), ("R001", "1001", "PO"))
    with factory.begin() as s:
        rid = {r.reference: r.id for r in s.scalars(select(Resident))}
        wid = {x.worker_number: x.id for x in s.scalars(select(Worker))}
        for ref, num, _ in pairs:
            name, phone, email = CONTACTS[ref]
            c = ResidentContact(resident_id=rid[ref], name=name, phone_e164=phone, email=email,
                                billing_address=f"{name}, {ref[-1]} Billing Street, London")
            s.add(c)
            s.flush()
            _add(ids, ref, "resident_contacts", c.id)
            set_ni(s, sealer, wid[num], NI[num])
            r = s.get(Resident, rid[ref])
            r.access_notes = f"Key safe by the back door of {r.address}"
            r.keysafe_reference = f"KS-{ref}"
    for ref, num, _ in pairs:
        v1 = w.visit(ref, utc(2026, 1, 7, 9), 30, workers=(num,), ref=f"V-{ref}-1")
        a1 = w.attend(v1, num, utc(2026, 1, 7, 9), utc(2026, 1, 7, 9, 30))
        v2 = w.visit(ref, utc(2026, 1, 8, 9), 30, workers=(num,), ref=f"V-{ref}-2")
        _add(ids, ref, "attendances", a1)
        _add(ids, num, "attendances", a1)
        with factory.begin() as s:
            visit2 = s.scalar(select(Visit).where(Visit.visit_ref == v2))
            cancel_visit(s, visit_id=visit2.id, reason="resident_cancelled", note=f"{CONTACTS[ref][0]} rang to cancel",
                         actor="coord", now=utc(2026, 1, 8, 7))
            visit1 = s.scalar(select(Visit).where(Visit.visit_ref == v1))
            _add(ids, ref, "visits", visit1.id)
            _add(ids, ref, "visits", visit2.id)
            line = s.get(Resident, rid[ref]).lines
            caller = line[0].e164 if line else None
            call = CallRecord(uniqueid=f"u-{ref}", script="checkin", started_at=utc(2026, 1, 7, 9), caller_e164=caller,
                              resident_id=rid[ref], worker_id=wid[num], worker_number_entered=num,
                              outcome="arrival", attendance_id=a1, visit_id=visit1.id,
                              detail=f"caller {caller}")
            s.add(call)
            s.flush()
            _add(ids, ref, "call_records", call.id)
            _add(ids, num, "call_records", call.id)
            alert = Alert(kind="no_reply", dedupe_key=f"no_reply:{ref}", visit_id=visit1.id, worker_id=wid[num],
                          resident_id=rid[ref], due_at=utc(2026, 1, 7, 9), raised_at=utc(2026, 1, 7, 9, 1),
                          detail=f"visit {v1}", resolution_note=f"{s.get(Resident, rid[ref]).name} was at the GP")
            s.add(alert)
            s.flush()
            _add(ids, ref, "alerts", alert.id)
            _add(ids, num, "alerts", alert.id)
            for obj, table in ((AlertAction(alert_id=alert.id, actor="coord", action="acknowledge",
                                            note=f"rang {CONTACTS[ref][0]}"), "alert_actions"),
                               (AlertCheck(alert_id=alert.id, step="next_of_kin", done_by="coord",
                                           done_at=utc(2026, 1, 7, 9, 5), note=f"{CONTACTS[ref][1]} no answer"),
                                "alert_checks"),
                               (AlertDelivery(alert_id=alert.id, channel="email", target="office@example.org",
                                              next_attempt_at=utc(2026, 1, 7, 9, 1)), "alert_deliveries")):
                s.add(obj)
                s.flush()
                _add(ids, ref, table, obj.id)
                _add(ids, num, table, obj.id)
            res = s.get(Resident, rid[ref])
            edit = AuditEntry(actor="coord", action="edit", entity="resident", entity_id=ref,
                              before=json.dumps({"name": res.name, "address": "old road"}),
                              after=json.dumps({"name": res.name, "address": res.address}))
            wedit = AuditEntry(actor="coord", action="edit", entity="worker", entity_id=num,
                               before=json.dumps({"name": s.get(Worker, wid[num]).name}), after="{}")
            s.add_all([edit, wedit])
            fail = LoginFailure(worker_number=num, line=caller or "withheld", at=utc(2026, 1, 7, 8, 59), uniqueid="x")
            s.add(fail)
            s.add(LoginLock(worker_number=num, line=caller or "withheld", until=utc(2026, 1, 7, 9, 30), failures=10))
            s.flush()
            _add(ids, ref, "audit_log", edit.id)
            _add(ids, num, "audit_log", wedit.id)
            _add(ids, num, "login_failures", fail.id)
            viewlog.record(s, actor="coord", role="coordinator", channel=Channel.WEB, kind="resident",
                           subject_id=rid[ref], what="resident page", at=utc(2026, 1, 7, 10))
            viewlog.record(s, actor="coord", role="coordinator", channel=Channel.WEB, kind="worker",
                           subject_id=wid[num], what="worker page", at=utc(2026, 1, 7, 10))
    invoices.issue(factory, settings, P0)
    with factory.begin() as s:
        from billing.models import Invoice, InvoiceLine

        for ln in s.scalars(select(InvoiceLine)):
            for ref, num, _ in pairs:
                if ln.resident_reference == ref:
                    _add(ids, ref, "billing_invoice_lines", ln.id)
                if ln.worker_number == num:
                    _add(ids, num, "billing_invoice_lines", ln.id)
        for inv in s.scalars(select(Invoice).where(Invoice.resident_id.is_not(None))):
            _add(ids, "R003" if inv.resident_id == rid["R003"] else "R001", "billing_invoices", inv.id)
    return Planted(factory, settings, ids, rid, wid)
