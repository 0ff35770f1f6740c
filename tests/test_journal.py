"""The check-in journal: durable appends, torn tails set aside, exactly-once replay."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from ivr.journal import Journal, JournalApplied, JournalEvent
from ivr.models import AuditEntry
from tests.helpers import factory_for

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def _apply(session, event: JournalEvent) -> str:
    session.add(AuditEntry(actor="journal", action="replay", entity="call", entity_id=event.uniqueid,
                           after=str(event.at)))
    return "recorded"


def _events(n: int) -> list[JournalEvent]:
    return [JournalEvent("checkin", T0 + dt.timedelta(minutes=i), f"call-{i}", {"i": i}) for i in range(n)]


def test_replay_applies_each_event_once_in_order_with_original_time(settings, tmp_path):
    journal = Journal(tmp_path / "journal")
    for e in _events(3):
        journal.append(e)
    factory = factory_for(settings)
    report = journal.replay(factory, _apply)
    assert (report.applied, report.skipped, report.torn) == (3, 0, 0)
    assert journal.pending() == []
    with factory() as s:
        rows = s.execute(select(AuditEntry.entity_id, AuditEntry.after).order_by(AuditEntry.id)).all()
    assert [r[0] for r in rows] == ["call-0", "call-1", "call-2"]
    assert rows[1][1] == str(T0 + dt.timedelta(minutes=1))
    again = journal.replay(factory, _apply)
    assert again.applied == 0


def test_a_torn_last_line_is_set_aside_and_the_rest_replayed(settings, tmp_path):
    journal = Journal(tmp_path / "journal")
    for e in _events(2):
        journal.append(e)
    with open(journal.current, "ab") as fh:  # a crash in the middle of a write
        fh.write(_events(3)[2].to_line()[:25])
    report = journal.replay(factory_for(settings), _apply)
    assert (report.applied, report.torn) == (2, 1)


def test_an_event_applied_before_a_crash_is_not_applied_again(settings, tmp_path):
    journal = Journal(tmp_path / "journal")
    events = _events(2)
    for e in events:
        journal.append(e)
    factory = factory_for(settings)
    # The first replay applied event 0 and died before moving the file aside.
    with factory() as s:
        _apply(s, events[0])
        s.add(JournalApplied(event_id=events[0].event_id, outcome="recorded"))
        s.commit()
    report = journal.replay(factory, _apply)
    assert (report.applied, report.skipped) == (1, 1)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 2


def test_failure_mid_replay_keeps_the_rest_for_next_time(settings, tmp_path):
    journal = Journal(tmp_path / "journal")
    for e in _events(3):
        journal.append(e)
    factory = factory_for(settings)

    def flaky(session, event):
        if event.uniqueid == "call-1":
            raise ConnectionError("database went away again")
        return _apply(session, event)

    first = journal.replay(factory, flaky)
    assert first.applied == 1 and first.failed
    journal.append(JournalEvent("checkin", T0 + dt.timedelta(hours=1), "call-late", {}))
    second = journal.replay(factory, _apply)
    assert (second.applied, second.skipped) == (3, 1)
    with factory() as s:
        order = list(s.scalars(select(AuditEntry.entity_id).order_by(AuditEntry.id)))
    assert order == ["call-0", "call-1", "call-2", "call-late"]


# ---------------------------------------------------------------- issue 14: torn and short writes


def _uids(journal: Journal) -> list[str | None]:
    return [e.uniqueid if e else None for path in journal.files() for e in journal.read(path)]


def test_an_append_after_partial_bytes_starts_on_a_fresh_line(tmp_path):
    """The issue's ten lines: append, partial bytes, append, read -> both events readable."""
    journal = Journal(tmp_path / "journal")
    journal.append(JournalEvent("checkin", T0, "uid-1", {}))
    with open(journal.current, "ab") as fh:
        fh.write(JournalEvent("checkin", T0, "uid-lost", {}).to_line()[:30])
    journal.append(JournalEvent("checkin", T0, "uid-2", {}))
    assert _uids(journal) == ["uid-1", None, "uid-2"]
    assert [e.uniqueid for e in journal.pending()] == ["uid-1", "uid-2"]


def test_every_confirmed_event_after_a_torn_tail_is_replayed(settings, tmp_path):
    journal = Journal(tmp_path / "journal")
    events = _events(4)
    journal.append(events[0])
    with open(journal.current, "ab") as fh:  # crash in the middle of a write
        fh.write(events[1].to_line()[:-7])
    journal.append(events[2])
    journal.append(events[3])
    factory = factory_for(settings)
    report = journal.replay(factory, _apply)
    assert (report.applied, report.torn) == (3, 1)
    with factory() as s:
        assert list(s.scalars(select(AuditEntry.entity_id).order_by(AuditEntry.id))) == [
            "call-0", "call-2", "call-3"]


def _failing_writes(monkeypatch, mode: str):
    """Disk full: the next journal write lands part of its bytes (or fsync fails)."""
    import os as real_os

    import ivr.journal as journal_module

    state = {"armed": True}
    real_write, real_fsync = real_os.write, real_os.fsync

    def short_write(fd, data):
        if state["armed"] and mode == "short":
            state["armed"] = False
            return real_write(fd, data[: len(data) // 2])
        return real_write(fd, data)

    def failing_fsync(fd):
        if state["armed"] and mode == "fsync":
            state["armed"] = False
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "write", short_write)
    monkeypatch.setattr(journal_module.os, "fsync", failing_fsync)
    return state



@pytest.mark.parametrize("mode", ["short", "fsync"])
def test_disk_full_append_fails_and_the_next_confirmed_append_is_replayed(settings, tmp_path, monkeypatch, mode):
    journal = Journal(tmp_path / "journal")
    events = _events(3)
    journal.append(events[0])
    _failing_writes(monkeypatch, mode)
    with pytest.raises(OSError):
        journal.append(events[1])  # that caller hears no confirmation
    journal.append(events[2])  # space freed: journalled, fsynced, confirmed
    assert _uids(journal) == ["call-0", "call-2"]  # the failed bytes were taken back
    factory = factory_for(settings)
    report = journal.replay(factory, _apply)
    assert (report.applied, report.torn) == (2, 0)
    with factory() as s:
        assert list(s.scalars(select(AuditEntry.entity_id).order_by(AuditEntry.id))) == ["call-0", "call-2"]


def test_a_failed_undo_still_leaves_the_next_event_readable(settings, tmp_path, monkeypatch):
    """Short write and the truncate fails too: the newline prefix still resynchronises."""
    import ivr.journal as journal_module

    journal = Journal(tmp_path / "journal")
    events = _events(3)
    journal.append(events[0])
    _failing_writes(monkeypatch, "short")

    def no_truncate(fd, length):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(journal_module.os, "ftruncate", no_truncate)
    with pytest.raises(OSError):
        journal.append(events[1])
    journal.append(events[2])
    assert _uids(journal) == ["call-0", None, "call-2"]
    report = journal.replay(factory_for(settings), _apply)
    assert (report.applied, report.torn) == (2, 1)


def test_a_call_record_that_committed_late_beside_its_journalled_twin_is_written_once(settings, tmp_path):
    """agi_effect_timeout: the insert outlived the call's deadline, was journalled, and then committed anyway."""
    from ivr.callstore import CallStore
    from ivr.db import make_engine
    from ivr.dialog import CallInfo, RecordCall
    from ivr.journal import event_for
    from ivr.models import CallRecord
    from ivr.pins import PinHasher, load_or_create_key

    hasher = PinHasher(load_or_create_key(settings.secret_path))
    engine = make_engine(settings.db_url)
    try:
        store = CallStore(engine, hasher)
        record = RecordCall(CallInfo("late.1", "checkin", T0, None), "hangup", "pin", T0)
        other = RecordCall(CallInfo("late.2", "checkin", T0, None), "hangup", "pin", T0)
        store.run(record)  # the late commit
        journal = Journal(tmp_path / "journal")
        journal.append(event_for(record, hasher))
        journal.append(event_for(other, hasher))
        factory = factory_for(settings)
        report = journal.replay(factory, store.apply_journal_event)
        assert report.outcomes == {"duplicate": 1, "hangup": 1}
        with factory() as s:
            uids = sorted(s.scalars(select(CallRecord.uniqueid)))
        assert uids == ["late.1", "late.2"]
    finally:
        engine.dispose()
