"""``carecall run``: the server (FastAGI, office web, alert scheduler) in one process."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

from carecall.config import Settings

GIL_SWITCH_INTERVAL = 0.0005  # seconds
# Young-generation threshold (Python's default is 700): each call makes short-lived
# containers that reference counting frees; collecting them 70× less often spends less
# time scanning the survivors.
GC_THRESHOLDS = (50_000, 50, 100)


def quiet_collector() -> None:
    """Keep the cyclic garbage collector out of the calls' way.

    What exists once the server is built (modules, ORM mappers, compiled statements,
    templates) lives as long as the process. ``gc.freeze()`` moves it out of every
    later scan, so a full collection no longer walks the whole heap while 200 calls
    wait on the reactor. Measured in docs/benchmarks.md.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from twisted.internet import reactor
    from twisted.logger import Logger, LogLevel, globalLogBeginner

    from carecall.logobserver import BufferedTextLogObserver
    from carecall.runtime import Runtime
    from carecall.schema_upgrade import SchemaUpgrader, upgrade_at_start
    from carecall.service import make_service

    # The reactor thread and the database thread share the GIL. With Python's default 5 ms
    # switch interval a database batch's Python work can hold every call in flight off the
    # reactor for up to 5 ms; 0.5 ms bounds that wait (docs/benchmarks.md: +8 % dialogs/s).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    level = LogLevel.levelWithName(args.log_level)
    writer = BufferedTextLogObserver(sys.stdout, reactor, min_level=level)
    globalLogBeginner.beginLoggingTo([writer])
    reactor.addSystemEventTrigger("after", "shutdown", writer.flush)
    runtime = Runtime.create(settings, reactor)
    # The database may be down (a restart during an outage): start anyway, on the journal.
    if upgrade_at_start(runtime) and args.demo:
        from carecall.data_commands import cmd_demo

        if cmd_demo(args, settings) != 0:
            return 1
    service = make_service(runtime)
    SchemaUpgrader(runtime).setServiceParent(service)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # Once the reactor runs, SIGTERM is a graceful stop (its handler is installed by then):
    # what a supervisor (systemd, a test) may wait for before it signals.
    reactor.callWhenRunning(lambda: Logger(namespace="carecall").info(
        "carecall running: pid {pid}, FastAGI on {host}:{port}; SIGTERM stops gracefully "
        "(calls in progress get {drain:g} s)", pid=os.getpid(), host=settings.agi_host, port=settings.agi_port,
        drain=settings.agi_drain_seconds))
    quiet_collector()
    reactor.run()  # type: ignore[attr-defined]
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Demo data (``ivr.demo``); with ``--history 8w`` also past weeks of calls rung through FastAGI."""
    from carecall.data_commands import cmd_demo as load_today

    status = load_today(args, settings)
    if status or not args.history:
        return status
    from carecall.demo_history import load_history, parse_weeks

    try:
        weeks = parse_weeks(args.history)
    except ValueError as exc:
        print(f"carecall demo: {exc}", file=sys.stderr)
        return 2
    report = load_history(settings, weeks)
    done = report.outcomes.get("completed", 0)
    print(f"history: {report.days} days, {report.calls} calls rung through FastAGI ({done} completed)")
    return 0 if done == report.calls else 1


def register(sub: Any) -> None:
    d = sub.add_parser("demo", help="load demo residents, workers, packages and today's visits")
    d.add_argument("--history", metavar="WEEKS", help="also ring the demo rota's calls for the past weeks (8w)")
    d.set_defaults(func=cmd_demo)
    p = sub.add_parser("run", help="run the server: FastAGI, office web and alerts")
    p.add_argument("--demo", action="store_true", help="load demo data (today's visits) before starting")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"],
                   help="least severe log level shown (debug shows every call step)")
    p.set_defaults(func=cmd_run)
