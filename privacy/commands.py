"""``carecall privacy export|erase|retention|views``: answering data-rights requests.

Every command names its person by resident reference or worker number (never by name,
which would land in shell history). ``erase`` changes data and so needs ``--as`` a web
user who is an active manager; it prints its plan and asks before doing anything
(``--yes`` skips the question for scripts). Output names tables and counts, never the
person's details.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from carecall.config import Settings
from ivr.db import make_engine, session_factory, unit_of_work, upgrade
from ivr.models import utcnow
from ivr.sensitive import site_sealer
from privacy.models import Channel
from privacy.people import NoSuchPerson, find_id
from privacy.registry import RESIDENT, WORKER


def _factory(settings: Settings) -> Any:
    upgrade(settings.db_url)
    return session_factory(make_engine(settings.db_url, hide_parameters=True))


def _subject(args: argparse.Namespace) -> tuple[str, str]:
    return (RESIDENT, args.resident) if args.resident else (WORKER, args.worker)


def _check_manager(session: Any, username: str | None) -> str | None:
    from privacy.erase import is_manager

    if not username:
        return "--as USER is required: a web user with the manager role"
    if not is_manager(session, username):
        return f"{username} is not an active manager"
    return None


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from privacy.export import build_export, write_files

    kind, key = _subject(args)
    factory = _factory(settings)
    sealer = site_sealer(settings.secret_path)
    with unit_of_work(factory) as session:
        if args.as_user and (problem := _check_manager(session, args.as_user)):
            print(f"carecall: {problem}", file=sys.stderr)
            return 1
        try:
            sid = find_id(session, kind, key)
        except NoSuchPerson as exc:
            print(f"carecall: {exc}", file=sys.stderr)
            return 1
        export = build_export(session, kind, sid, actor=args.as_user or "cli", role="manager" if args.as_user else "",
                              channel=Channel.CLI, sealer=sealer, now=utcnow())
    json_path, pdf_path = write_files(export, Path(args.out), settings.tz)
    rows = sum(len(s["rows"]) for s in export.sections)
    print(f"wrote {json_path} and {pdf_path}: {rows} records from {len(export.sections)} kinds")
    return 0


def cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    from privacy.erase import erase, flush_journal, leftovers, plan

    kind, key = _subject(args)
    factory = _factory(settings)
    sealer = site_sealer(settings.secret_path)
    with unit_of_work(factory) as session:
        if problem := _check_manager(session, args.as_user):
            print(f"carecall: {problem}", file=sys.stderr)
            return 1
        try:
            sid = find_id(session, kind, key)
        except NoSuchPerson as exc:
            print(f"carecall: {exc}", file=sys.stderr)
            return 1
        the_plan = plan(session, kind, sid, sealer)
        print(f"Erasing {kind} {key} will:")
        for line in the_plan.lines():
            print("  " + line)
        if args.dry_run:
            print("dry run: nothing changed")
            session.rollback()
            return 0
        if not args.yes:
            answer = input(f"Type {key} to go ahead: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
            if answer.strip() != key:
                print("nothing changed")
                session.rollback()
                return 1
        erase(session, the_plan, actor=args.as_user)
        left = leftovers(session, the_plan.person)
    flush_journal(factory.kw["bind"])
    print(f"done: {kind} {key} is now {the_plan.person.key_pseudonym}")
    for table, column, n in left:
        print(f"  still found in {table}.{column}: {n} row(s); check by hand", file=sys.stderr)
    return 0


def cmd_retention(args: argparse.Namespace, settings: Settings) -> int:
    from privacy.retention import RetentionPolicy, report_lines, run

    policy: RetentionPolicy = settings.table("retention")
    factory = _factory(settings)
    with unit_of_work(factory) as session:
        report = run(session, policy, utcnow(), dry_run=args.dry_run)
        if args.dry_run:
            session.rollback()
    for line in report_lines(report, dry_run=args.dry_run, tz=settings.tz):
        print(line)
    return 0


def cmd_views(args: argparse.Namespace, settings: Settings) -> int:
    from ivr.clock import format_local
    from privacy.viewlog import views_of

    kind, key = _subject(args)
    factory = _factory(settings)
    with unit_of_work(factory) as session:
        try:
            sid = find_id(session, kind, key)
        except NoSuchPerson as exc:
            print(f"carecall: {exc}", file=sys.stderr)
            return 1
        rows = views_of(session, kind, sid)
    for v in rows:
        print(f"{format_local(v['at'], settings.tz)}  {v['actor']:<20} {v['role']:<12} {v['channel']:<4} {v['what']}")
    return 0


def _person_args(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--resident", metavar="REF", help="resident reference")
    who.add_argument("--worker", metavar="NUM", help="worker number")


def register(sub: Any) -> None:
    p = sub.add_parser("privacy", help="data rights: subject-access export, erasure, retention, view log")
    psub = p.add_subparsers(dest="privacy_command", metavar="ACTION", required=True)

    e = psub.add_parser("export", help="everything held about one person: JSON + PDF")
    _person_args(e)
    e.add_argument("--out", default=".", metavar="DIR", help="directory for the two files (default .)")
    e.add_argument("--as", dest="as_user", metavar="USER", help="manager answering the request (recorded)")
    e.set_defaults(func=cmd_export)

    r = psub.add_parser("erase", help="erase one person: delete what may go, pseudonymise what must stay")
    _person_args(r)
    r.add_argument("--as", dest="as_user", metavar="USER", help="web user with the manager role (required)")
    r.add_argument("--dry-run", action="store_true", help="show the plan only")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.set_defaults(func=cmd_erase)

    t = psub.add_parser("retention", help="delete what the retention policy says has expired")
    t.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    t.set_defaults(func=cmd_retention)

    v = psub.add_parser("views", help="who viewed this person's details, newest first")
    _person_args(v)
    v.set_defaults(func=cmd_views)
