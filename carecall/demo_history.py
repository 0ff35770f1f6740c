"""``carecall demo --history 8w``: past weeks of rung calls, so finance can issue a real period at once.

The demo's residents, workers and packages, plus a funders list, are imported as CSV;
then every day of the past weeks gets the demo rota as visits, and each visit's workers
**ring in and out through the real FastAGI path**: the same server the site runs
(``agi.fastagi``), on a loopback port, answered by the Asterisk stand-in
(``agi.simulator``), with the server's clock set to each call's moment. So the
attendances, call records, manual-entry flags and timings are exactly what real calls
would leave; billing and pay read them like any other.

A few things happen as they do in life (seeded, so a run is repeatable): arrivals a few
minutes either side of the plan, a forgotten departure call now and then (an exception
on the invoice), R004's visits from a withheld line (the phone code is keyed in).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import re
from typing import Any

from carecall.config import Settings

FUNDERS = (
    "name,invoice_address,email,po_required,private,payment_days,brokerage_email\n"
    'Lewisham,"Adult Social Care - Accounts Payable; London Borough of Lewisham; Laurence House, 1 Catford Road; '
    'London SE6 4RU",accounts.payable@lewisham.example,yes,no,28,brokerage@lewisham.example\n'
    "Private,,,no,yes,14,\n")

# (resident, local start, minutes, workers): every day of the history. R001's landline is the one
# ``carecall simulate-call`` rings in the README; R004 has none (withheld: phone code 104).
ROTA = [
    ("R001", "08:30", 45, ("1001",)),
    ("R002", "08:00", 45, ("1002",)),
    ("R005", "07:30", 60, ("1002", "1004")),
    ("R003", "09:00", 60, ("1003",)),
    ("R004", "10:30", 30, ("1004",)),
    ("R001", "12:30", 30, ("1001",)),
    ("R002", "13:00", 30, ("1002",)),
    ("R005", "12:00", 30, ("1004",)),
    ("R002", "18:30", 30, ("1003",)),
    ("R005", "19:00", 45, ("1003", "1004")),
]
LINES = {"R001": "02086989911", "R002": "02086989922", "R003": "02086989933", "R004": None,
         "R005": "02086989955"}
CODES = {"R004": "104"}
PINS = {"1001": "1234", "1002": "2345", "1003": "3456", "1004": "4567"}
FORGOT_DEPARTURE = 0.06  # share of these visits whose departure call is never made (an invoice exception)
# Only visits after which the worker next rings from that home more than open_attendance_hours
# (12 h) later: otherwise that next arrival would be taken as the forgotten departure.
FORGETFUL = {("R001", "12:30"), ("R003", "09:00"), ("R004", "10:30"), ("R002", "18:30")}


def parse_weeks(text: str) -> int:
    """``8w`` or ``8`` → 8 weeks (1 to 26)."""
    m = re.fullmatch(r"(\d{1,2})w?", text.strip().lower())
    if not m or not 1 <= int(m.group(1)) <= 26:
        raise ValueError(f"--history wants a number of weeks such as 8w (1 to 26), got {text!r}")
    return int(m.group(1))


@dataclasses.dataclass(frozen=True)
class PlannedCall:
    at: dt.datetime  # UTC
    resident: str
    worker: str


def history_visits_csv(first_day: dt.date, days: int, settings: Settings) -> str:
    rows = ["visit_ref,resident_reference,planned_start,planned_end,workers,time_critical"]
    for n in range(days):
        day = first_day + dt.timedelta(days=n)
        for i, (resident, start, minutes, workers) in enumerate(ROTA, 1):
            t = dt.datetime.combine(day, dt.time.fromisoformat(start))
            rows.append(f"H{day:%Y%m%d}-{i:02d},{resident},{t:%Y-%m-%d %H:%M},"
                        f"{t + dt.timedelta(minutes=minutes):%Y-%m-%d %H:%M},{';'.join(workers)},no")
    return "\n".join(rows) + "\n"


def planned_calls(first_day: dt.date, days: int, settings: Settings, seed: int = 15) -> list[PlannedCall]:
    """Every arrival and departure call of the history, in time order."""
    rnd = random.Random(seed)
    tz = settings.tz
    calls: list[PlannedCall] = []
    for n in range(days):
        day = first_day + dt.timedelta(days=n)
        for resident, start, minutes, workers in ROTA:
            planned = dt.datetime.combine(day, dt.time.fromisoformat(start), tzinfo=tz).astimezone(dt.UTC)
            for worker in workers:
                arrival = planned + dt.timedelta(minutes=rnd.randint(-5, 10), seconds=rnd.randint(0, 59))
                calls.append(PlannedCall(arrival, resident, worker))
                if (resident, start) not in FORGETFUL or rnd.random() >= FORGOT_DEPARTURE:
                    stay = minutes + rnd.randint(-6, 4)
                    calls.append(PlannedCall(arrival + dt.timedelta(minutes=stay, seconds=rnd.randint(0, 59)),
                                             resident, worker))
    calls.sort(key=lambda c: c.at)
    return calls


class _PinnedClock:
    """The FastAGI server's clock: ``seconds()`` is the call's moment; timeouts run on the real reactor."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.now = dt.datetime.now(dt.UTC)

    def seconds(self) -> float:
        return self.now.timestamp()

    def callLater(self, delay: float, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.reactor.callLater(delay, fn, *args, **kwargs)

    def getDelayedCalls(self) -> list[Any]:
        return self.reactor.getDelayedCalls()


@dataclasses.dataclass
class HistoryReport:
    days: int
    calls: int
    outcomes: dict[str, int]


def ring(settings: Settings, calls: list[PlannedCall]) -> dict[str, int]:
    """Ring every call through a FastAGI server on a loopback port, in order; returns counts by outcome."""
    from twisted.internet import reactor
    from twisted.internet.defer import inlineCallbacks

    from agi.fastagi import FastAGIFactory
    from agi.simulator import CallScript, simulate
    from carecall.runtime import Runtime

    outcomes: dict[str, int] = {}
    failure: list[BaseException] = []

    @inlineCallbacks
    def main() -> Any:
        runtime = Runtime.create(settings, reactor)
        runtime.start()
        clock = _PinnedClock(reactor)
        factory = FastAGIFactory.from_runtime(runtime, clock)
        listener = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        port = listener.getHost().port
        try:
            for n, call in enumerate(calls):
                clock.now = call.at
                line = LINES[call.resident]
                digits = ([CODES[call.resident]] if line is None else []) + [call.worker, PINS[call.worker]]
                uid = f"demo.{int(call.at.timestamp())}.{n}"
                script = CallScript(callerid=line, digits=digits, port=port, uniqueid=uid)
                result = yield simulate(reactor, "127.0.0.1", port, script, timeout=30)
                key = "completed" if result.completed else (result.error or "not completed")
                outcomes[key] = outcomes.get(key, 0) + 1
        except BaseException as exc:
            failure.append(exc)
        finally:
            yield listener.stopListening()
            runtime.stop()
            reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(main)  # type: ignore[attr-defined]
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    if failure:
        raise failure[0]
    return outcomes


def load_history(settings: Settings, weeks: int, today: dt.date | None = None) -> HistoryReport:
    """Import the funders and the past weeks' visits, then ring their calls (days before ``today``)."""
    from billing import accounts  # noqa: F401 - registers the funders import kind
    from carecall.data_commands import import_context
    from ivr.db import make_engine, session_factory
    from ivr.importer import import_csv

    today = today or dt.datetime.now(settings.tz).date()
    days = weeks * 7
    first = today - dt.timedelta(days=days)
    engine = make_engine(settings.db_url)
    try:
        factory = session_factory(engine)
        ctx = import_context(settings, "demo")
        for kind, text in (("funders", FUNDERS), ("visits", history_visits_csv(first, days, settings))):
            report = import_csv(factory, kind, text, ctx)
            if not report.ok:
                raise ValueError(f"demo {kind}: " + "; ".join(str(e) for e in report.errors[:5]))
    finally:
        engine.dispose()
    calls = planned_calls(first, days, settings)
    return HistoryReport(days, len(calls), ring(settings, calls))
