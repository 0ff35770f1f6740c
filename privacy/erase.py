"""Erasure (UK GDPR art. 17) within the care-record and finance rules.

What may go now is deleted (landlines, contacts, failed-login rows, the sealed NI
number); what must be kept (the care record, attendances, invoices, which finance keeps
six years) is pseudonymised: the columns an entry lists are blanked, and every string
that identifies the person (name, reference or worker number, address, postcode,
phone numbers, contacts' details) is replaced by a pseudonym in every other text column
of the rows that concern them. Amounts, dates and times are never touched, so invoice
totals do not change.

:func:`plan` says what will happen (rows per table and action) before anything is done;
:func:`erase` does it in one transaction and records who did it. :func:`leftovers`
searches every text column of every table for what still identifies the person — the
tests require none, and the command prints any it finds.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from sqlalchemy import Engine, and_, func, select, text, update
from sqlalchemy.orm import Session

from ivr.models import AuditEntry, utcnow
from ivr.schema import metadata
from privacy.people import load_person
from privacy.registry import Erase, Person, PersonalTable, for_kind
from privacy.rows import delete_where, primary_key, text_columns

MIN_NEEDLE = 4  # shorter strings are not searched for across the database (too many false hits)


@dataclasses.dataclass(frozen=True)
class Step:
    table: str
    title: str
    action: str
    rows: int
    keys: tuple[tuple[Any, ...], ...] = ()


@dataclasses.dataclass(frozen=True)
class Plan:
    person: Person
    steps: tuple[Step, ...]

    def lines(self) -> list[str]:
        out = []
        for s in self.steps:
            if s.rows:
                out.append(f"{s.action:<13} {s.rows:>6}  {s.title} ({s.table})")
        return out


def _variants(needle: str) -> list[str]:
    escaped = json.dumps(needle, ensure_ascii=False)[1:-1]
    ascii_escaped = json.dumps(needle)[1:-1]
    return list(dict.fromkeys([needle, escaped, ascii_escaped]))


def _pattern(needle: str) -> re.Pattern[str]:
    return re.compile(r"(?<![0-9A-Za-z])" + re.escape(needle) + r"(?![0-9A-Za-z])", re.IGNORECASE)


def replace_identity(text: str, person: Person) -> str:
    for needle, replacement in person.replacements.items():
        for v in _variants(needle):
            text = _pattern(v).sub(replacement, text)
    return text


def plan(session: Session, kind: str, subject_id: int, sealer: Any = None) -> Plan:
    person = load_person(session, kind, subject_id, sealer)
    steps = []
    for e in for_kind(kind):
        pk = primary_key(e.sa_table)
        keys = tuple(tuple(r) for r in session.execute(select(*pk).where(e.where(kind, person))).all())
        steps.append(Step(e.table, e.title, e.erase[kind], len(keys), keys))
    return Plan(person, tuple(steps))


def _pseudonymise(session: Session, e: PersonalTable, person: Person, keys: tuple[tuple[Any, ...], ...]) -> None:
    table = e.sa_table
    pk = primary_key(table)
    blanks = e.blank.get(person.kind, {})
    texts = [c for c in text_columns(table) if c.name not in blanks and c.name not in e.secret]
    for key in keys:
        cond = and_(*(c == key[i] for i, c in enumerate(pk)))
        row = session.execute(select(*texts).where(cond)).mappings().first() if texts else {}
        if row is None:
            continue  # deleted by an earlier step
        values: dict[str, Any] = {}
        for name, value in blanks.items():
            values[name] = value(person) if callable(value) else value
        for c in texts:
            old = row[c.name]
            if isinstance(old, str) and old:
                new = replace_identity(old, person)
                length = getattr(c.type, "length", None)
                if new != old:
                    values[c.name] = new[:length] if length else new
        if values:
            session.execute(update(table).where(cond).values(values))


def erase(session: Session, the_plan: Plan, *, actor: str) -> None:
    """Carry out ``the_plan`` (computed in this same session) and record it.

    On SQLite, ``secure_delete`` makes the pages this transaction frees or rewrites be
    zeroed, so the erased strings do not linger in the file's free space; call
    :func:`flush_journal` after the commit to clear them from the write-ahead log too.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA secure_delete = ON"))
    person = the_plan.person
    by_table = {e.table: e for e in for_kind(person.kind)}
    for step in the_plan.steps:
        e = by_table[step.table]
        if not step.keys or step.action == Erase.KEEP:
            continue
        if step.action == Erase.DELETE:
            pk = primary_key(e.sa_table)
            for i in range(0, len(step.keys), 500):
                chunk = step.keys[i:i + 500]
                if len(pk) == 1:
                    delete_where(session, e.sa_table, pk[0].in_([k[0] for k in chunk]))
                else:
                    from sqlalchemy import or_

                    delete_where(session, e.sa_table, or_(*(and_(*(c == k[j] for j, c in enumerate(pk)))
                                                           for k in chunk)))
        else:
            _pseudonymise(session, e, person, step.keys)
    counts = {s.table: [s.action, s.rows] for s in the_plan.steps if s.rows}
    session.add(AuditEntry(at=utcnow(), actor=actor, action="erase", entity=person.kind,
                           entity_id=person.key_pseudonym, after=json.dumps(counts)))
    session.flush()


def flush_journal(engine: Engine) -> None:
    """SQLite: checkpoint and truncate the write-ahead log, which still holds the pages
    as they were before the erasure. (PostgreSQL: autovacuum reclaims the dead rows;
    backups keep old data until they expire — see docs/privacy.md.)"""
    if engine.dialect.name == "sqlite":
        from ivr.db import READ_ONLY

        with engine.connect().execution_options(**READ_ONLY) as conn:  # no BEGIN: a checkpoint runs outside one
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def leftovers(session: Session, person: Person) -> list[tuple[str, str, int]]:
    """(table, column, rows) wherever a string identifying ``person`` is still found."""
    needles = [v for n in person.needles if len(n) >= MIN_NEEDLE for v in _variants(n)]
    found = []
    for table in metadata.sorted_tables:
        for col in text_columns(table):
            hits = set()
            for needle in needles:
                cond = func.lower(col).contains(needle.lower(), autoescape=True)
                pat = _pattern(needle)
                pk = primary_key(table)
                for row in session.execute(select(*pk, col).where(cond)).all():
                    if isinstance(row[-1], str) and pat.search(row[-1]):
                        hits.add(tuple(row[:-1]))
            if hits:
                found.append((table.name, col.name, len(hits)))
    return found


def is_manager(session: Session, username: str) -> bool:
    from web.models import Role, User

    u = session.scalar(select(User).where(User.username == username))
    return u is not None and u.active and u.role == Role.MANAGER


__all__ = ["Plan", "Step", "erase", "is_manager", "leftovers", "plan", "replace_identity"]
