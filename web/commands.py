"""``carecall user …``: office accounts and API tokens, from the command line.

The first manager has to come from here (nobody can log in to create them). Passwords
are read from a prompt, or from standard input with ``--password-stdin`` for scripts and
CI, never from the command line where ``ps`` and shell history would keep them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from sqlalchemy import select

from carecall.config import Settings
from ivr.db import make_engine, session_factory, unit_of_work, upgrade
from web.auth import AuthError, add_user, check_password, create_token, revoke_tokens, set_password
from web.models import Role, User


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AuthError("the two passwords differ")
    return first


def _with_db(settings: Settings, work: Any) -> Any:
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        with unit_of_work(session_factory(engine)) as session:
            return work(session)
    finally:
        engine.dispose()


def _set_phone(session: Any, settings: Settings, args: argparse.Namespace) -> str:
    """The on-call alert phone (and, with --pin-stdin, the 4-digit PIN that accepts an alert on the call)."""
    from ivr.phone import PhoneNumberError, mask, normalise
    from ivr.pins import PinHasher, load_or_create_key
    from scheduler.alert_calls import set_phone_pin

    user = session.scalars(select(User).where(User.username == args.name)).first()
    if user is None:
        raise AuthError(f"no user {args.name!r}")
    try:
        user.phone_e164 = normalise(args.number, settings.phone_region)
    except PhoneNumberError as exc:
        raise AuthError(str(exc)) from None
    done = f"alert phone of {args.name} set to {mask(user.phone_e164)}"
    if args.pin_stdin:
        try:
            set_phone_pin(session, user, sys.stdin.readline().strip(),
                          PinHasher(load_or_create_key(settings.secret_path)))
        except ValueError as exc:
            raise AuthError(str(exc)) from None
        done += "; phone PIN changed"
    return done


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.action == "add":
            password = check_password(_read_password(args))
            def add(session: Any) -> None:
                user_id = add_user(session, args.name, args.role, password)
                session.get(User, user_id).keysafe_access = args.keysafe_access

            _with_db(settings, add)
            print(f"user {args.name} added as {args.role}" + (" with key-safe access" if args.keysafe_access else ""))
        elif args.action == "passwd":
            password = check_password(_read_password(args))
            _with_db(settings, lambda s: set_password(s, args.name, password))
            print(f"password of {args.name} changed; their sessions are closed")
        elif args.action == "token":
            value = _with_db(settings, lambda s: create_token(s, args.name, args.label or ""))
            print(value)
            print("keep this token secret: it is shown only once", file=sys.stderr)
        elif args.action == "revoke":
            n = _with_db(settings, lambda s: revoke_tokens(s, args.name))
            print(f"{n} token(s) of {args.name} revoked")
        elif args.action == "phone":
            print(_with_db(settings, lambda s: _set_phone(s, settings, args)))
        elif args.action == "list":
            rows = _with_db(settings, lambda s: s.execute(
                select(User.username, User.role, User.active).order_by(User.username)).all())
            for name, role, active in rows:
                print(f"{name}\t{role}\t{'active' if active else 'disabled'}")
    except AuthError as exc:
        print(f"carecall user: {exc}", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("user", help="office users and API tokens")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="add an office user")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=Role.OFFICE)
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    a.add_argument("--keysafe-access", action="store_true", help="may reveal and set key-safe codes (audited)")
    a = actions.add_parser("passwd", help="set a user's password (closes their sessions)")
    a.add_argument("name")
    a.add_argument("--password-stdin", action="store_true")
    a = actions.add_parser("token", help="create an API token acting as this user (printed once)")
    a.add_argument("name")
    a.add_argument("--label", help="what the token is for, e.g. the rostering system's name")
    a = actions.add_parser("revoke", help="revoke every API token of a user")
    a.add_argument("name")
    a = actions.add_parser("phone", help="set the phone the on-call chain rings (and its PIN)")
    a.add_argument("name")
    a.add_argument("number", help="any UK spelling, e.g. 07911 123456")
    a.add_argument("--pin-stdin", action="store_true", help="read the 4-digit phone PIN from standard input")
    actions.add_parser("list", help="list users")
    p.set_defaults(func=cmd_user)
