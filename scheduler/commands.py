"""``carecall alerts …``: run a pass by hand, list, acknowledge, resolve, deliver.

``check --now`` takes a local time (Europe/London by default) so an operator can ask
"what would have been raised at 10:30?" against a copy of the database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from sqlalchemy import select

from carecall.config import Settings
from ivr.clock import LocalTimeError, format_local, parse_local
from ivr.db import make_engine, session_factory, unit_of_work, upgrade
from ivr.models import utcnow
from scheduler import actions, delivery
from scheduler.models import Alert, AlertStatus
from scheduler.rules import Rules
from scheduler.store import run_pass


def _now(args: argparse.Namespace, settings: Settings) -> Any:
    if not getattr(args, "now", None):
        return utcnow()
    return parse_local(args.now, settings.tz)


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    try:
        now = _now(args, settings)
    except LocalTimeError as exc:
        print(f"carecall alerts check: --now: {exc}", file=sys.stderr)
        return 2
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        factory = session_factory(engine)
        rules = Rules.from_section(settings.section("alerts"), settings.timezone)
        with unit_of_work(factory) as s:
            result = run_pass(s, now, rules)
        for r in result.raised:
            due = format_local(dt.datetime.fromisoformat(r["due_at"]), settings.tz)
            print(f"raised  #{r['id']} {r['kind']:<15} due {due}  {r['detail']}")
        for r in result.settled:
            print(f"settled #{r['id']} {r['kind']:<15} {r['note']}")
        print(f"{len(result.raised)} raised, {len(result.settled)} settled at {format_local(now, settings.tz)}"
              f" ({result.visits_read} visits read)")
        if args.deliver:
            for job, error in delivery.deliver_once(factory, now, delivery.DeliveryConfig.from_settings(settings)):
                print(f"{job.channel} to {job.target} for #{job.alert_id}: {error or 'sent'}")
    finally:
        engine.dispose()
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as s:
            q = select(Alert).order_by(Alert.severity.desc(), Alert.raised_at)
            if not args.all:
                q = q.where(Alert.status != AlertStatus.RESOLVED)
            for a in s.scalars(q.limit(args.limit)):
                due = format_local(a.due_at, settings.tz)
                print(f"#{a.id:<6} {a.status:<12} {a.kind:<15} sev {a.severity} due {due}  {a.detail}")
    finally:
        engine.dispose()
    return 0


def _act(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.db_url)
    try:
        with unit_of_work(session_factory(engine)) as s:
            if args.action == "ack":
                actions.acknowledge(s, args.id, args.by, args.note, utcnow())
            else:
                actions.resolve(s, args.id, args.by, args.note, utcnow())
    except actions.AlertActionError as exc:
        print(f"carecall alerts {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"alert {args.id} {'acknowledged' if args.action == 'ack' else 'resolved'}")
    return 0


def cmd_deliver(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.db_url)
    try:
        cfg = delivery.DeliveryConfig.from_settings(settings)
        results = delivery.deliver_once(session_factory(engine), utcnow(), cfg)
    finally:
        engine.dispose()
    for job, error in results:
        print(f"{job.channel} to {job.target} for #{job.alert_id} (attempt {job.attempt}): {error or 'sent'}")
    return 1 if any(error for _, error in results) else 0


def register(sub: Any) -> None:
    p = sub.add_parser("alerts", help="office alerts: run a pass, list, acknowledge, resolve, deliver")
    asub = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    c = asub.add_parser("check", help="run one rules pass now (or at --now) and print what was raised")
    c.add_argument("--now", help="local time to evaluate at, e.g. '2026-03-10 10:30'")
    c.add_argument("--deliver", action="store_true", help="also send due e-mails/calls")
    c.set_defaults(func=cmd_check)
    ls = asub.add_parser("list", help="unresolved alerts, most severe first")
    ls.add_argument("--all", action="store_true", help="include resolved alerts")
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=cmd_list)
    for name, help_text in (("ack", "acknowledge an alert"), ("resolve", "resolve an alert with a note")):
        a = asub.add_parser(name, help=help_text)
        a.add_argument("id", type=int)
        a.add_argument("--by", required=True, help="who (office user name)")
        a.add_argument("--note", default="", help="what was done (required to resolve)")
        a.set_defaults(func=_act, action=name)
    d = asub.add_parser("deliver", help="send due alert e-mails and calls once (retries included)")
    d.set_defaults(func=cmd_deliver)
