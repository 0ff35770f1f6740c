"""CSV import of residents, workers, care packages and visits.

All or nothing: every row is checked first (against the file and the database), every
bad row is reported with its line number and reason, and only a clean file is written,
in one transaction. Re-importing a key (reference, worker number, visit_ref …) updates
that record, so a rostering system can send its whole schedule again.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from ivr.clock import LocalTimeError, format_local, parse_local
from ivr.db import reading
from ivr.models import (
    AuditEntry,
    CarePackage,
    ContactRelation,
    Resident,
    ResidentContact,
    ResidentLine,
    Visit,
    VisitWorker,
    Worker,
)
from ivr.phone import PhoneNumberError, normalise
from ivr.pins import PinHasher, valid_pin
from ivr.sealed import Sealer
from ivr.sensitive import NIError, normalise_ni, set_ni
from ivr.text import control_problem

# Feature packages append theirs (register_kind).
KINDS = ["residents", "workers", "packages", "visits", "contacts", "devices"]

COLUMNS: dict[str, tuple[str, ...]] = {
    "residents": ("reference", "name", "landline", "address", "postcode", "funder", "phone_code"),
    "workers": ("worker_number", "name", "pin", "mobile"),
    "packages": (
        "resident_reference", "purchase_order", "funder", "weekly_hours", "hourly_rate",
        "weekend_rate", "bank_holiday_rate", "start_date", "end_date",
    ),
    "visits": ("visit_ref", "resident_reference", "planned_start", "planned_end", "workers", "time_critical"),
    "contacts": ("resident_reference", "name", "relation", "relation_note", "phone", "phone2", "email",
                 "notify_missed", "billing_address"),
    "devices": ("serial", "resident_reference", "secret", "digits", "step_seconds"),
}
# Columns that may be left empty; every other listed column must have a value.
OPTIONAL = {"landline", "address", "postcode", "funder", "phone_code", "mobile", "end_date",
            "relation", "relation_note", "phone", "phone2", "email", "notify_missed", "billing_address",
            "purchase_order", "digits", "step_seconds"}
# A contacts file's relation column: the words an office types, to the stored value.
RELATIONS = {"next_of_kin": ContactRelation.NEXT_OF_KIN, "next of kin": ContactRelation.NEXT_OF_KIN,
             "nok": ContactRelation.NEXT_OF_KIN, "representative": ContactRelation.REPRESENTATIVE,
             "other": ContactRelation.OTHER, "": ContactRelation.NEXT_OF_KIN}
OPTIONAL_HEADERS = {"team", "ni_number", "notes"}  # read when present, never required
MAX_FIELD = 500
MAX_ROWS = 500_000


@dataclasses.dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclasses.dataclass
class ImportReport:
    kind: str
    created: int = 0
    updated: int = 0
    errors: list[RowError] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if self.errors:
            return f"{self.kind}: nothing imported, {len(self.errors)} bad row(s)"
        return f"{self.kind}: {self.created} created, {self.updated} updated"


class _Bad(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class ImportContext:
    tz: ZoneInfo
    region: str
    hasher: PinHasher
    actor: str = "import"
    sealer: Sealer | None = None  # seals workers' NI numbers (ivr.sensitive); None: the column is refused


# --- field parsers: each raises _Bad with a message an office user can act on ---------


def _text(value: str, name: str, limit: int = 200) -> str:
    value = value.strip()
    if len(value) > limit:
        raise _Bad(f"{name} is longer than {limit} characters")
    return value


def _code(value: str, name: str, lo: int, hi: int) -> str:
    value = value.strip()
    if not value.isdigit() or not value.isascii() or not lo <= len(value) <= hi:
        span = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise _Bad(f"{name} must be {span} digits, got {value!r}")
    return value


def _ref(value: str, name: str) -> str:
    value = value.strip()
    if not value or len(value) > 40 or any(c.isspace() for c in value) or not value.isprintable():
        raise _Bad(f"{name} must be 1 to 40 characters without spaces, got {value!r}")
    return value


def _decimal(value: str, name: str, places: int = 2) -> Decimal:
    try:
        d = Decimal(value.strip().lstrip("£"))
    except InvalidOperation as exc:
        raise _Bad(f"{name} must be a number, got {value!r}") from exc
    if not d.is_finite() or d < 0:
        raise _Bad(f"{name} must be zero or more, got {value!r}")
    if d.as_tuple().exponent < -places:  # type: ignore[operator]
        raise _Bad(f"{name} has more than {places} decimal places: {value!r}")
    if d >= Decimal(10) ** 6:
        raise _Bad(f"{name} is too large: {value!r}")
    return d


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise _Bad(f"{name} must be a date YYYY-MM-DD, got {value!r}") from exc


def _yes_no(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in ("yes", "y", "true", "1"):
        return True
    if v in ("no", "n", "false", "0", ""):
        return False
    raise _Bad(f"{name} must be yes or no, got {value!r}")


# --- reading ------------------------------------------------------------------------


def read_rows(data: bytes | str, kind: str) -> tuple[list[tuple[int, dict[str, str]]], list[RowError]]:
    """Decode and split a CSV; header problems are reported as line 1."""
    errors: list[RowError] = []
    return list(iter_rows(data, kind, errors)), errors


def iter_rows(data: bytes | str, kind: str, errors: list[RowError]) -> Iterator[tuple[int, dict[str, str]]]:
    """The CSV's rows one at a time (memory stays flat for a large file), each bad one
    appended to ``errors`` instead; header problems are reported as line 1."""
    if kind not in COLUMNS:
        raise ValueError(f"unknown import kind {kind!r}; expected one of {', '.join(KINDS)}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            errors.append(RowError(1, f"the file is not UTF-8 text (byte {exc.start})"))
            return
    if "\x00" in data:
        errors.append(RowError(1, "the file contains NUL bytes; is it a spreadsheet rather than CSV?"))
        return
    reader = csv.reader(io.StringIO(data, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        errors.append(RowError(1, "the file is empty; expected a header row"))
        return
    except csv.Error as exc:
        errors.append(RowError(1, f"unreadable header: {exc}"))
        return
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS[kind] if c not in names and c not in OPTIONAL]
    if missing:
        errors.append(RowError(1, f"missing column(s): {', '.join(missing)}"))
        return
    dupes = sorted({n for n in names if names.count(n) > 1 and (n in COLUMNS[kind])})
    if dupes:
        errors.append(RowError(1, f"column(s) given twice: {', '.join(dupes)}"))
        return
    wanted = set(COLUMNS[kind]) | OPTIONAL_HEADERS
    count = 0
    try:
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue  # blank line
            if count >= MAX_ROWS:
                errors.append(RowError(line, f"more than {MAX_ROWS} rows; split the file"))
                break
            if len(fields) < len(names):
                fields = fields + [""] * (len(names) - len(fields))
            row = {n: f for n, f in zip(names, fields, strict=False) if n in wanted}
            long = [n for n, f in row.items() if len(f) > MAX_FIELD]
            if long:
                errors.append(RowError(line, f"{long[0]} is longer than {MAX_FIELD} characters"))
                continue
            # Every imported field is one line of text (ivr.text): a CR in a name split the
            # board's live updates, an ESC forges terminal output.
            bad = next(((n, p) for n, f in row.items() if (p := control_problem(f)) is not None), None)
            if bad is not None:
                errors.append(RowError(line, f"{bad[0]} {bad[1]}"))
                continue
            count += 1
            yield line, row
    except csv.Error as exc:
        errors.append(RowError(reader.line_num, f"unreadable CSV: {exc}"))


# --- per-kind validation and apply --------------------------------------------------


def _required(row: dict[str, str], kind: str) -> None:
    for col in COLUMNS[kind]:
        if col not in OPTIONAL and not row.get(col, "").strip():
            raise _Bad(f"{col} is empty")


def _check_residents(rows: Iterable[tuple[int, dict[str, str]]], ctx: ImportContext, session: Session,
                     errors: list[RowError]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen_refs: dict[str, int] = {}
    seen_codes: dict[str, str] = {}
    coded = select(Resident.phone_code, Resident.reference).where(Resident.phone_code.is_not(None))
    taken = dict(session.execute(coded).all())
    for line, row in rows:
        try:
            _required(row, "residents")
            ref = _ref(row["reference"], "reference")
            if ref in seen_refs:
                raise _Bad(f"reference {ref} appears again (first on line {seen_refs[ref]})")
            lines: list[str] = []
            for part in row.get("landline", "").split(";"):
                if part.strip():
                    try:
                        e164 = normalise(part, ctx.region)
                    except PhoneNumberError as exc:
                        raise _Bad(f"landline: {exc}") from exc
                    if e164 not in lines:
                        lines.append(e164)
            code = row.get("phone_code", "").strip() or None
            if code is not None:
                code = _code(code, "phone_code", 3, 8)
                owner = seen_codes.get(code) or taken.get(code)
                if owner is not None and owner != ref:
                    raise _Bad(f"phone_code {code} already belongs to resident {owner}")
                seen_codes[code] = ref
            out.append({
                "reference": ref,
                "name": _text(row["name"], "name"),
                "address": _text(row.get("address", ""), "address", MAX_FIELD),
                "postcode": _text(row.get("postcode", ""), "postcode", 12).upper(),
                "funder": _text(row.get("funder", ""), "funder", 80),
                "team": _text(row.get("team", ""), "team", 80),
                "phone_code": code,
                "lines": lines,
            })
            seen_refs[ref] = line
        except _Bad as exc:
            errors.append(RowError(line, str(exc)))
    return out


def _apply_residents(items: list[dict[str, Any]], session: Session, report: ImportReport) -> None:
    existing = {r.reference: r for r in session.scalars(
        select(Resident).where(Resident.reference.in_([i["reference"] for i in items])))}
    # Free every phone code being moved first, so swapping codes between homes works.
    moving = [r for r in existing.values() if r.phone_code is not None]
    for r in moving:
        r.phone_code = None
    session.flush()
    for item in items:
        lines = item.pop("lines")
        res = existing.get(item["reference"])
        if res is None:
            res = Resident(**item)
            session.add(res)
            report.created += 1
        else:
            for k, v in item.items():
                setattr(res, k, v)
            report.updated += 1
        # Keep the rows of lines that stay: replacing the collection would insert the
        # new rows before deleting the old and trip the (resident, e164) constraint.
        kept = [line for line in res.lines if line.e164 in lines]
        res.lines = kept + [ResidentLine(e164=e) for e in lines if e not in {k.e164 for k in kept}]


def _check_workers(rows: Iterable[tuple[int, dict[str, str]]], ctx: ImportContext, session: Session,
                   errors: list[RowError]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            _required(row, "workers")
            number = _code(row["worker_number"], "worker_number", 1, 8)
            if number in seen:
                raise _Bad(f"worker_number {number} appears again (first on line {seen[number]})")
            pin = row["pin"].strip()
            if not valid_pin(pin):
                raise _Bad("pin must be exactly 4 digits")
            mobile = None
            if row.get("mobile", "").strip():
                try:
                    mobile = normalise(row["mobile"], ctx.region)
                except PhoneNumberError as exc:
                    raise _Bad(f"mobile: {exc}") from exc
            ni = None
            if row.get("ni_number", "").strip():
                if ctx.sealer is None:
                    raise _Bad("ni_number cannot be stored here (no site key to seal it with)")
                try:
                    ni = normalise_ni(row["ni_number"])
                except NIError as exc:
                    raise _Bad(f"ni_number {exc}") from exc
            out.append({
                "_ni": ni,
                "worker_number": number,
                "name": _text(row["name"], "name"),
                "pin_hash": ctx.hasher.hash(number, pin),
                "mobile_e164": mobile,
                "team": _text(row.get("team", ""), "team", 80),
            })
            seen[number] = line
        except _Bad as exc:
            errors.append(RowError(line, str(exc)))
    return out


def _apply_workers(items: list[dict[str, Any]], session: Session, report: ImportReport,
                   sealer: Sealer | None = None) -> None:
    existing = {w.worker_number: w for w in session.scalars(
        select(Worker).where(Worker.worker_number.in_([i["worker_number"] for i in items])))}
    sealed: list[tuple[Worker, str]] = []
    for item in items:
        ni = item.pop("_ni", None)
        w = existing.get(item["worker_number"])
        if w is None:
            w = Worker(**item)
            session.add(w)
            report.created += 1
        else:
            for k, v in item.items():
                setattr(w, k, v)
            report.updated += 1
        if ni is not None:
            sealed.append((w, ni))
    if sealed and sealer is not None:
        session.flush()  # the sealed value is bound to the worker's id
        for w, ni in sealed:
            set_ni(session, sealer, w.id, ni)


def _resident_ids(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Resident.reference, Resident.id)).all())


def _check_packages(rows: Iterable[tuple[int, dict[str, str]]], ctx: ImportContext, session: Session,
                    errors: list[RowError]) -> list[dict[str, Any]]:
    residents = _resident_ids(session)
    po_optional: set[str] = set()
    for rule in PO_OPTIONAL:
        po_optional |= rule(session)
    out: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, dt.date], int] = {}
    for line, row in rows:
        try:
            _required(row, "packages")
            ref = row["resident_reference"].strip()
            if ref not in residents:
                raise _Bad(f"resident_reference {ref!r} is not a known resident")
            start = _date(row["start_date"], "start_date")
            end = _date(row["end_date"], "end_date") if row.get("end_date", "").strip() else None
            if end is not None and end < start:
                raise _Bad("end_date is before start_date")
            po = _text(row["purchase_order"], "purchase_order", 60)
            funder = _text(row["funder"], "funder", 80)
            if not po and funder not in po_optional:
                raise _Bad(f"purchase_order is empty, and funder {funder!r} requires one (a private funder, or "
                           "one marked po_required = no in the funders list, does not)")
            key = (ref, po, start)
            if key in seen:
                raise _Bad(f"package {po} from {start} appears again (first on line {seen[key]})")
            hours = _decimal(row["weekly_hours"], "weekly_hours")
            if hours > 168:
                raise _Bad("weekly_hours cannot exceed 168")
            out.append({
                "resident_id": residents[ref],
                "purchase_order": po,
                "funder": funder,
                "weekly_hours": hours,
                "hourly_rate": _decimal(row["hourly_rate"], "hourly_rate"),
                "weekend_rate": _decimal(row["weekend_rate"], "weekend_rate"),
                "bank_holiday_rate": _decimal(row["bank_holiday_rate"], "bank_holiday_rate"),
                "start_date": start,
                "end_date": end,
            })
            seen[key] = line
        except _Bad as exc:
            errors.append(RowError(line, str(exc)))
    return out


def _apply_packages(items: list[dict[str, Any]], session: Session, report: ImportReport) -> None:
    for item in items:
        pkg = session.scalar(select(CarePackage).where(
            CarePackage.resident_id == item["resident_id"],
            CarePackage.purchase_order == item["purchase_order"],
            CarePackage.start_date == item["start_date"],
        ))
        if pkg is None:
            session.add(CarePackage(**item))
            report.created += 1
        else:
            for k, v in item.items():
                setattr(pkg, k, v)
            report.updated += 1


def _check_visits(rows: Iterable[tuple[int, dict[str, str]]], ctx: ImportContext, session: Session,
                  errors: list[RowError]) -> list[dict[str, Any]]:
    residents = _resident_ids(session)
    workers = dict(session.execute(select(Worker.worker_number, Worker.id)).all())
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            _required(row, "visits")
            ref = _ref(row["visit_ref"], "visit_ref")
            if ref in seen:
                raise _Bad(f"visit_ref {ref} appears again (first on line {seen[ref]})")
            res = row["resident_reference"].strip()
            if res not in residents:
                raise _Bad(f"resident_reference {res!r} is not a known resident")
            try:
                start = parse_local(row["planned_start"], ctx.tz)
                end = parse_local(row["planned_end"], ctx.tz)
            except LocalTimeError as exc:
                raise _Bad(str(exc)) from exc
            if end <= start:
                raise _Bad("planned_end must be after planned_start")
            if end - start > dt.timedelta(hours=24):
                raise _Bad("a visit cannot be longer than 24 hours")
            numbers = [n.strip() for n in row["workers"].split(";") if n.strip()]
            if not 1 <= len(numbers) <= 2:
                raise _Bad("workers must list one or two worker numbers separated by ;")
            if len(set(numbers)) != len(numbers):
                raise _Bad("the same worker is listed twice")
            unknown = [n for n in numbers if n not in workers]
            if unknown:
                raise _Bad(f"unknown worker number(s): {', '.join(unknown)}")
            out.append({
                "visit_ref": ref,
                "resident_id": residents[res],
                "planned_start": start,
                "planned_end": end,
                "workers_required": len(numbers),
                "time_critical": _yes_no(row["time_critical"], "time_critical"),
                "worker_ids": [workers[n] for n in numbers],
                # What the office asks the worker to do there, shown on the worker's phone; only
                # when the file has the column, so a roster without it keeps the notes held.
                **({"worker_notes": _text(row["notes"], "notes", 1000)} if "notes" in row else {}),
            })
            seen[ref] = line
        except _Bad as exc:
            errors.append(RowError(line, str(exc)))
    return out


def _visit_state(v: Visit, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "planned_start": format_local(v.planned_start, tz),
        "planned_end": format_local(v.planned_end, tz),
        "workers": [a.worker_id for a in v.assignments],
        "time_critical": v.time_critical,
    }


CHUNK = 1000  # visits written per round trip; the session is emptied after each chunk


def _apply_visits(items: list[dict[str, Any]], session: Session, report: ImportReport, ctx: ImportContext) -> None:
    """New visits in bulk INSERTs of ``CHUNK`` (a rostering system's whole schedule is tens of
    thousands); existing ones through the ORM, audited. The session forgets each chunk once
    it is flushed, so memory stays flat however long the file."""
    for chunk_start in range(0, len(items), CHUNK):
        chunk = items[chunk_start:chunk_start + CHUNK]
        existing = {v.visit_ref: v for v in session.scalars(
            select(Visit).where(Visit.visit_ref.in_([i["visit_ref"] for i in chunk])))}
        new = [i for i in chunk if i["visit_ref"] not in existing]
        if new:
            now = dt.datetime.now(dt.UTC)
            conn = session.connection()  # Core executemany: the ORM's per-row work is most of the cost
            visits, assignments = Visit.__table__, VisitWorker.__table__
            # A plain executemany (RETURNING would cost one statement per row on SQLite), then the new ids.
            conn.execute(insert(visits), [{k: v for k, v in i.items() if k != "worker_ids"} | {"updated_at": now}
                                          for i in new])
            ids = dict(conn.execute(select(visits.c.visit_ref, visits.c.id).where(
                visits.c.visit_ref.in_([i["visit_ref"] for i in new]))).all())
            conn.execute(insert(assignments), [
                {"visit_id": ids[item["visit_ref"]], "worker_id": w, "position": n + 1}
                for item in new for n, w in enumerate(item["worker_ids"])])
            report.created += len(new)
        for item in chunk:
            visit = existing.get(item["visit_ref"])
            if visit is not None:
                _update_visit(visit, dict(item), session, ctx)
                report.updated += 1
        session.flush()
        session.expunge_all()


def _update_visit(visit: Visit, item: dict[str, Any], session: Session, ctx: ImportContext) -> None:
    worker_ids = item.pop("worker_ids")
    before = _visit_state(visit, ctx.tz)
    for k, v in item.items():
        setattr(visit, k, v)
    if [a.worker_id for a in visit.assignments] != worker_ids:
        visit.assignments = [VisitWorker(worker_id=w, position=i + 1) for i, w in enumerate(worker_ids)]
        session.flush()
    after = _visit_state(visit, ctx.tz)
    if before != after:
        visit.updated_at = dt.datetime.now(dt.UTC)
        session.add(AuditEntry(actor=ctx.actor, action="reimport", entity="visit", entity_id=visit.visit_ref,
                               before=json.dumps(before), after=json.dumps(after)))


def _check_contacts(rows: Iterable[tuple[int, dict[str, str]]], ctx: ImportContext, session: Session,
                    errors: list[RowError]) -> list[dict[str, Any]]:
    """Each row one contact; a resident's rows, in file order, are their whole contact list."""
    residents = _resident_ids(session)
    out: list[dict[str, Any]] = []
    positions: dict[int, int] = {}
    for line, row in rows:
        try:
            _required(row, "contacts")
            ref = row["resident_reference"].strip()
            if ref not in residents:
                raise _Bad(f"resident_reference {ref!r} is not a known resident")
            relation = RELATIONS.get(row.get("relation", "").strip().lower())
            if relation is None:
                raise _Bad(f"relation must be next_of_kin, representative or other, got {row['relation']!r}")
            phones: list[str | None] = []
            for col in ("phone", "phone2"):
                text = row.get(col, "").strip()
                try:
                    phones.append(normalise(text, ctx.region) if text else None)
                except PhoneNumberError as exc:
                    raise _Bad(f"{col}: {exc}") from exc
            email = _text(row.get("email", ""), "email", 254)
            if email and ("@" not in email or " " in email or "." not in email.rsplit("@", 1)[-1]):
                raise _Bad(f"email is not an e-mail address: {email!r}")
            rid = residents[ref]
            positions[rid] = positions.get(rid, 0) + 1
            out.append({
                "resident_id": rid, "position": positions[rid], "name": _text(row["name"], "name"),
                "relation": relation, "relation_note": _text(row.get("relation_note", ""), "relation_note", 80),
                "phone_e164": phones[0], "phone2_e164": phones[1], "email": email,
                "notify_missed": _yes_no(row.get("notify_missed", ""), "notify_missed"),
                "billing_address": _text(row.get("billing_address", ""), "billing_address", MAX_FIELD),
            })
        except _Bad as exc:
            errors.append(RowError(line, str(exc)))
    return out


def _apply_contacts(items: list[dict[str, Any]], session: Session, report: ImportReport) -> None:
    """Replace the contacts of every resident the file names (and only theirs)."""
    ids = sorted({i["resident_id"] for i in items})
    residents = session.scalars(select(Resident).where(Resident.id.in_(ids))).all()
    for r in residents:
        report.updated += 1 if r.contacts else 0  # residents whose earlier contacts were replaced
        r.contacts.clear()
    session.flush()
    for item in items:
        session.add(ResidentContact(**item))
        report.created += 1


def _check_devices(rows: Iterable[tuple[int, dict[str, str]]], ctx: ImportContext, session: Session,
                   errors: list[RowError]) -> list[dict[str, Any]]:
    """Visit-verification devices: the secret is sealed here and never stored or shown in clear."""
    from ivr.devicecodes import valid_secret
    from ivr.devices import device_context
    from ivr.sealed import Sealer

    sealer = Sealer(ctx.hasher.site_key)
    refs = _resident_ids(session)
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            _required(row, "devices")
            serial = _ref(row["serial"], "serial")
            if serial in seen:
                raise _Bad(f"serial {serial} appears again (first on line {seen[serial]})")
            ref = row["resident_reference"].strip()
            if ref not in refs:
                raise _Bad(f"resident_reference {ref} is not a known resident")
            secret = row["secret"].strip().replace(" ", "").upper()
            if not valid_secret(secret):
                raise _Bad("secret must be the device's base32 seed, at least 16 characters (80 bits)")
            digits = int(row.get("digits", "").strip() or 6)
            step = int(row.get("step_seconds", "").strip() or 60)
            if digits not in (6, 8):
                raise _Bad("digits must be 6 or 8")
            if step not in (30, 60):
                raise _Bad("step_seconds must be 30 or 60")
            out.append({"serial": serial, "resident_id": refs[ref], "digits": digits, "step_seconds": step,
                        "secret_sealed": sealer.seal(secret, context=device_context(serial)),
                        "registered_by": ctx.actor[:80]})
            seen[serial] = line
        except ValueError as exc:
            errors.append(RowError(line, f"digits and step_seconds must be whole numbers ({exc})"
                                   if not isinstance(exc, _Bad) else str(exc)))
    return out


def _apply_devices(items: list[dict[str, Any]], session: Session, report: ImportReport) -> None:
    from ivr.devices import VerificationDevice

    existing = {d.serial: d for d in session.scalars(
        select(VerificationDevice).where(VerificationDevice.serial.in_([i["serial"] for i in items])))}
    for item in items:
        d = existing.get(item["serial"])
        if d is None:
            session.add(VerificationDevice(**item))
            report.created += 1
        else:  # re-registered (moved to another home, or a new seed): the old codes stop working
            for k, v in item.items():
                setattr(d, k, v)
            d.active = True
            report.updated += 1


_CHECKS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "devices": _check_devices,
    "residents": _check_residents,
    "workers": _check_workers,
    "packages": _check_packages,
    "visits": _check_visits,
    "contacts": _check_contacts,
}
_APPLY: dict[str, Callable[[list[dict[str, Any]], Session, ImportReport], None]] = {}

# Extension points for the feature packages above this one (ivr imports none of them):
# a package's own tables get an import kind (billing: ``funders``), and funders whose
# packages need no purchase order (private, or marked so) are named by ``PO_OPTIONAL``.
PO_OPTIONAL: list[Callable[[Session], set[str]]] = []


def register_kind(kind: str, columns: tuple[str, ...], optional: Iterable[str],
                  check: Callable[..., list[dict[str, Any]]],
                  apply: Callable[[list[dict[str, Any]], Session, ImportReport], None]) -> None:
    """Add ``carecall import KIND``: ``check`` as the built-in kinds' checks, ``apply`` writes the rows."""
    COLUMNS[kind] = columns
    OPTIONAL.update(optional)
    _CHECKS[kind] = check
    _APPLY[kind] = apply
    if kind not in KINDS:
        KINDS.append(kind)


def _load_extensions() -> None:
    import ivr.schema  # noqa: F401 - imports every feature's models module, which registers its kinds


def import_csv(factory: sessionmaker[Session], kind: str, data: bytes | str, ctx: ImportContext) -> ImportReport:
    """Check every row, then write all of them in one transaction, or none.

    The rows are read one at a time and checked in a read-only session (on SQLite it
    takes no write lock: check-ins go on while a large file is checked); only a clean
    file opens the write transaction, which re-reads what it updates.
    """
    _load_extensions()
    report = ImportReport(kind)
    rows = iter_rows(data, kind, report.errors)
    with reading(factory) as session:
        items = _CHECKS[kind](rows, ctx, session, report.errors)
    if report.errors:
        return report
    with factory() as session:
        try:
            if kind == "residents":
                _apply_residents(items, session, report)
            elif kind == "workers":
                _apply_workers(items, session, report, ctx.sealer)
            elif kind == "packages":
                _apply_packages(items, session, report)
            elif kind == "contacts":
                _apply_contacts(items, session, report)
            elif kind == "devices":
                _apply_devices(items, session, report)
            elif kind in _APPLY:
                _APPLY[kind](items, session, report)
            else:
                _apply_visits(items, session, report, ctx)
            session.add(AuditEntry(actor=ctx.actor, action="import", entity=kind, entity_id="*",
                                   after=json.dumps({"created": report.created, "updated": report.updated})))
            session.commit()
        except Exception:
            session.rollback()
            raise
    return report
