"""An append-only, fsynced journal of check-ins the database could not take.

A check-in is the evidence that a vulnerable person was seen. When the database is
down, the FastAGI server appends the call's facts here and fsyncs *before* the worker
hears "logged"; when the database is back the events are replayed in order, with their
original times.

Exactly-once replay does not depend on this file: every event carries an id, and the
replay writes ``journal_applied(event_id)`` in the same transaction as the event's
effect, so a crash between the two leaves neither, and a second replay skips what the
first applied. The Asterisk uniqueid constraints on attendances guard the same way.

A crash can only tear the last line (each append is one ``write`` then ``fsync``); a
torn line fails its checksum and is set aside, never half-applied. A failed append
(disk full: a short write, or a failed fsync) is truncated back to where it started,
and an append that finds a torn tail anyway (a crash, or a failed truncate) starts with
a newline, so the event after a tear is always on a line of its own and replayed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from ivr.models import Base, UTCDateTime, utcnow

CURRENT = "journal.jsonl"
LOCK = "journal.lock"  # held briefly by each append and by the rename that starts a replay
REPLAY_LOCK = "replay.lock"  # held for a whole replay: one replayer at a time, across processes


class JournalApplied(Base):
    """Journal events already written to the database (the exactly-once ledger)."""

    __tablename__ = "journal_applied"

    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(40), default="")


@dataclasses.dataclass(frozen=True)
class JournalEvent:
    kind: str  # what to replay, e.g. "checkin"
    at: dt.datetime  # when it happened (UTC), the time that will be recorded
    uniqueid: str
    data: dict[str, Any]
    event_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    def to_line(self) -> bytes:
        body = {"id": self.event_id, "kind": self.kind, "at": self.at.astimezone(dt.UTC).isoformat(),
                "uniqueid": self.uniqueid, "data": self.data}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return json.dumps({"crc": zlib.crc32(text.encode()), "event": body},
                          sort_keys=True, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> JournalEvent:
        outer = json.loads(line)
        body = outer["event"]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        if zlib.crc32(text.encode()) != outer["crc"]:
            raise ValueError("checksum mismatch")
        return cls(kind=body["kind"], at=dt.datetime.fromisoformat(body["at"]), uniqueid=body["uniqueid"],
                   data=body["data"], event_id=body["id"])


@dataclasses.dataclass
class ReplayReport:
    applied: int = 0
    skipped: int = 0  # already applied by an earlier replay
    torn: int = 0  # unreadable lines set aside
    failed: list[str] = dataclasses.field(default_factory=list)
    busy: bool = False  # another replay held the journal; nothing was done
    outcomes: dict[str, int] = dataclasses.field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """One ``write``; a short write (disk full) is an error, never a silently shorter line."""
    if os.write(fd, data) != len(data):
        raise OSError("short write to journal")


class Journal:
    """The journal directory: ``journal.jsonl`` for new events, ``replay-*.jsonl`` in progress."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def current(self) -> Path:
        return self.directory / CURRENT

    @contextlib.contextmanager
    def _locked(self, name: str, blocking: bool = True) -> Iterator[bool]:
        """An advisory file lock (shared by every process using this directory)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def append(self, event: JournalEvent) -> None:
        """Durably record one event: returns only after the bytes are on disk.

        The lock keeps an append from landing in a file a concurrent replay has just
        renamed aside and read to its end.
        """
        line = event.to_line()
        with self._locked(LOCK):
            created = not self.current.exists()
            fd = os.open(self.current, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                start = os.fstat(fd).st_size
                if start and os.pread(fd, 1, start - 1) != b"\n":
                    # A torn tail (a crash mid-append, or a failed append whose undo
                    # failed too): start on a fresh line, so the torn bytes stay one
                    # unreadable line of their own and this event is readable.
                    line = b"\n" + line
                try:
                    _write_all(fd, line)
                    os.fsync(fd)
                except OSError:
                    # Nobody was told "logged": take the partial bytes back, so the next
                    # append starts where this one did (and a retried call is not doubled).
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                        os.fsync(fd)
                    raise
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.directory)

    def files(self) -> list[Path]:
        """Files still to replay, oldest first (replays interrupted earlier, then current)."""
        if not self.directory.exists():
            return []
        pending = sorted(self.directory.glob("replay-*.jsonl"))
        if self.current.exists():
            pending.append(self.current)
        return pending

    @staticmethod
    def read(path: Path) -> Iterator[JournalEvent | None]:
        """Events in order; ``None`` for a torn or corrupt line (set aside, reported)."""
        with open(path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    yield None  # torn by a crash mid-write
                    continue
                try:
                    yield JournalEvent.from_line(line)
                except (ValueError, KeyError, TypeError):
                    yield None

    def pending(self) -> list[JournalEvent]:
        return [e for path in self.files() for e in self.read(path) if e is not None]

    def replay(self, factory: sessionmaker[Session],
               apply: Callable[[Session, JournalEvent], str]) -> ReplayReport:
        """Apply every pending event once, in order; keep the file until all are applied.

        The current file is first renamed aside, so check-ins journalled while the
        replay runs go to a fresh file and are not lost or reordered.
        """
        report = ReplayReport()
        with self._locked(REPLAY_LOCK, blocking=False) as mine:
            if not mine:
                report.busy = True  # another process is replaying this journal right now
                return report
            self._replay(factory, apply, report)
        return report

    def _replay(self, factory: sessionmaker[Session], apply: Callable[[Session, JournalEvent], str],
                report: ReplayReport) -> None:
        with self._locked(LOCK):
            if self.current.exists():
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
                self.current.rename(self.directory / f"replay-{stamp}.jsonl")
                _fsync_dir(self.directory)
        for path in sorted(self.directory.glob("replay-*.jsonl")) if self.directory.exists() else []:
            complete = True
            for event in self.read(path):
                if event is None:
                    report.torn += 1
                    continue
                try:
                    outcome = self._apply_once(factory, apply, event)
                except Exception as exc:  # keep the file; the next replay tries again
                    report.failed.append(f"{event.event_id}: {type(exc).__name__}")
                    complete = False
                    break
                if outcome is None:
                    report.skipped += 1
                else:
                    report.applied += 1
                    report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
            if not complete:
                break
            done = self.directory / "replayed"
            done.mkdir(exist_ok=True)
            path.rename(done / path.name)  # kept for audit; never replayed again
            _fsync_dir(self.directory)

    @staticmethod
    def _apply_once(factory: sessionmaker[Session], apply: Callable[[Session, JournalEvent], str],
                    event: JournalEvent) -> str | None:
        with factory() as session:
            if session.scalar(select(JournalApplied.event_id).where(JournalApplied.event_id == event.event_id)):
                return None
            try:
                outcome = apply(session, event)
                session.add(JournalApplied(event_id=event.event_id, outcome=outcome[:40]))
                session.commit()
            except IntegrityError:
                # Another server replayed the same event concurrently: it is applied once.
                session.rollback()
                if session.scalar(select(JournalApplied.event_id).where(JournalApplied.event_id == event.event_id)):
                    return None
                raise
            return outcome


# ---------------------------------------------------------------- the call path's journal


def directory_for(settings: Any) -> Path:
    return Path(settings.path(settings.journal_dir))


def status(settings: Any) -> dict[str, Any]:
    """What the office board shows: is this server running on its journal?

    ``pending`` events not yet in the database, the oldest and newest of their times,
    and torn lines set aside. Reads the files (small: only an outage's calls).
    """
    journal = Journal(directory_for(settings))
    pending = 0
    torn = 0
    oldest: dt.datetime | None = None
    newest: dt.datetime | None = None
    for path in journal.files():
        for event in journal.read(path):
            if event is None:
                torn += 1
                continue
            pending += 1
            oldest = event.at if oldest is None or event.at < oldest else oldest
            newest = event.at if newest is None or event.at > newest else newest
    return {
        "on_journal": pending > 0,
        "pending": pending,
        "oldest_at": oldest.isoformat() if oldest else None,
        "newest_at": newest.isoformat() if newest else None,
        "torn": torn,
        "directory": str(journal.directory),
    }


def _call_data(call: Any) -> dict[str, Any]:
    return {"uniqueid": call.uniqueid, "script": call.script, "started_at": call.started_at.isoformat(),
            "caller_e164": call.caller_e164}


def event_for(effect: Any, hasher: Any) -> JournalEvent:
    """The journal line for a dialog effect the database could not take. Never the PIN:
    only ``hasher.hash(number, pin)``, which the replay compares with the worker's hash."""
    from ivr.dialog import CheckIn, RecordCall

    if isinstance(effect, CheckIn):
        data = {
            "call": _call_data(effect.call),
            "worker_number": effect.worker_number,
            "pin_hash": effect.pin_hash or hasher.hash(effect.worker_number, effect.pin),
            "resident_ids": list(effect.resident_ids),
            "location_verified": effect.location_verified,
            "phone_code": effect.phone_code,
            "failed_attempts": effect.failed_attempts,
            "mode": effect.mode,
            "ddi_e164": effect.ddi_e164,
            "device_code": effect.device_code,
        }
        return JournalEvent("checkin", effect.at, effect.call.uniqueid, data)
    if isinstance(effect, RecordCall):
        fields = dataclasses.asdict(effect)
        fields.pop("call")
        fields.pop("at")
        return JournalEvent("call", effect.at, effect.call.uniqueid, {"call": _call_data(effect.call), **fields})
    raise TypeError(f"cannot journal {type(effect).__name__}")


def effect_for(event: JournalEvent) -> Any:
    """The effect to run again at the event's original time."""
    from ivr.dialog import CallInfo, CheckIn, RecordCall

    d = event.data
    c = d["call"]
    call = CallInfo(str(c["uniqueid"]), str(c["script"]), dt.datetime.fromisoformat(c["started_at"]),
                    c.get("caller_e164"))
    if event.kind == "checkin":
        return CheckIn(call, str(d["worker_number"]), "", tuple(int(r) for r in d["resident_ids"]),
                       bool(d["location_verified"]), event.at, int(d["failed_attempts"]), True,
                       phone_code=d.get("phone_code"), pin_hash=str(d["pin_hash"]),
                       mode=str(d.get("mode") or "pin"), ddi_e164=d.get("ddi_e164"),
                       device_code=d.get("device_code"))
    if event.kind == "call":
        fields = {k: v for k, v in d.items() if k != "call"}
        return RecordCall(call, at=event.at, **fields)
    raise ValueError(f"unknown journal event kind {event.kind!r}")


class CallJournal:
    """The server's journal: appends (journal thread), replays (database thread), a pending count.

    While events are pending, new check-ins are journalled too (the driver asks
    :attr:`pending`), so a departure is never written before the journalled arrival it closes.
    """

    def __init__(self, directory: Path, hasher: Any) -> None:
        self.journal = Journal(directory)
        self.hasher = hasher
        self._lock = threading.Lock()
        self.pending = len(self.journal.pending())
        self.appended = 0
        self.replayed = 0

    def append(self, effect: Any) -> Any:
        """Blocking (fsync): run off the reactor thread. Returns :class:`ivr.dialog.Journalled`."""
        from ivr.dialog import Journalled

        event = event_for(effect, self.hasher)
        self.journal.append(event)
        with self._lock:
            self.pending += 1
            self.appended += 1
        return Journalled(event.event_id, event.at)

    def replay(self, factory: sessionmaker[Session], store: Any) -> ReplayReport:
        """Blocking: every pending event into the database once, in order, at its original time."""
        report = self.journal.replay(factory, store.apply_journal_event)
        with self._lock:
            self.replayed += report.applied
            self.pending = len(self.journal.pending())
        return report
