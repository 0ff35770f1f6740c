"""The ``carecall`` command.

Global options come before the sub-command (``carecall --db URL import visits f.csv``).
Each feature package adds its sub-commands through a ``register(subparsers)`` function
in its ``commands`` module (listed in ``COMMAND_MODULES``, the one place that says which);
a sub-command's handler takes ``(args, settings)`` and
returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from carecall.config import ConfigError, load_settings, validate, validate_tables

COMMAND_MODULES = (
    "carecall.commands",
    "carecall.data_commands",
    "carecall.journal_commands",
    "agi.commands",
    "scheduler.commands",
    "billing.commands",
    "web.commands",
    "reports.commands",
    "privacy.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carecall", description="Electronic call monitoring for home care.")
    parser.add_argument("--db", metavar="URL", help="database URL (default $CARECALL_DB or sqlite:///carecall.db)")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (default ./carecall.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Every table and key checked once, before anything starts: one line per mistake.
    try:
        settings = load_settings(args.config, db_url=args.db)
        problems = validate(settings)
    except ConfigError as exc:
        problems = exc.problems + (validate_tables(exc.raw) if exc.raw is not None else [])
    if problems:
        for problem in problems:
            print(f"carecall: configuration error: {problem}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings) or 0)
    except ConfigError as exc:
        print(f"carecall: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
