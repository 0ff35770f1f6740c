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
torn line fails its checksum and is set aside, never half-applied.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The journal directory: ``journal.jsonl`` for new events, ``replay-*.jsonl`` in progress."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def current(self) -> Path:
        return self.directory / CURRENT

    def append(self, event: JournalEvent) -> None:
        """Durably record one event: returns only after the bytes are on disk."""
        self.directory.mkdir(parents=True, exist_ok=True)
        created = not self.current.exists()
        fd = os.open(self.current, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            line = event.to_line()
            if os.write(fd, line) != len(line):
                raise OSError("short write to journal")
            os.fsync(fd)
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
            if not complete:
                break
            done = self.directory / "replayed"
            done.mkdir(exist_ok=True)
            path.rename(done / path.name)  # kept for audit; never replayed again
            _fsync_dir(self.directory)
        return report

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
