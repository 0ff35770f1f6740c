"""The call dialog's database effects: blocking, one short transaction each, plain data out.

This is the hot path of the server (every check-in call runs here twice: the line
lookup and :class:`~ivr.dialog.CheckIn`), so it uses SQLAlchemy Core on the mapped
tables rather than ORM sessions, and the arrival/departure decision, the attendance and
the call record are one transaction with a handful of statements.

The database, not Python, guarantees that one uniqueid is never recorded twice (unique
``arrival_uniqueid``/``departure_uniqueid``) and that a worker has one attendance per
visit (unique ``visit_id, worker_id``): when a concurrent call wins a race the
transaction is rolled back and decided again, and then sees the winner's row.

The Twisted server runs :meth:`CallStore.run` in the database thread pool; the pyst2
process script calls it directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hmac
import importlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from ivr.db import READ_ONLY
from ivr.devicecodes import DeviceKey, Refusal, match_code
from ivr.devices import DeviceCodeUse, VerificationDevice, device_context
from ivr.dialog import (
    CallInfo,
    CheckedIn,
    CheckIn,
    CodeRefused,
    LoginFailed,
    LookupLine,
    LookupPhoneCode,
    Mode,
    NeedPhoneCode,
    NoReplyCall,
    NoReplyRecorded,
    RecordCall,
    Stage,
)
from ivr.fastsql import Prepared
from ivr.lockout import GUARD_ALL, GUARD_UNKNOWN, LockoutPolicy, guard_applies, line_key, record_failure
from ivr.models import (
    Attendance,
    AttendanceKind,
    CallOutcome,
    CallRecord,
    LoginLock,
    Method,
    Resident,
    ResidentLine,
    ReviewStatus,
    Visit,
    VisitStatus,
    VisitWorker,
    Worker,
)
from ivr.pins import PinHasher
from ivr.sealed import Sealer, SealError

residents = Resident.__table__
lines = ResidentLine.__table__
workers = Worker.__table__
visits = Visit.__table__
visit_workers = VisitWorker.__table__
attendances = Attendance.__table__
calls = CallRecord.__table__
login_locks = LoginLock.__table__
devices = VerificationDevice.__table__
code_uses = DeviceCodeUse.__table__

RACE_RETRIES = 3

# Hot-path statements are built and compiled once (ivr.fastsql): building a Core
# statement, or even executing a cached one through SQLAlchemy, costs more than running
# it on SQLite. IN lists over a caller's residents get one statement per list length.
_LINE = Prepared(
    select(lines.c.resident_id)
    .join(residents, residents.c.id == lines.c.resident_id)
    .where(lines.c.e164 == bindparam("e164"), residents.c.active.is_(True))
    .order_by(lines.c.resident_id)
)
_PHONE_CODE = Prepared(
    select(residents.c.id).where(residents.c.phone_code == bindparam("code"), residents.c.active.is_(True))
)
# FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers): two
# servers checking the same worker in at once take turns, so the second sees the first's
# committed arrival (duplicate uniqueid, or the open arrival this call closes) instead of
# deciding from a snapshot that predates it.
_WORKER = Prepared(
    select(workers.c.id, workers.c.pin_hash, workers.c.mobile_e164).where(
        workers.c.worker_number == bindparam("number"), workers.c.active.is_(True)
    ).with_for_update(of=workers)
)
# The unanswered check-in (CheckIn.mode): the worker is the number dialled, if their mode is on.
_WORKER_BY_DDI = Prepared(
    select(workers.c.id, workers.c.pin_hash, workers.c.mobile_e164).where(
        workers.c.unanswered_ddi == bindparam("ddi"), workers.c.unanswered_enabled.is_(True),
        workers.c.active.is_(True),
    ).with_for_update(of=workers)
)
# The same lookup with this (worker, line) pair's PIN-guessing lock, in the one round trip
# the call makes anyway (ivr.lockout): login_locks is a small table keyed on the pair.
# ... and the worker-wide guards (the worker budget spent: ivr.lockout.GUARD_ALL / GUARD_UNKNOWN).
_GUARD_ALL = login_locks.alias("guard_all")
_GUARD_UNKNOWN = login_locks.alias("guard_unknown")
_WORKER_LOCK = Prepared(
    select(workers.c.id, workers.c.pin_hash, workers.c.mobile_e164, login_locks.c.until,
           _GUARD_ALL.c.until.label("guard_all"), _GUARD_UNKNOWN.c.until.label("guard_unknown"))
    .select_from(workers)
    .join(login_locks, and_(login_locks.c.worker_number == workers.c.worker_number,
                            login_locks.c.line == bindparam("line"),
                            login_locks.c.until > bindparam("at", type_=login_locks.c.until.type)), isouter=True)
    .join(_GUARD_ALL, and_(_GUARD_ALL.c.worker_number == workers.c.worker_number, _GUARD_ALL.c.line == GUARD_ALL,
                           _GUARD_ALL.c.until > bindparam("at", type_=login_locks.c.until.type)), isouter=True)
    .join(_GUARD_UNKNOWN, and_(_GUARD_UNKNOWN.c.worker_number == workers.c.worker_number,
                               _GUARD_UNKNOWN.c.line == GUARD_UNKNOWN,
                               _GUARD_UNKNOWN.c.until > bindparam("at", type_=login_locks.c.until.type)), isouter=True)
    .where(workers.c.worker_number == bindparam("number"), workers.c.active.is_(True))
    .with_for_update(of=workers)
)
_LOCKED_ANY = Prepared(
    select(login_locks.c.until).where(
        login_locks.c.worker_number == bindparam("number"), login_locks.c.line == bindparam("line"),
        login_locks.c.until > bindparam("at", type_=login_locks.c.until.type),
    )
)
_DUPLICATE = Prepared(
    select(
        attendances.c.id, attendances.c.visit_id, attendances.c.resident_id, attendances.c.kind,
        attendances.c.worker_id, attendances.c.arrival_uniqueid, attendances.c.arrival_at,
        attendances.c.departure_at,
    ).where(or_(attendances.c.arrival_uniqueid == bindparam("uid"),
                attendances.c.departure_uniqueid == bindparam("uid2")))
)
_DEPART = Prepared(
    update(attendances)
    # departure_at IS NULL: PostgreSQL re-checks it after waiting for a concurrent departure's row lock.
    .where(attendances.c.id == bindparam("aid"), attendances.c.departure_at.is_(None))
    .values(departure_at=bindparam("at", type_=attendances.c.departure_at.type),
            departure_method=bindparam("method", type_=attendances.c.departure_method.type),
            departure_entered_at=bindparam("entered", type_=attendances.c.departure_entered_at.type),
            departure_verified=bindparam("verified", type_=attendances.c.departure_verified.type),
            departure_unanswered=bindparam("unanswered", type_=attendances.c.departure_unanswered.type),
            departure_uniqueid=bindparam("uid"), updated_at=bindparam("at2", type_=attendances.c.updated_at.type))
)
_TAKEN_BY = attendances.alias("taken")
_ATTENDANCE_COLUMNS = ("visit_id", "resident_id", "worker_id", "kind", "arrival_at", "arrival_method",
                       "arrival_verified", "arrival_uniqueid", "arrival_unanswered", "arrival_entered_at",
                       "departure_verified", "departure_unanswered", "created_at", "updated_at")
_INSERT_ATTENDANCE = Prepared(
    insert(attendances)
    .values({c: bindparam(c, type_=attendances.c[c].type) for c in _ATTENDANCE_COLUMNS})
    .returning(attendances.c.id)
)
_CALL_DEFAULTS: dict[str, Any] = {
    "resident_id": None, "worker_id": None, "worker_number_entered": None, "location_verified": False,
    "failed_pin_attempts": 0, "attendance_id": None, "visit_id": None, "detail": "",
    "review_status": ReviewStatus.NONE, "review_note": "",
}
_CALL_COLUMNS = ("uniqueid", "script", "started_at", "ended_at", "caller_e164", "stage", "outcome", *_CALL_DEFAULTS)
_INSERT_CALL = Prepared(
    insert(calls).values({c: bindparam(c, type_=calls.c[c].type) for c in _CALL_COLUMNS}).returning(calls.c.id)
)


_READS = (LookupLine, LookupPhoneCode)


class _Race(Exception):
    """Another server changed what this transaction decided on: roll back and decide again."""


def _rid_params(rids: Sequence[int]) -> dict[str, int]:
    return {f"rid{i}": rid for i, rid in enumerate(rids)}


@functools.cache
def _open_stmt(n: int) -> Prepared:
    """This worker's newest arrival without a departure at one of ``n`` homes."""
    return Prepared(
        select(attendances.c.id, attendances.c.visit_id, attendances.c.resident_id, attendances.c.kind,
               attendances.c.arrival_uniqueid)
        .where(
            attendances.c.worker_id == bindparam("wid"),
            attendances.c.resident_id.in_([bindparam(f"rid{i}") for i in range(n)]),
            attendances.c.departure_at.is_(None),
            attendances.c.arrival_at.is_not(None),
            attendances.c.arrival_at >= bindparam("since", type_=attendances.c.arrival_at.type),
            attendances.c.arrival_at <= bindparam("at", type_=attendances.c.arrival_at.type),
        )
        .order_by(attendances.c.arrival_at.desc())
        .limit(1)
    )


@functools.cache
def _window_stmt(n: int) -> Prepared:
    """Visits near a time at one of ``n`` homes, one row per (assigned worker, worker
    already attending): at most 2 x 2 rows a visit, so matching needs one round trip."""
    return Prepared(
        select(visits.c.id, visits.c.resident_id, visits.c.planned_start, visits.c.planned_end,
               visits.c.workers_required, visit_workers.c.worker_id, _TAKEN_BY.c.worker_id.label("taken_by"))
        .join(visit_workers, visit_workers.c.visit_id == visits.c.id, isouter=True)
        .join(_TAKEN_BY, _TAKEN_BY.c.visit_id == visits.c.id, isouter=True)
        .where(
            visits.c.resident_id.in_([bindparam(f"rid{i}") for i in range(n)]),
            visits.c.status == VisitStatus.SCHEDULED,
            visits.c.planned_start <= bindparam("latest", type_=visits.c.planned_start.type),
            visits.c.planned_end >= bindparam("earliest", type_=visits.c.planned_end.type),
        )
    )


@functools.cache
def _here_now_stmt(n: int) -> Prepared:
    """Does this worker have a visit now (inside the matching window), or an open arrival,
    at one of ``n`` homes? What makes a home's landline *trusted* for the PIN lockout."""
    scheduled = (
        select(visits.c.id)
        .join(visit_workers, and_(visit_workers.c.visit_id == visits.c.id,
                                  visit_workers.c.worker_id == bindparam("wid")))
        .where(
            visits.c.resident_id.in_([bindparam(f"rid{i}") for i in range(n)]),
            visits.c.status == VisitStatus.SCHEDULED,
            visits.c.planned_start <= bindparam("latest", type_=visits.c.planned_start.type),
            visits.c.planned_end >= bindparam("earliest", type_=visits.c.planned_end.type),
        )
    )
    arrived = (
        select(attendances.c.visit_id)
        .where(
            attendances.c.worker_id == bindparam("wid2"),
            attendances.c.resident_id.in_([bindparam(f"rid{i}") for i in range(n)]),
            attendances.c.departure_at.is_(None),
            attendances.c.arrival_at >= bindparam("since", type_=attendances.c.arrival_at.type),
        )
    )
    return Prepared(scheduled.union_all(arrived).limit(1))


@dataclasses.dataclass(frozen=True)
class MatchWindows:
    """How far around a visit a call may be matched to it (settings, in one place)."""

    open_attendance: dt.timedelta = dt.timedelta(hours=12)
    before: dt.timedelta = dt.timedelta(hours=2)
    after: dt.timedelta = dt.timedelta(hours=2)
    noreply_before: dt.timedelta = dt.timedelta(minutes=30)
    # A device code keyed this long after it was shown is still accepted ("entered late").
    device_late: dt.timedelta = dt.timedelta(hours=2)

    @classmethod
    def from_settings(cls, settings: Any) -> MatchWindows:
        return cls(
            open_attendance=dt.timedelta(hours=settings.open_attendance_hours),
            before=dt.timedelta(minutes=settings.match_before_minutes),
            after=dt.timedelta(minutes=settings.match_after_minutes),
            noreply_before=dt.timedelta(minutes=getattr(settings, "noreply_before_minutes", 30)),
            device_late=dt.timedelta(minutes=getattr(settings, "device_code_late_minutes", 120)),
        )


def _raise_alert_function() -> Any:
    """``scheduler.store.raise_alert`` if that module exists yet (another branch writes it)."""
    try:
        module = importlib.import_module("scheduler.store")
    except ModuleNotFoundError as exc:
        if exc.name in ("scheduler", "scheduler.store"):
            return None
        raise
    return getattr(module, "raise_alert", None)


def _distance(at: dt.datetime, start: dt.datetime, end: dt.datetime) -> tuple[dt.timedelta, dt.timedelta]:
    """How far ``at`` is from a visit: zero inside it; ties go to the nearer planned start."""
    inside = dt.timedelta(0)
    if at < start:
        inside = start - at
    elif at > end:
        inside = at - end
    return inside, abs(at - start)


class CallStore:
    """Runs the dialog's effects. Thread-safe: every call opens its own connection."""

    def __init__(self, engine: Engine, hasher: PinHasher, windows: MatchWindows | None = None,
                 lockout: LockoutPolicy | None = None, sealer: Sealer | None = None) -> None:
        self.engine = engine
        self.hasher = hasher
        self.sealer = sealer or Sealer(hasher.site_key)
        self.windows = windows or MatchWindows()
        self.lockout = lockout or LockoutPolicy()
        self._dbapi_integrity: type[Exception] = engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
        self._dbapi_operational: type[Exception] = engine.dialect.dbapi.OperationalError  # type: ignore[union-attr]
        self._dispatch = {
            LookupLine: self.lookup_line,
            LookupPhoneCode: self.lookup_phone_code,
            CheckIn: self.check_in,
            NoReplyCall: self.no_reply,
            RecordCall: self.record_call,
        }
        # The same effects inside a caller's transaction (run_batch).
        self._in_transaction: dict[type, Any] = {
            LookupLine: self._lookup_line,
            LookupPhoneCode: self._lookup_phone_code,
            CheckIn: self._check_in,
            NoReplyCall: self._no_reply,
            RecordCall: self._record_call,
        }

    @classmethod
    def from_runtime(cls, runtime: Any) -> CallStore:
        return cls(runtime.engine, runtime.hasher, MatchWindows.from_settings(runtime.settings),
                   LockoutPolicy.from_settings(runtime.settings))

    def run(self, effect: Any) -> Any:
        try:
            handler = self._dispatch[type(effect)]
        except KeyError:
            raise TypeError(f"not a call effect: {effect!r}") from None
        return handler(effect)

    def run_batch(self, effects: Sequence[Any]) -> list[tuple[bool, Any]]:
        """Several calls' effects in one transaction (group commit, :mod:`agi.effects`).

        Returns ``(True, result)`` or ``(False, exception)`` per effect, in order. The
        effects run in arrival order inside one transaction, so each sees the ones before
        it exactly as if they had committed first. If any of them raises (a race another
        server won, a constraint, the database itself), the whole transaction is rolled
        back and every effect runs again on its own, with its usual retries: one call's
        error never costs another call its check-in, and nothing is half-committed.
        """
        if len(effects) > 1 and all(type(e) in self._in_transaction for e in effects):
            reads_only = all(type(e) in _READS for e in effects)
            try:
                if reads_only:
                    with self.engine.connect().execution_options(**READ_ONLY) as conn:
                        return [(True, self._in_transaction[type(e)](conn, e)) for e in effects]
                with self.engine.begin() as conn:
                    results = [self._in_transaction[type(e)](conn, e) for e in effects]
                return [(True, r) for r in results]
            except (OperationalError, self._dbapi_operational) as exc:
                # The database itself (down, locked, connection lost), not one effect: each
                # would only wait for the same failure again.
                return [(False, exc)] * len(effects)
            except Exception:  # rolled back: each effect is retried alone below
                pass
        outcomes: list[tuple[bool, Any]] = []
        for effect in effects:
            try:
                outcomes.append((True, self.run(effect)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes

    # ------------------------------------------------------------ lookups

    def lookup_line(self, effect: LookupLine) -> tuple[int, ...]:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return self._lookup_line(conn, effect)

    def _lookup_line(self, conn: Connection, effect: LookupLine) -> tuple[int, ...]:
        return tuple(_LINE.scalars(conn, e164=effect.e164))

    def lookup_phone_code(self, effect: LookupPhoneCode) -> tuple[int, ...]:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return self._lookup_phone_code(conn, effect)

    def _lookup_phone_code(self, conn: Connection, effect: LookupPhoneCode) -> tuple[int, ...]:
        return tuple(_PHONE_CODE.scalars(conn, code=effect.code))

    def record_call(self, effect: RecordCall) -> int:
        with self.engine.begin() as conn:
            return self._record_call(conn, effect)

    def _record_call(self, conn: Connection, effect: RecordCall) -> int:
        return self._insert_call(
            conn,
            effect.call,
            outcome=effect.outcome,
            stage=effect.stage,
            at=effect.at,
            worker_number_entered=effect.worker_number_entered,
            failed_pin_attempts=effect.failed_pin_attempts,
            resident_id=effect.resident_id,
            review_status=effect.review_status,
            detail=effect.detail,
        )

    # ------------------------------------------------------------ helpers

    def _insert_call(self, conn: Connection, call: CallInfo, *, outcome: str, stage: str, at: dt.datetime,
                     **fields: Any) -> int:
        values = {
            "uniqueid": call.uniqueid,
            "script": call.script,
            "started_at": call.started_at,
            "ended_at": at,
            "caller_e164": call.caller_e164,
            "stage": stage,
            "outcome": outcome,
        }
        return int(_INSERT_CALL.scalars(conn, **(_CALL_DEFAULTS | values | fields))[0])

    def _worker(self, conn: Connection, number: str, pin: str, line: str, at: dt.datetime,
                pin_hash: str | None = None, homes: tuple[int, ...] = ()) -> tuple[Any, bool, bool]:
        """(worker row or None, locked, trusted). A journal replay passes the PIN's hash and is never locked.

        ``homes`` are the homes the caller ID (a known landline) names; the line is
        *trusted* when the worker has a visit there now (:func:`_here_now_stmt`). That is
        asked only when a lock or guard would refuse the call, or the PIN was wrong.
        """
        if pin_hash is not None:
            row = _WORKER.first(conn, number=number)
            if row is None or not hmac.compare_digest(row.pin_hash, pin_hash):
                return None, False, False
            return row, False, False
        row = _WORKER_LOCK.first(conn, number=number, line=line, at=at)
        if row is None:
            # An unknown number may still be locked on this line (someone walking through numbers).
            return None, _LOCKED_ANY.first(conn, number=number[:16], line=line, at=at) is not None, False
        if row.until is not None or guard_applies(line, row.guard_all, row.guard_unknown):
            if not self._here_now(conn, row.id, homes, at):
                return None, True, False  # refused without looking at the PIN: no guess is made
            if self.hasher.verify(number, pin, row.pin_hash):
                return row, False, True
            return None, False, True
        if not self.hasher.verify(number, pin, row.pin_hash):
            return None, False, self._here_now(conn, row.id, homes, at)
        return row, False, False

    def _here_now(self, conn: Connection, wid: int, homes: tuple[int, ...], at: dt.datetime) -> bool:
        if not homes:
            return False
        w = self.windows
        return _here_now_stmt(len(homes)).first(
            conn, wid=wid, wid2=wid, latest=at + w.before, earliest=at - w.after, since=at - w.open_attendance,
            **_rid_params(homes)) is not None

    def _login_failed(self, conn: Connection, call: CallInfo, *, number: str, line: str, failures: int,
                      at: dt.datetime, final: bool, locked: bool, resident_id: int | None,
                      replay: bool = False, trusted: bool = False) -> LoginFailed:
        """A wrong PIN: count it (lockout), and record the failed login on the last try or a lock."""
        delay = 0.0
        detail = ""
        if locked:
            detail = "worker number locked after repeated wrong PINs (this line, or every line but a visit now)"
        elif not replay:
            verdict, counts = record_failure(conn, self.lockout, number=number, line=line, at=at,
                                             uniqueid=call.uniqueid, trusted=trusted)
            delay = verdict.delay
            if verdict.lock_until is not None:
                locked = True
                detail = f"locked on this line after {counts[0]} wrong PINs"
            elif not trusted and guard_applies(line, verdict.guard_until, verdict.guard_unknown_until):
                locked = True
                detail = f"worker number locked after {counts[2]} wrong PINs (budget across lines)"
            if verdict.alert_worker:
                self._alert_worker(conn, number, counts[2], at)
        if not (final or locked):
            return LoginFailed(delay=delay)
        record_id = self._insert_call(
            conn, call, outcome=CallOutcome.FAILED_LOGIN, stage=Stage.PIN, at=at,
            worker_number_entered=number[:16], failed_pin_attempts=failures + 1,
            resident_id=resident_id, review_status=ReviewStatus.OPEN, detail=detail,
        )
        return LoginFailed(record_id, delay=delay, locked=locked)

    def _alert_worker(self, conn: Connection, number: str, count: int, at: dt.datetime) -> None:
        """Wrong PINs for one worker number across many lines: tell the office (once an hour)."""
        raise_alert = _raise_alert_function()
        if raise_alert is None:
            return
        wid = _WORKER.first(conn, number=number)
        from sqlalchemy.orm import Session

        with Session(bind=conn) as session:
            raise_alert(session, kind="failed_login", worker_id=wid.id if wid is not None else None, at=at,
                        key=f"failed_login:worker:{number[:16]}:{at:%Y%m%d%H}",
                        detail=f"{count} wrong PINs for worker number {number[:16]} in the last hour, on several lines")
            session.flush()

    def _retrying(self, fn: Any, effect: Any) -> Any:
        for attempt in range(RACE_RETRIES):
            try:
                with self.engine.begin() as conn:
                    return fn(conn, effect)
            except (IntegrityError, _Race, self._dbapi_integrity):
                # A concurrent call took the uniqueid or the (visit, worker) slot: decide again.
                # (Prepared statements run on the DBAPI cursor: their errors are the driver's own.)
                if attempt == RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ check-in

    def check_in(self, effect: CheckIn) -> LoginFailed | CheckedIn | CodeRefused:
        return self._retrying(self._check_in, effect)

    def _resolve_home(self, conn: Connection, e: CheckIn) -> tuple[tuple[int, ...], bool]:
        """A journalled call whose line lookup never ran: the caller ID, else the phone code."""
        if e.call.caller_e164:
            rids = tuple(_LINE.scalars(conn, e164=e.call.caller_e164))
            if rids:
                return rids, True
        if e.phone_code:
            return tuple(_PHONE_CODE.scalars(conn, code=e.phone_code)), False
        return (), False

    def _check_in(self, conn: Connection, e: CheckIn) -> LoginFailed | CheckedIn | CodeRefused:
        call, at, rids = e.call, e.at, e.resident_ids
        line = line_key(call.caller_e164, rids, landline=e.location_verified)
        homes = rids if e.location_verified and call.caller_e164 else ()
        unanswered = e.mode == Mode.UNANSWERED
        if unanswered:
            # Named by the number dialled, no PIN: nothing to guess, so no lockout to count.
            worker, locked, trusted = _WORKER_BY_DDI.first(conn, ddi=e.ddi_e164), False, False
            if worker is None:
                record_id = self._insert_call(
                    conn, call, outcome=CallOutcome.FAILED_LOGIN, stage=Stage.RECORDING, at=at,
                    resident_id=rids[0] if len(rids) == 1 else None, review_status=ReviewStatus.OPEN,
                    location_verified=e.location_verified,
                    detail="unanswered check-in: the number dialled is no worker's, or their unanswered mode is off",
                )
                return LoginFailed(record_id)
        elif e.preauthenticated:  # the enrolled phone is the credential (web.worker_app)
            worker, locked, trusted = _WORKER.first(conn, number=e.worker_number), False, False
        else:
            worker, locked, trusted = self._worker(conn, e.worker_number, e.pin, line, at, e.pin_hash, homes)
        if worker is None:
            return self._login_failed(conn, call, number=e.worker_number, line=line, failures=e.failed_attempts,
                                      at=at, final=e.final_try, locked=locked,
                                      resident_id=rids[0] if len(rids) == 1 else None,
                                      replay=e.pin_hash is not None, trusted=trusted)
        wid = worker.id
        method, verified, entered = e.method, e.location_verified, e.entered_at
        if e.device_code is not None:
            found = self._device_home(conn, wid, e)
            if isinstance(found, str):
                return CodeRefused(found)
            # Logged at the code's time: a code keyed late says when the worker was there.
            rids, method, verified = (found.resident_id,), Method.DEVICE, True
            if found.late:
                at, entered = found.at, e.at
        common = {
            "worker_id": wid,
            "worker_number_entered": e.worker_number or None,
            "failed_pin_attempts": e.failed_attempts,
            "location_verified": verified,
        }

        # The same call again (Asterisk retried, or a replay): answer with what was logged.
        dup = _DUPLICATE.first(conn, uid=call.uniqueid, uid2=call.uniqueid)
        if dup is not None:
            direction = "arrival" if dup.arrival_uniqueid == call.uniqueid else "departure"
            logged = dup.arrival_at if direction == "arrival" else dup.departure_at
            record_id = self._insert_call(
                conn, call, outcome=CallOutcome.DUPLICATE, stage=Stage.RECORDING, at=at,
                resident_id=dup.resident_id, attendance_id=dup.id, visit_id=dup.visit_id,
                detail=f"uniqueid already logged as the {direction}", **common,
            )
            return CheckedIn(direction, logged, dup.id, dup.visit_id, dup.kind, record_id, dup.worker_id,
                             dup.resident_id, duplicate=True)

        # An open arrival by this worker at this home: this call is the departure.
        open_row = _open_stmt(len(rids)).first(conn, wid=wid, at=at, since=at - self.windows.open_attendance,
                                               **_rid_params(rids))
        if open_row is not None and open_row.arrival_uniqueid == call.uniqueid:
            # The same call committed its arrival on another server after our duplicate check ran.
            raise _Race("uniqueid logged concurrently as the arrival")
        if open_row is not None:
            if not _DEPART.run(conn, aid=open_row.id, at=at, at2=at, verified=verified, unanswered=unanswered,
                               uid=call.uniqueid, method=method, entered=entered):
                raise _Race("attendance closed concurrently")
            record_id = self._insert_call(
                conn, call, outcome=CallOutcome.DEPARTURE, stage=Stage.RECORDING, at=at,
                resident_id=open_row.resident_id, attendance_id=open_row.id, visit_id=open_row.visit_id, **common,
            )
            return CheckedIn("departure", at, open_row.id, open_row.visit_id, open_row.kind, record_id, wid,
                             open_row.resident_id)

        visit_id, resident_id, kind = self._match_arrival(conn, wid, rids, at)
        attendance_id = int(_INSERT_ATTENDANCE.scalars(
            conn, visit_id=visit_id, resident_id=resident_id, worker_id=wid, kind=kind, arrival_at=at,
            arrival_method=method, arrival_verified=verified, arrival_uniqueid=call.uniqueid,
            arrival_entered_at=entered, arrival_unanswered=unanswered, departure_verified=False,
            departure_unanswered=False, created_at=at, updated_at=at,
        )[0])
        record_id = self._insert_call(
            conn, call, outcome=CallOutcome.ARRIVAL, stage=Stage.RECORDING, at=at,
            resident_id=resident_id, attendance_id=attendance_id, visit_id=visit_id,
            review_status=ReviewStatus.OPEN if visit_id is None else ReviewStatus.NONE,
            detail="" if kind == AttendanceKind.SCHEDULED else f"{kind} attendance", **common,
        )
        return CheckedIn("arrival", at, attendance_id, visit_id, kind, record_id, wid, resident_id)

    def _device_home(self, conn: Connection, wid: int, e: CheckIn) -> Any:
        """The home whose device showed ``e.device_code`` (a :class:`CodeMatch`), or a refusal reason.

        First the devices of the homes this worker can be at (their visits in the match
        window, widened by the late-entry limit, and any open arrival), over the whole
        late-entry window; then, for a substitute, every device but only for a fresh code
        (a few HMACs each). The code's time step is claimed in the same transaction, so a
        code is accepted once.
        """
        w, at = self.windows, e.at
        assigned = (select(visits.c.resident_id).join(visit_workers, visit_workers.c.visit_id == visits.c.id)
                    .where(visit_workers.c.worker_id == wid, visits.c.status == VisitStatus.SCHEDULED,
                           visits.c.planned_start <= at + w.before,
                           visits.c.planned_end >= at - w.after - w.device_late))
        open_here = select(attendances.c.resident_id).where(
            attendances.c.worker_id == wid, attendances.c.departure_at.is_(None),
            attendances.c.arrival_at >= at - w.open_attendance)
        columns = (devices.c.id, devices.c.resident_id, devices.c.serial, devices.c.secret_sealed,
                   devices.c.digits, devices.c.step_seconds)
        own = conn.execute(select(*columns).where(
            devices.c.active.is_(True), devices.c.resident_id.in_(assigned.union(open_here)))).all()
        found = match_code(e.device_code or "", self._keys(own), at, w.device_late)
        if found == Refusal.NO_MATCH:
            others = conn.execute(select(*columns).where(
                devices.c.active.is_(True), devices.c.id.not_in([r.id for r in own]))).all()
            found = match_code(e.device_code or "", self._keys(others), at, dt.timedelta(0))
        if isinstance(found, str):
            return found
        used = conn.execute(select(code_uses.c.id).where(code_uses.c.device_id == found.device_id,
                                                         code_uses.c.counter == found.counter)).first()
        if used is not None:
            return Refusal.USED
        conn.execute(insert(code_uses).values(device_id=found.device_id, counter=found.counter,
                                              uniqueid=e.call.uniqueid, used_at=at))
        return found

    def _keys(self, rows: Sequence[Any]) -> list[DeviceKey]:
        keys = []
        for r in rows:
            try:
                secret = self.sealer.open(r.secret_sealed, context=device_context(r.serial))
            except SealError:
                continue  # sealed under another key (a restored backup): that device cannot match
            keys.append(DeviceKey(r.id, r.resident_id, secret, r.digits, r.step_seconds))
        return keys

    def _match_arrival(self, conn: Connection, wid: int, rids: Sequence[int],
                       at: dt.datetime) -> tuple[int | None, int, str]:
        """This worker's visit nearest in time; else someone else's (substitute); else none."""
        w = self.windows
        rows = _window_stmt(len(rids)).all(conn, latest=at + w.before, earliest=at - w.after, **_rid_params(rids))
        if not rows:
            return None, rids[0], AttendanceKind.UNSCHEDULED
        taken: dict[int, set[int]] = {}
        for r in rows:
            workers_there = taken.setdefault(r.id, set())
            if r.taken_by is not None:
                workers_there.add(r.taken_by)
        free = [r for r in rows if wid not in taken.get(r.id, ())]
        own = [r for r in free if r.worker_id == wid]
        if own:
            best = min(own, key=lambda r: _distance(at, r.planned_start, r.planned_end))
            return best.id, best.resident_id, AttendanceKind.SCHEDULED
        if free:
            # Prefer a visit still short of workers, then the nearest in time.
            best = min(free, key=lambda r: (len(taken.get(r.id, ())) >= r.workers_required,
                                            _distance(at, r.planned_start, r.planned_end)))
            return best.id, best.resident_id, AttendanceKind.SUBSTITUTE
        return None, rids[0], AttendanceKind.UNSCHEDULED

    # ------------------------------------------------------------ no reply

    def no_reply(self, effect: NoReplyCall) -> LoginFailed | NeedPhoneCode | NoReplyRecorded:
        return self._retrying(self._no_reply, effect)

    def _no_reply(self, conn: Connection, e: NoReplyCall) -> LoginFailed | NeedPhoneCode | NoReplyRecorded:
        call, at = e.call, e.at
        line = line_key(call.caller_e164, landline=False)  # the no-reply call is never from a home landline
        worker, locked, _ = self._worker(conn, e.worker_number, e.pin, line, at)
        if worker is None:
            return self._login_failed(conn, call, number=e.worker_number, line=line, failures=e.failed_attempts,
                                      at=at, final=e.final_try, locked=locked, resident_id=None)
        wid = worker.id
        if call.caller_e164 is None:
            detail = "caller ID withheld"
        elif call.caller_e164 == worker.mobile_e164:
            detail = "caller ID is the worker's mobile"
        else:
            detail = "caller ID is not the worker's mobile"
        arrived = (
            select(attendances.c.id)
            .where(attendances.c.visit_id == visits.c.id, attendances.c.worker_id == wid,
                   attendances.c.arrival_at.is_not(None))
            .exists()
        )
        due = conn.execute(
            select(visits.c.id, visits.c.resident_id, residents.c.phone_code)
            .join(visit_workers, and_(visit_workers.c.visit_id == visits.c.id, visit_workers.c.worker_id == wid))
            .join(residents, residents.c.id == visits.c.resident_id)
            .where(
                visits.c.status == VisitStatus.SCHEDULED,
                visits.c.planned_start <= at + self.windows.noreply_before,
                visits.c.planned_end >= at,
                ~arrived,
            )
            .order_by(visits.c.planned_start)
        ).all()
        chosen = due
        if len(due) > 1 and e.phone_code is not None:
            chosen = [r for r in due if r.phone_code == e.phone_code]
        if len(chosen) > 1 or (len(due) > 1 and not chosen):
            if not e.final_code:
                return NeedPhoneCode(len(due))
            chosen = []
            detail += "; several visits due and the phone code matched none"
        common = {
            "worker_id": wid,
            "worker_number_entered": e.worker_number,
            "failed_pin_attempts": e.failed_attempts,
        }
        if not chosen:
            record_id = self._insert_call(
                conn, call, outcome=CallOutcome.NO_VISIT, stage=Stage.RECORDING, at=at,
                review_status=ReviewStatus.OPEN, detail=("no visit due; " + detail)[:500], **common,
            )
            # A worker at a door nobody opens is a safeguarding event whether or not we know
            # the visit: the office is told now (the same key as the pass's safety net), and
            # so the worker can be told the office knows.
            raised = self._raise_no_reply(conn, worker_id=wid, visit_id=None, resident_id=None,
                                          call_record_id=record_id, at=at,
                                          detail=f"no reply reported by worker {e.worker_number}: no visit matched")
            return NoReplyRecorded(record_id, None, wid, None, raised)
        visit = chosen[0]
        record_id = self._insert_call(
            conn, call, outcome=CallOutcome.NO_REPLY, stage=Stage.RECORDING, at=at,
            resident_id=visit.resident_id, visit_id=visit.id, detail=detail, **common,
        )
        raised = self._raise_no_reply(conn, worker_id=wid, visit_id=visit.id, resident_id=visit.resident_id,
                                      call_record_id=record_id, at=at, detail="")
        return NoReplyRecorded(record_id, visit.id, wid, visit.resident_id, raised)

    def _raise_no_reply(self, conn: Connection, **fields: Any) -> bool:
        """The no-reply alert in this call's transaction; True when the office has it (new or raised before)."""
        raise_alert = _raise_alert_function()
        if raise_alert is None:
            return False
        from sqlalchemy.orm import Session

        with Session(bind=conn) as session:
            raise_alert(session, kind="no_reply", **fields)
            session.flush()
        return True

    # ------------------------------------------------------------ journal replay

    def apply_journal_event(self, session: Any, event: Any) -> str:
        """Replay one journal event in the ledger's transaction, at its original time.

        The same decisions as a live call (arrival or departure, visit matching, a
        uniqueid already logged is a duplicate); the PIN is checked against its hash.
        Returns the outcome for the ledger. Raises only when the database fails, so the
        event stays in the journal for the next try.
        """
        from ivr.journal import effect_for

        effect = effect_for(event)
        conn = session.connection()
        if isinstance(effect, CheckIn):
            if not effect.resident_ids and effect.device_code is None:  # the line lookup never ran
                rids, verified = self._resolve_home(conn, effect)
                if not rids:
                    self._insert_call(
                        conn, effect.call, outcome=CallOutcome.UNKNOWN_LINE, stage=Stage.RECORDING, at=effect.at,
                        worker_number_entered=effect.worker_number[:16], review_status=ReviewStatus.OPEN,
                        detail="journalled during a database outage; no home for this line or phone code",
                    )
                    return CallOutcome.UNKNOWN_LINE
                effect = dataclasses.replace(effect, resident_ids=rids, location_verified=verified)
            result = self._check_in(conn, effect)
            if isinstance(result, CheckedIn):
                return CallOutcome.DUPLICATE if result.duplicate else result.direction
            if isinstance(result, CodeRefused):
                self._insert_call(
                    conn, effect.call, outcome=CallOutcome.UNKNOWN_LINE, stage=Stage.RECORDING, at=effect.at,
                    worker_number_entered=effect.worker_number[:16], review_status=ReviewStatus.OPEN,
                    detail=f"journalled during a database outage; device code refused: {result.reason}",
                )
                return CallOutcome.UNKNOWN_LINE
            return CallOutcome.FAILED_LOGIN if result.call_record_id is not None else "failed"
        if isinstance(effect, RecordCall):
            # A record whose insert outlived the call's deadline (agi_effect_timeout) may
            # have committed after all, beside its journalled twin: the same uniqueid,
            # outcome and stage is the same fact, written once.
            same = conn.scalar(select(CallRecord.id).where(
                CallRecord.uniqueid == effect.call.uniqueid, CallRecord.outcome == effect.outcome,
                CallRecord.stage == effect.stage).limit(1))
            if same is not None:
                return CallOutcome.DUPLICATE
            self._insert_call(conn, effect.call, outcome=effect.outcome, stage=effect.stage, at=effect.at,
                              worker_number_entered=effect.worker_number_entered,
                              failed_pin_attempts=effect.failed_pin_attempts, resident_id=effect.resident_id,
                              review_status=effect.review_status, detail=effect.detail)
            return effect.outcome
        raise TypeError(f"cannot replay {type(effect).__name__}")
