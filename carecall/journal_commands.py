"""``carecall journal show|replay``: what this server's journal holds, and putting it into the database.

``show`` lists pending events without secrets (worker number, masked caller, time; the
PIN is only ever in the journal as its keyed hash and is not printed). ``replay`` runs
the same exactly-once replay as the server's periodic retry; it is safe while a server
runs (a file lock lets one replayer at a time, the ``journal_applied`` ledger makes
each event count once).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from carecall.config import Settings


def cmd_journal(args: argparse.Namespace, settings: Settings) -> int:
    from ivr.journal import Journal, directory_for, status
    from ivr.phone import mask

    if args.action == "show":
        info = status(settings)
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        print(f"journal {info['directory']}: {info['pending']} event(s) pending"
              + (f", oldest {info['oldest_at']}" if info["oldest_at"] else "")
              + (f", {info['torn']} torn line(s) set aside" if info["torn"] else ""))
        journal = Journal(directory_for(settings))
        for path in journal.files():
            for event in journal.read(path):
                if event is None:
                    print("  (torn line)")
                    continue
                call = event.data.get("call", {})
                who = event.data.get("worker_number") or event.data.get("worker_number_entered") or "-"
                print(f"  {event.at.isoformat()}  {event.kind:8}  uniqueid={event.uniqueid}  worker={who}  "
                      f"caller={mask(call.get('caller_e164'))}")
        return 0

    from carecall.runtime import Runtime
    from ivr.callstore import CallStore
    from ivr.db import upgrade

    upgrade(settings.db_url)
    runtime = Runtime.create(settings)
    try:
        report = runtime.journal.replay(runtime.factory, CallStore.from_runtime(runtime))
    finally:
        runtime.engine.dispose()
    if report.busy:
        print("journal: another process is replaying it right now; try again shortly")
        return 1
    print(f"journal replay: {report.applied} applied, {report.skipped} already applied, "
          f"{report.torn} torn line(s) set aside, {runtime.journal.pending} still pending")
    for outcome, n in sorted(report.outcomes.items()):
        print(f"  {outcome}: {n}")
    for failure in report.failed:
        print(f"  failed: {failure}")
    return 1 if report.failed else 0


def register(sub: Any) -> None:
    p = sub.add_parser("journal", help="show or replay the check-ins journalled while the database was down")
    p.add_argument("action", choices=["show", "replay"])
    p.add_argument("--json", action="store_true", help="show: the status as JSON (what the office board reads)")
    p.set_defaults(func=cmd_journal)
