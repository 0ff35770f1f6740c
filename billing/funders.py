"""Funders: the ``funders`` CSV import, the billing rules they change, and who an invoice is addressed to.

``carecall import funders funders.csv`` (and the Funders page) fill ``billing_funders``:

    name,invoice_address,email,po_required,private,payment_days,brokerage_email
    Lewisham,"Accounts Payable; Lewisham Council; PO Box 1; London SE6 4RU",ap@lewisham.gov.uk,yes,no,28,brokerage@…
    Private clients,,,no,yes,14,

``invoice_address`` lines are separated by ``;`` in the CSV (newlines are kept too).
A funder's row overrides ``[billing]``'s ``private`` and ``payment_days`` for that
funder; a funder with no row is billed as before (``[billing] private_funders``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.accounts import Funder
from billing.rules import BillingConfig
from carecall.config import Settings
from ivr import importer
from ivr.importer import ImportContext, ImportReport, RowError
from ivr.models import ContactRelation, Resident, ResidentContact

COLUMNS = ("name", "invoice_address", "email", "po_required", "private", "payment_days", "brokerage_email")
OPTIONAL = ("invoice_address", "email", "po_required", "private", "payment_days", "brokerage_email")
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


class FunderError(ValueError):
    """A funder that cannot be saved as given; the message says which field and why."""


@dataclasses.dataclass(frozen=True)
class FunderFields:
    """One funder as entered (web form or CSV row), checked."""

    name: str
    invoice_address: str = ""
    email: str = ""
    po_required: bool = True
    private: bool = False
    payment_days: int = 28
    brokerage_email: str = ""

    @classmethod
    def parse(cls, row: dict[str, str]) -> FunderFields:
        """Check a row of text fields; FunderError names the first bad one."""
        name = row.get("name", "").strip()
        if not name or len(name) > 80 or not name.isprintable():
            raise FunderError("name must be 1 to 80 printable characters")
        lines = [ln.strip() for ln in re.split(r"[;\n]", row.get("invoice_address", "")) if ln.strip()]
        address = "\n".join(lines)
        if len(address) > 500:
            raise FunderError("invoice_address is longer than 500 characters")
        emails = {}
        for key in ("email", "brokerage_email"):
            value = row.get(key, "").strip()
            if value and (len(value) > 254 or not _EMAIL.match(value)):
                raise FunderError(f"{key} must be an e-mail address, got {value!r}")
            emails[key] = value
        flags = {}
        for key, default in (("private", False), ("po_required", True)):
            value = row.get(key, "").strip().lower()
            if value in ("yes", "y", "true", "1"):
                flags[key] = True
            elif value in ("no", "n", "false", "0"):
                flags[key] = False
            elif value == "":
                flags[key] = False if key == "po_required" and flags["private"] else default
            else:
                raise FunderError(f"{key} must be yes or no, got {value!r}")
        days_text = row.get("payment_days", "").strip() or "28"
        if not days_text.isdigit() or not 0 <= int(days_text) <= 365:
            raise FunderError(f"payment_days must be a whole number of days from 0 to 365, got {days_text!r}")
        return cls(name, address, emails["email"], flags["po_required"], flags["private"], int(days_text),
                   emails["brokerage_email"])


def save(session: Session, fields: FunderFields) -> tuple[Funder, bool]:
    """Create or update the funder of that name; returns (row, created)."""
    row = session.scalar(select(Funder).where(Funder.name == fields.name))
    created = row is None
    if row is None:
        row = Funder(name=fields.name)
        session.add(row)
    for key, value in dataclasses.asdict(fields).items():
        setattr(row, key, value)
    return row, created


def all_funders(session: Session) -> list[Funder]:
    return list(session.scalars(select(Funder).order_by(Funder.name)))


# --- CSV import (``carecall import funders``) ------------------------------------------


def _check(rows: Iterable[tuple[int, dict[str, str]]], ctx: ImportContext, session: Session,
           errors: list[RowError]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            fields = FunderFields.parse(row)
        except FunderError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        if fields.name in seen:
            errors.append(RowError(line, f"funder {fields.name!r} appears again (first on line {seen[fields.name]})"))
            continue
        seen[fields.name] = line
        out.append(dataclasses.asdict(fields))
    return out


def _apply(items: list[dict[str, Any]], session: Session, report: ImportReport) -> None:
    for item in items:
        _, created = save(session, FunderFields(**item))
        if created:
            report.created += 1
        else:
            report.updated += 1


def _po_optional(session: Session) -> set[str]:
    return set(session.scalars(select(Funder.name).where((Funder.private.is_(True)) | (Funder.po_required.is_(False)))))


importer.register_kind("funders", COLUMNS, OPTIONAL, _check, _apply)
importer.PO_OPTIONAL.append(_po_optional)


# --- the rules a funder row changes, and the bill-to address -------------------------------


def apply_funders(config: BillingConfig, rows: Iterable[Funder]) -> BillingConfig:
    """``config`` with each listed funder's private flag and payment terms taken from its row."""
    funders = dict(config.funders)
    for f in rows:
        base = funders.get(f.name, config.default)
        funders[f.name] = dataclasses.replace(base, private=f.private, payment_days=f.payment_days)
    return dataclasses.replace(config, funders=funders)


def load_config(settings: Settings, session: Session) -> BillingConfig:
    """The billing configuration with the funders table applied: what every issue run uses."""
    return apply_funders(BillingConfig.from_settings(settings), all_funders(session))


class BillTo:
    """Who an invoice is addressed to, looked up once per funder or private resident.

    A funder's purchase order goes to the funder's invoicing address. A private client's
    invoice goes to their representative's billing address if one is recorded (a
    ``representative`` contact with a ``billing_address``, first by position), else to the
    resident at home.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.funders = {f.name: f for f in all_funders(session)}
        self._cache: dict[tuple[str, int | None], tuple[str, str]] = {}

    def __call__(self, funder: str, resident_id: int | None) -> tuple[str, str]:
        key = (funder, resident_id)
        if key not in self._cache:
            self._cache[key] = self._private(resident_id) if resident_id is not None else self._funder(funder)
        return self._cache[key]

    def name(self, resident_id: int | None) -> str:
        """The private client's name (printed as whose care the invoice is for); "" for a funder's PO."""
        if resident_id is None:
            return ""
        r = self.session.get(Resident, resident_id)
        return r.name if r is not None else ""

    def _funder(self, name: str) -> tuple[str, str]:
        f = self.funders.get(name)
        if f is None:
            return name, ""
        return "\n".join(filter(None, [f.name, f.invoice_address])), f.email

    def _private(self, resident_id: int) -> tuple[str, str]:
        rep = self.session.scalar(
            select(ResidentContact).where(ResidentContact.resident_id == resident_id,
                                          ResidentContact.relation == ContactRelation.REPRESENTATIVE,
                                          ResidentContact.billing_address != "")
            .order_by(ResidentContact.position, ResidentContact.id).limit(1))
        if rep is not None:
            address = "\n".join(ln.strip() for ln in re.split(r"[;\n]", rep.billing_address) if ln.strip())
            return f"{rep.name}\n{address}", rep.email
        r = self.session.get(Resident, resident_id)
        if r is None:
            return "", ""
        lines = [r.name, *(ln.strip() for ln in re.split(r"[,;\n]", r.address) if ln.strip()), r.postcode]
        return "\n".join(ln for ln in lines if ln), ""
