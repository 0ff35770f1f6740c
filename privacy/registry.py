"""The one list of where personal data lives: every table that names a resident or a worker.

Subject access, erasure and retention all walk this registry instead of knowing the
schema, so a table added later is covered by adding one :class:`PersonalTable` entry
(``tests/test_privacy_registry.py`` fails while a table that refers to residents or
workers, or holds their details, is missing here or in :data:`NOT_PERSONAL`).

An entry says, for each kind of person it names:

- how its rows are found (:class:`Link`: a column holding the person's id, a natural
  key such as the reference, a path through a parent table, an audit tag);
- what erasure does to them (``delete`` what may go now; ``pseudonymise`` what must be
  kept, for invoices or the care record: the listed columns blanked and the person's
  identifying strings replaced by a pseudonym in every other text column; ``keep``);
- which columns are never exported in clear (``secret``);
- its retention (which policy key, which column dates the row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sqlalchemy import ColumnElement, String, Table, and_, cast, false, or_, select

from ivr.schema import metadata

RESIDENT = "resident"
WORKER = "worker"
KINDS = (RESIDENT, WORKER)


@dataclasses.dataclass(frozen=True)
class Person:
    """A resident or worker as erasure and export see them.

    ``needles`` are the strings that identify them (name, reference or worker number,
    address, postcode, phone numbers, e-mail addresses of their contacts, NI number);
    ``pseudonym`` replaces them in what must be kept.
    """

    kind: str
    id: int
    key: str  # reference / worker number
    pseudonym: str  # replaces the name
    key_pseudonym: str  # replaces the reference / worker number (fits its column)
    replacements: dict[str, str]  # identifying string -> what replaces it in kept text
    values: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # e.g. "lines": e164s

    @property
    def needles(self) -> tuple[str, ...]:
        return tuple(self.replacements)


class Link(Protocol):
    def where(self, table: Table, person: Person) -> ColumnElement[bool]: ...


@dataclasses.dataclass(frozen=True)
class Col:
    """``table.<column>`` holds the person's id."""

    column: str

    def where(self, table: Table, person: Person) -> ColumnElement[bool]:
        return table.c[self.column] == person.id


@dataclasses.dataclass(frozen=True)
class Key:
    """``table.<column>`` holds the person's natural key (reference, worker number)."""

    column: str

    def where(self, table: Table, person: Person) -> ColumnElement[bool]:
        return table.c[self.column] == person.key


@dataclasses.dataclass(frozen=True)
class OneOf:
    """``table.<column>`` is one of the person's ``values[name]`` (e.g. their landlines)."""

    column: str
    name: str

    def where(self, table: Table, person: Person) -> ColumnElement[bool]:
        values = person.values.get(self.name, ())
        return table.c[self.column].in_(values) if values else false()


@dataclasses.dataclass(frozen=True)
class Via:
    """``table.<column>`` refers to a row of ``parent`` (by ``parent_key``) that names the person."""

    column: str
    parent: str
    link: Link
    parent_key: str = "id"
    as_text: bool = False  # the reference is stored as text (audit entity_id)

    def where(self, table: Table, person: Person) -> ColumnElement[bool]:
        parent = metadata.tables[self.parent]
        key: Any = parent.c[self.parent_key]
        if self.as_text:
            key = cast(key, String)
        return table.c[self.column].in_(select(key).where(self.link.where(parent, person)))


@dataclasses.dataclass(frozen=True)
class Tagged:
    """A row tagged ``<tag_column> = tag`` whose ``link`` names the person (audit entries)."""

    tag_column: str
    tag: str
    link: Link

    def where(self, table: Table, person: Person) -> ColumnElement[bool]:
        return and_(table.c[self.tag_column] == self.tag, self.link.where(table, person))


@dataclasses.dataclass(frozen=True)
class AnyOf:
    links: tuple[Link, ...]

    def where(self, table: Table, person: Person) -> ColumnElement[bool]:
        return or_(*(link.where(table, person) for link in self.links))


class Erase:
    DELETE = "delete"  # nothing in it need be kept once the person is erased
    PSEUDONYMISE = "pseudonymise"  # kept (finance, care record): identity replaced
    KEEP = "keep"  # kept as is: holds no identity of its own (ids only)
    ALL = (DELETE, PSEUDONYMISE, KEEP)


@dataclasses.dataclass(frozen=True)
class Retention:
    """Rows older than the policy's ``policy`` period (dated by ``column``) are deleted."""

    policy: str  # a field of privacy.retention.RetentionPolicy
    column: str


Value = Any | Callable[[Person], Any]


@dataclasses.dataclass(frozen=True)
class PersonalTable:
    table: str
    title: str
    why: str
    links: dict[str, Link]
    erase: dict[str, str]
    blank: dict[str, dict[str, Value]] = dataclasses.field(default_factory=dict)  # kind -> column -> value
    secret: tuple[str, ...] = ()
    retention: Retention | None = None

    def __post_init__(self) -> None:
        if set(self.erase) != set(self.links):
            raise ValueError(f"{self.table}: say what erasure does for each kind it links")
        if any(v not in Erase.ALL for v in self.erase.values()):
            raise ValueError(f"{self.table}: unknown erase action")

    @property
    def sa_table(self) -> Table:
        return metadata.tables[self.table]

    def where(self, kind: str, person: Person) -> ColumnElement[bool]:
        return self.links[kind].where(self.sa_table, person)


_RES_VISITS = Via("visit_id", "visits", Col("resident_id"))
_WORKER_VISITS = Via("visit_id", "visit_workers", Col("worker_id"), parent_key="visit_id")

_REGISTRY: dict[str, PersonalTable] = {}


def register(entry: PersonalTable) -> PersonalTable:
    """Add a table (other packages call this from their own module; see docs/privacy.md)."""
    _REGISTRY[entry.table] = entry
    return entry


def entries() -> list[PersonalTable]:
    return list(_REGISTRY.values())


def entry(table: str) -> PersonalTable:
    return _REGISTRY[table]


def for_kind(kind: str) -> Iterable[PersonalTable]:
    return (e for e in _REGISTRY.values() if kind in e.links)


# Tables that hold nothing about a resident or worker, and why (the registry test reads this).
NOT_PERSONAL: dict[str, str] = {
    "billing_runs": "which period was closed for which funder, by which office user",
    "journal_applied": "ids of journal events already replayed",
    "web_users": "office staff logins (user names and roles), not residents or workers",
    "web_sessions": "office staff browser sessions (hashed)",
    "web_api_tokens": "rostering systems' tokens (hashed)",
    "billing_funders": "councils and other funders: organisations' invoicing addresses",
    "oncall_rota": "which office user is on call when (staff, not residents or workers)",
}

_resident_row = {
    "name": lambda p: p.pseudonym, "reference": lambda p: p.key_pseudonym, "address": "", "postcode": "",
    "phone_code": None, "access_notes": "", "keysafe_reference": "", "active": False,
    "processing_restricted": True,
}
_worker_row = {
    "name": lambda p: p.pseudonym, "worker_number": lambda p: p.key_pseudonym, "mobile_e164": None,
    "pin_hash": "", "active": False,
}

for _e in (
    PersonalTable("residents", "Resident record", "who receives care, where, and how workers get in",
                  {RESIDENT: Col("id")}, {RESIDENT: Erase.PSEUDONYMISE}, blank={RESIDENT: _resident_row}),
    PersonalTable("resident_lines", "Registered landlines", "recognises the home when a worker rings from it",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.DELETE}),
    PersonalTable("resident_contacts", "Contacts", "next of kin and representatives the office rings or bills",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.DELETE}),
    PersonalTable("care_packages", "Care packages", "what the funder commissioned; needed to invoice",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.PSEUDONYMISE}),
    PersonalTable("visits", "Visits", "the planned care: times, workers, cancellations",
                  {RESIDENT: Col("resident_id"), WORKER: Via("id", "visit_workers", Col("worker_id"),
                                                             parent_key="visit_id")},
                  {RESIDENT: Erase.PSEUDONYMISE, WORKER: Erase.KEEP},
                  retention=Retention("visits_years", "planned_start")),
    PersonalTable("visit_workers", "Visit assignments", "which worker was planned for which visit",
                  {WORKER: Col("worker_id"), RESIDENT: _RES_VISITS}, {WORKER: Erase.KEEP, RESIDENT: Erase.KEEP}),
    PersonalTable("workers", "Worker record", "who gives care; how they log in by phone",
                  {WORKER: Col("id")}, {WORKER: Erase.PSEUDONYMISE}, blank={WORKER: _worker_row},
                  secret=("pin_hash",)),
    PersonalTable("worker_ni_numbers", "National Insurance number", "spec 004 §10.2: payroll and monitoring",
                  {WORKER: Col("worker_id")}, {WORKER: Erase.DELETE}, secret=("sealed",)),
    PersonalTable("attendances", "Attendances", "when a worker arrived and left: the evidence care was given",
                  {RESIDENT: Col("resident_id"), WORKER: Col("worker_id")},
                  {RESIDENT: Erase.KEEP, WORKER: Erase.KEEP}, retention=Retention("attendances_years", "created_at")),
    PersonalTable("call_records", "Call records", "every check-in call: caller line, stage reached, outcome",
                  {RESIDENT: Col("resident_id"), WORKER: Col("worker_id")},
                  {RESIDENT: Erase.PSEUDONYMISE, WORKER: Erase.PSEUDONYMISE},
                  blank={RESIDENT: {"caller_e164": None}, WORKER: {"worker_number_entered": None}},
                  retention=Retention("call_records_years", "started_at")),
    PersonalTable("alerts", "Alerts", "late, missed and no-reply alerts and how they were resolved",
                  {RESIDENT: Col("resident_id"), WORKER: Col("worker_id")},
                  {RESIDENT: Erase.PSEUDONYMISE, WORKER: Erase.PSEUDONYMISE},
                  retention=Retention("alerts_years", "raised_at")),
    PersonalTable("alert_actions", "Alert history", "who acknowledged, escalated, resolved an alert",
                  {RESIDENT: Via("alert_id", "alerts", Col("resident_id")),
                   WORKER: Via("alert_id", "alerts", Col("worker_id"))},
                  {RESIDENT: Erase.PSEUDONYMISE, WORKER: Erase.PSEUDONYMISE}),
    PersonalTable("alert_checks", "No-reply checks", "the spec 14.3 checks done for a no-reply alert",
                  {RESIDENT: Via("alert_id", "alerts", Col("resident_id")),
                   WORKER: Via("alert_id", "alerts", Col("worker_id"))},
                  {RESIDENT: Erase.PSEUDONYMISE, WORKER: Erase.PSEUDONYMISE}),
    PersonalTable("alert_deliveries", "Alert messages sent", "who was told about an alert, when, how",
                  {RESIDENT: Via("alert_id", "alerts", Col("resident_id")),
                   WORKER: Via("alert_id", "alerts", Col("worker_id"))},
                  {RESIDENT: Erase.PSEUDONYMISE, WORKER: Erase.PSEUDONYMISE}),
    PersonalTable("billing_invoices", "Invoices", "private clients' invoices are addressed to them",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.PSEUDONYMISE},
                  retention=Retention("invoices_years", "period_end")),
    PersonalTable("billing_invoice_lines", "Invoice lines", "each visit billed: keeps amounts and dates",
                  {RESIDENT: Key("resident_reference"), WORKER: Key("worker_number")},
                  {RESIDENT: Erase.PSEUDONYMISE, WORKER: Erase.PSEUDONYMISE}),  # go with their invoice
    PersonalTable("billing_approvals", "Approved extra hours", "hours agreed with the funder above the package",
                  {RESIDENT: Via("package_id", "care_packages", Col("resident_id"))},
                  {RESIDENT: Erase.PSEUDONYMISE}),
    PersonalTable("audit_log", "Changes and corrections", "who changed what, when and why (accountability)",
                  {RESIDENT: AnyOf((
                      Tagged("entity", "resident", Key("entity_id")),
                      Tagged("entity", "visit", Via("entity_id", "visits", Col("resident_id"), "visit_ref")),
                      Tagged("entity", "package", Via("entity_id", "care_packages", Col("resident_id"),
                                                      as_text=True)),
                      Tagged("entity", "call", Via("entity_id", "call_records", Col("resident_id"), as_text=True)),
                  )),
                   WORKER: AnyOf((
                       Tagged("entity", "worker", Key("entity_id")),
                       Tagged("entity", "visit", Via("entity_id", "visits",
                                                     Via("id", "visit_workers", Col("worker_id"), "visit_id"),
                                                     "visit_ref")),
                       Tagged("entity", "call", Via("entity_id", "call_records", Col("worker_id"), as_text=True)),
                   ))},
                  {RESIDENT: Erase.PSEUDONYMISE, WORKER: Erase.PSEUDONYMISE},
                  retention=Retention("audit_years", "at")),
    PersonalTable("login_failures", "Failed phone logins", "PIN guessing protection (ivr.lockout)",
                  {WORKER: Key("worker_number"), RESIDENT: OneOf("line", "lines")},
                  {WORKER: Erase.DELETE, RESIDENT: Erase.DELETE},
                  retention=Retention("login_failures_days", "at")),
    PersonalTable("login_locks", "Phone login locks", "a worker number locked on one line for a while",
                  {WORKER: Key("worker_number"), RESIDENT: OneOf("line", "lines")},
                  {WORKER: Erase.DELETE, RESIDENT: Erase.DELETE},
                  retention=Retention("login_failures_days", "until")),
    PersonalTable("privacy_views", "Who looked at these details", "accountability: every view is recorded",
                  {RESIDENT: Col("resident_id"), WORKER: Col("worker_id")},
                  {RESIDENT: Erase.KEEP, WORKER: Erase.KEEP}, retention=Retention("views_years", "at")),
):
    register(_e)


# The tables the other features added beside this one (key safe, outreach, finance, no
# landline); each says where its rows point and what erasure does to them.
for _e in (
    PersonalTable("keysafe_codes", "Key-safe code", "how a worker gets in; sealed, shown only by an audited reveal",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.DELETE}, secret=("sealed_code",)),
    PersonalTable("feedback", "Feedback", "compliments, concerns and complaints from the family, and the replies",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.PSEUDONYMISE},
                  retention=Retention("audit_years", "created_at")),
    PersonalTable("survey_calls", "Quality calls", "the monthly satisfaction calls and their answers",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.PSEUDONYMISE},
                  blank={RESIDENT: {"target": ""}}, retention=Retention("call_records_years", "created_at")),
    PersonalTable("family_invites", "Family invitations", "who was invited to see the visits, and when",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.DELETE}, secret=("token_hash",)),
    PersonalTable("lateness_notices", "Lateness notices", "each call or e-mail telling the resident of a late carer",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.PSEUDONYMISE},
                  blank={RESIDENT: {"target": ""}}, retention=Retention("call_records_years", "created_at")),
    PersonalTable("notice_events", "Lateness notice history", "each attempt and outcome of a lateness notice",
                  {RESIDENT: Via("notice_id", "lateness_notices", Col("resident_id"))}, {RESIDENT: Erase.PSEUDONYMISE}),
    PersonalTable("notice_preferences", "Notice preferences", "consent, channel, quiet hours, do not call",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.DELETE}),
    PersonalTable("outside_scopes", "Family and council access", "which resident a family login may see",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.DELETE}),
    PersonalTable("billing_credit_notes", "Credit notes", "invoices reversed, with the reason",
                  {RESIDENT: Via("invoice_id", "billing_invoices", Col("resident_id"))}, {RESIDENT: Erase.PSEUDONYMISE},
                  retention=Retention("invoices_years", "issue_date")),
    PersonalTable("verification_devices", "Visit-verification devices", "the code device fixed in the home",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.DELETE}, secret=("secret_sealed",)),
    PersonalTable("device_code_uses", "Device codes used", "each code accepted once, with the call that used it",
                  {RESIDENT: Via("device_id", "verification_devices", Col("resident_id"))}, {RESIDENT: Erase.DELETE}),
    PersonalTable("home_tags", "Home tags", "the tag (QR or NFC) a worker's phone scans in the home",
                  {RESIDENT: Col("resident_id")}, {RESIDENT: Erase.DELETE}),
    PersonalTable("tag_scans", "Tag scans", "every scan of a home's tag, accepted or refused",
                  {WORKER: Col("worker_id"), RESIDENT: Via("tag_id", "home_tags", Col("resident_id"))},
                  {WORKER: Erase.KEEP, RESIDENT: Erase.KEEP}, retention=Retention("call_records_years", "received_at")),
    PersonalTable("worker_devices", "Enrolled phones", "the worker's phone sessions for tag check-ins",
                  {WORKER: Col("worker_id")}, {WORKER: Erase.DELETE}, secret=("token_hash", "csrf_token")),
    PersonalTable("worker_enrolments", "Phone enrolment codes", "one-time codes the office issued",
                  {WORKER: Col("worker_id")}, {WORKER: Erase.DELETE}, secret=("code_hash",)),
    PersonalTable("worker_messages", "Messages with the office", "two-way messages with a worker's phone",
                  {WORKER: Col("worker_id"), RESIDENT: Via("visit_id", "visits", Col("resident_id"))},
                  {WORKER: Erase.PSEUDONYMISE, RESIDENT: Erase.PSEUDONYMISE},
                  retention=Retention("call_records_years", "sent_at")),
):
    register(_e)
