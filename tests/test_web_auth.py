"""Sessions expire (idle and absolute), tokens and cookies are stored hashed, passwords with argon2."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from ivr.db import unit_of_work
from tests.helpers import factory_for
from web import auth
from web.auth import SessionPolicy
from web.models import ApiToken, User, WebSession

T0 = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)
POLICY = SessionPolicy(idle=dt.timedelta(minutes=60), absolute=dt.timedelta(hours=12))


def test_session_slides_while_used_and_dies_when_idle_or_too_old(settings):
    factory = factory_for(settings)
    with unit_of_work(factory) as s:
        auth.add_user(s, "cora", "coordinator", "long enough pw")
    with unit_of_work(factory) as s:
        user = auth.authenticate(s, "cora", "long enough pw")
        assert user is not None and user.password_hash.startswith("$argon2id$")
        cookie, _ = auth.open_session(s, user, T0, POLICY)
    with unit_of_work(factory) as s:
        assert s.scalar(select(WebSession.id)) == auth.digest(cookie)  # only the hash is stored
    # Used every 50 minutes: alive for 11 h 40 min, then the 12 h absolute limit ends it.
    for minutes in range(50, 12 * 60, 50):
        with unit_of_work(factory) as s:
            assert auth.load_session(s, cookie, T0 + dt.timedelta(minutes=minutes), POLICY) is not None, minutes
    with unit_of_work(factory) as s:
        assert auth.load_session(s, cookie, T0 + dt.timedelta(hours=12), POLICY) is None
    with unit_of_work(factory) as s:
        user = auth.authenticate(s, "cora", "long enough pw")
        cookie2, _ = auth.open_session(s, user, T0, POLICY)
    with unit_of_work(factory) as s:  # idle for 60 minutes: gone
        assert auth.load_session(s, cookie2, T0 + dt.timedelta(minutes=60), POLICY) is None


def test_wrong_password_unknown_user_and_disabled_user_cannot_log_in(settings):
    factory = factory_for(settings)
    with unit_of_work(factory) as s:
        auth.add_user(s, "fin", "finance", "long enough pw")
    with unit_of_work(factory) as s:
        assert auth.authenticate(s, "fin", "wrong password") is None
        assert auth.authenticate(s, "nobody", "long enough pw") is None
        s.scalar(select(User)).active = False
    with unit_of_work(factory) as s:
        assert auth.authenticate(s, "fin", "long enough pw") is None


def test_api_token_is_stored_hashed_and_revocable(settings):
    factory = factory_for(settings)
    with unit_of_work(factory) as s:
        auth.add_user(s, "roster", "finance", "long enough pw")
        value = auth.create_token(s, "roster", "rota system")
    with unit_of_work(factory) as s:
        assert s.scalar(select(ApiToken.token_hash)) == auth.digest(value) != value
        p = auth.load_token(s, value, T0)
        assert p is not None and (p.username, p.role) == ("roster", "finance")
        assert auth.revoke_tokens(s, "roster") == 1
    with unit_of_work(factory) as s:
        assert auth.load_token(s, value, T0) is None
