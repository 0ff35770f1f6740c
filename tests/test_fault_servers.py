"""Two ``carecall run`` processes against one PostgreSQL: every check-in recorded once.

Asterisk spreads calls over servers (several ``agi://`` targets, or ``hagi://`` SRV
records) and may retry a call on the other server, so the same uniqueid can reach both
at once. The database decides (unique arrival/departure uniqueids, one attendance per
worker per visit), not the process.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from agi.simulator import CallScript, simulate_blocking
from ivr.models import Attendance, CallRecord
from tests.callhelpers import attendances, calls
from tests.faults import OwnCluster, default_visits, running, settings_for, world

LINES = {"1001": ("02086989911", "1234"), "1002": ("02086989922", "2345"), "1003": ("02086989933", "3456")}


@pytest.fixture(scope="module")
def cluster():
    c = OwnCluster()
    yield c
    c.destroy()


def _parallel(jobs) -> list:
    results: list = [None] * len(jobs)
    errors: list = []

    def run(i, job):
        try:
            results[i] = job()
        except Exception as exc:  # reported below, the test fails
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_two_servers_record_every_check_in_once(cluster, tmp_path):
    url = cluster.new_database()
    settings = settings_for(url, tmp_path)
    factory = world(settings, *default_visits())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running(tmp_path, url, "a", data_dir=tmp_path / "a") as a, running(tmp_path, url, "b",
                                                                               data_dir=tmp_path / "b") as b:
        ports = [a.agi_port, b.agi_port]

        # 1) The same call (same uniqueid) at both servers at once, five times over.
        def same(uid: str, port: int):
            return lambda: simulate_blocking("127.0.0.1", port, CallScript(
                callerid=None, digits=["104", "1004", "4567"], uniqueid=uid), timeout=30)

        twins = _parallel([same(f"twin.{i}", p) for i in range(5) for p in ports])
        assert all(r.completed for r in twins), [r.error for r in twins]
        # Decided by the database, live: nobody was sent to the journal by the race.
        assert all('STREAM FILE auth-thankyou ""' not in [c for c, _ in r.transcript] for r in twins)

        # 2) Three workers, six calls each (arrival, departure, …), alternating servers, all at once.
        def stream(number: str):
            line, pin = LINES[number]

            def go():
                return [simulate_blocking("127.0.0.1", ports[k % 2], CallScript(
                    callerid=line, digits=[number, pin], uniqueid=f"w{number}.{k}"), timeout=30) for k in range(6)]
            return go

        streams = _parallel([stream(n) for n in LINES])
        assert all(r.completed for s in streams for r in s)

    # One attendance per twin uniqueid; the other server's attempt is a duplicate record.
    atts = attendances(factory)
    twin_atts = [x for x in atts if x.arrival_uniqueid and x.arrival_uniqueid.startswith("twin.")]
    # Each uniqueid on exactly one attendance field (never an arrival and the departure of the same call).
    uids = Counter(u for x in atts for u in (x.arrival_uniqueid, x.departure_uniqueid) if u)
    assert all(n == 1 for n in uids.values()), uids
    assert {f"twin.{i}" for i in range(5)} <= set(uids)
    assert twin_atts
    # Each worker's six calls: three closed attendances, arrivals and departures in call order.
    for number in LINES:
        mine = [x for x in atts if x.arrival_uniqueid and x.arrival_uniqueid.startswith(f"w{number}.")]
        assert [(x.arrival_uniqueid, x.departure_uniqueid) for x in mine] == [
            (f"w{number}.0", f"w{number}.1"), (f"w{number}.2", f"w{number}.3"), (f"w{number}.4", f"w{number}.5")]
    recs = calls(factory)
    by_uid = Counter(r.uniqueid for r in recs)
    assert all(by_uid[f"w{n}.{k}"] == 1 for n in LINES for k in range(6))
    assert all(by_uid[f"twin.{i}"] == 2 for i in range(5))  # one record per server that took the call
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Attendance)) == len(atts)
        outcomes = Counter(s.scalars(select(CallRecord.outcome).where(CallRecord.uniqueid.like("twin.%"))))
    assert outcomes["duplicate"] == 5 and outcomes["arrival"] + outcomes["departure"] == 5
