"""Who may do what: passwords, database-backed sessions, CSRF tokens and API tokens.

Every function here is blocking database work: call it inside ``runtime.run_db`` with a
session it opens itself, never on the reactor thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from web.models import ApiToken, Role, User, WebSession

# Who may reach a route. Finance reads everything and makes invoices but never changes
# visits; coordinators run the day; managers do all and manage users.
# "Anyone in the office": outside users (family, commissioner) are never in it.
ANYONE = frozenset(Role.OFFICE)
EVERYONE = frozenset(Role.ALL)  # log out, and nothing else
VISIT_EDITORS = frozenset({Role.COORDINATOR, Role.MANAGER})
INVOICING = frozenset({Role.FINANCE, Role.MANAGER})
MANAGERS = frozenset({Role.MANAGER})
# Money: package rates and weekly hours feed invoices, so only finance and managers set them
# (web forms and the packages CSV import); a coordinator may edit a package's other details.
MONEY_EDITORS = frozenset({Role.FINANCE, Role.MANAGER})
# Contract-monitoring figures: managers answer for them; finance reads everything.
REPORT_READERS = frozenset({Role.FINANCE, Role.MANAGER})

# Where each role lands after logging in (outside users never see the board).
LANDING = {Role.FAMILY: "/family", Role.COMMISSIONER: "/council"}


def landing(role: str) -> str:
    return LANDING.get(role, "/board")


USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,39}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 200

_hasher = PasswordHasher()  # argon2id, library defaults (64 MiB, 3 passes)
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AuthError(ValueError):
    """A user name, password or role that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Principal:
    """The logged-in user as plain data, safe to hand to the reactor thread."""

    user_id: int
    username: str
    role: str
    session_id: str | None = None  # SHA-256 of the cookie; None for API tokens
    csrf_token: str = ""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def check_username(name: str) -> str:
    if not USERNAME.match(name):
        raise AuthError("user name must be 2 to 40 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AuthError(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_role(role: str, allowed: tuple[str, ...] = Role.OFFICE) -> str:
    """An office role unless told otherwise: outside users are made only with their scope (outreach)."""
    if role not in allowed:
        raise AuthError(f"role must be one of {', '.join(allowed)}")
    return role


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def add_user(session: Session, username: str, role: str, password: str,
             allowed: tuple[str, ...] = Role.OFFICE) -> int:
    check_username(username)
    check_role(role, allowed)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AuthError(f"user {username} already exists")
    user = User(username=username, role=role, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user.id


def set_password(session: Session, username: str, password: str) -> None:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AuthError(f"no user {username}")
    user.password_hash = hash_password(password)
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this password, or None; constant work whether or not the name exists."""
    user = session.scalar(select(User).where(User.username == username)) if len(username) <= 80 else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password[:MAX_PASSWORD])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


@dataclasses.dataclass(frozen=True)
class SessionPolicy:
    idle: dt.timedelta = dt.timedelta(minutes=60)
    absolute: dt.timedelta = dt.timedelta(hours=12)
    touch_every: dt.timedelta = dt.timedelta(minutes=1)


def open_session(session: Session, user: User, now: dt.datetime, policy: SessionPolicy) -> tuple[str, Principal]:
    """A new session for ``user``: returns the cookie value (shown once, stored hashed)."""
    cookie = secrets.token_urlsafe(32)
    row = WebSession(id=digest(cookie), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                     created_at=now, last_seen_at=now, expires_at=min(now + policy.idle, now + policy.absolute))
    session.add(row)
    user.last_login_at = now
    # Housekeeping: expired sessions of anyone go now, so the table stays small.
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    return cookie, Principal(user.id, user.username, user.role, row.id, row.csrf_token)


def load_session(session: Session, cookie: str, now: dt.datetime, policy: SessionPolicy) -> Principal | None:
    """The principal behind a session cookie, sliding its idle expiry; None if unknown or expired."""
    if not cookie or len(cookie) > 100:
        return None
    row = session.get(WebSession, digest(cookie))
    if row is None or row.expires_at <= now or not row.user.active:
        return None
    if now - row.last_seen_at >= policy.touch_every:
        row.last_seen_at = now
        row.expires_at = min(now + policy.idle, row.created_at + policy.absolute)
    return Principal(row.user_id, row.user.username, row.user.role, row.id, row.csrf_token)


def close_session(session: Session, session_id: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id == session_id))


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())


# --- the login form's CSRF check ------------------------------------------------------
# Before login there is no session to hold a token, so the login form is double-submit:
# a random nonce in a cookie and, in the form, an HMAC of that nonce under a key derived
# from the site's secret file. A pair an attacker makes up (any cookie value with the same
# value in the form) is refused: without the site key they cannot compute the form value.
# The nonce carries its issue time and is refused after LOGIN_CSRF_MAX_AGE.

LOGIN_CSRF_MAX_AGE = dt.timedelta(hours=4)


def login_csrf_key(site_key: bytes) -> bytes:
    return hmac.new(site_key, b"carecall login csrf v1", hashlib.sha256).digest()


def new_login_nonce(now: dt.datetime) -> str:
    """The cookie value: 192 random bits and the issue time (seconds since the epoch)."""
    return f"{secrets.token_urlsafe(24)}.{int(now.timestamp())}"


def login_csrf_token(key: bytes, nonce: str) -> str:
    """What the login form must send back for this cookie."""
    return hmac.new(key, nonce.encode("latin-1", "replace"), hashlib.sha256).hexdigest()


def login_nonce_fresh(nonce: str, now: dt.datetime) -> bool:
    head, _, stamp = nonce.partition(".")
    if not (20 <= len(head) <= 64 and stamp.isdigit() and len(stamp) <= 12):
        return False
    age = now - dt.datetime.fromtimestamp(int(stamp), dt.UTC)
    return dt.timedelta(minutes=-5) <= age <= LOGIN_CSRF_MAX_AGE


def login_csrf_ok(key: bytes, nonce: str, given: str, now: dt.datetime) -> bool:
    return login_nonce_fresh(nonce, now) and csrf_ok(login_csrf_token(key, nonce), given)


TOKEN_PREFIX = "cct_"


def create_token(session: Session, username: str, label: str = "") -> str:
    """A new API token for ``username``; the value is returned once and stored hashed."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AuthError(f"no user {username}")
    if len(label) > 80:
        raise AuthError("label must be at most 80 characters")
    value = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, label=label, token_hash=digest(value)))
    return value


def revoke_tokens(session: Session, username: str) -> int:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AuthError(f"no user {username}")
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(False))).all()
    for t in tokens:
        t.revoked = True
    return len(tokens)


def load_token(session: Session, value: str, now: dt.datetime) -> Principal | None:
    if not value.startswith(TOKEN_PREFIX) or len(value) > 100:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(value)))
    if row is None or row.revoked or not row.user.active:
        return None
    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):
        row.last_used_at = now
    return Principal(row.user_id, row.user.username, row.user.role)
