"""``carecall import``, ``carecall migrate`` and ``carecall demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from carecall.config import Settings
from ivr.db import make_engine, session_factory, upgrade
from ivr.demo import load_demo
from ivr.importer import KINDS, ImportContext, import_csv
from ivr.pins import PinHasher, load_or_create_key
from ivr.sensitive import site_sealer


def import_context(settings: Settings, actor: str = "import") -> ImportContext:
    return ImportContext(settings.tz, settings.phone_region, PinHasher(load_or_create_key(settings.secret_path)), actor,
                         sealer=site_sealer(settings.secret_path))


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings.db_url)
    print("database schema is up to date")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else path.read_bytes()
    except OSError as exc:
        print(f"carecall import: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        report = import_csv(session_factory(engine), args.kind, data, import_context(settings))
    finally:
        engine.dispose()
    for error in report.errors:
        print(f"{args.file}: {error}", file=sys.stderr)
    print(report.summary(), file=sys.stderr if report.errors else sys.stdout)
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        reports = load_demo(session_factory(engine), import_context(settings, "demo"))
    finally:
        engine.dispose()
    for report in reports:
        print(report.summary())
        for error in report.errors:
            print(f"  {error}", file=sys.stderr)
    return 0 if all(r.ok for r in reports) else 1


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("import", help="import residents, workers, packages or visits from CSV")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("file", help="CSV file (UTF-8, header row), or - for standard input")
    p.set_defaults(func=cmd_import)
    # ``carecall demo`` is registered by carecall.commands (with --history it also rings past
    # weeks' calls through the FastAGI server: carecall/demo_history.py).
