"""Family and council views over a real server: invitations by real e-mail, scope on every route.

One ``carecall run`` per engine. A family user, invited through the office page (the
link arrives at a real SMTP server on loopback), sees one resident; a commissioner
sees one funder. Every route is tried by each of them: office routes answer 403, and
their own routes with another resident's id (or another resident's feedback) answer 404.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from carecall.config import load_settings
from carecall.runtime import Runtime
from ivr.db import unit_of_work
from ivr.models import Attendance, Resident, ResidentContact, Visit, Worker
from outreach.models import Feedback, FeedbackKind, NoticePreference, OutsideScope
from scheduler.store import raise_alert
from tests.conftest import fresh_database
from tests.helpers import VISITS_HEADER, factory_for, import_world, visit_row
from tests.test_alerts_servers import SmtpServer
from tests.webclient import PASSWORD, Client, add_users, running_server
from web.site import build_app

FAMILY_PASSWORD = "my family password"


def _ids(factory: Any) -> dict[str, int]:
    with factory() as s:
        out = {r.reference: r.id for r in s.scalars(select(Resident))}
        out.update({f"c:{c.name}": c.id for c in s.scalars(select(ResidentContact))})
        out.update({v.visit_ref: v.id for v in s.scalars(select(Visit))})
        return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("outreach")
    with fresh_database(request, request.param, tmp) as url, SmtpServer() as smtp:
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "carecall.key"),
                                 data_dir=str(tmp / "var"))
        factory = factory_for(settings)
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        tz = settings.tz
        monday = now.astimezone(tz).date() - dt.timedelta(days=now.astimezone(tz).weekday())
        at = lambda days, hh: dt.datetime.combine(monday + dt.timedelta(days=days), dt.time(hh), tz)  # noqa: E731
        rows = [visit_row("F-MON", "R001", at(0, 9), 45, "1001", settings=settings),
                visit_row("F-SUN", "R001", at(6, 18), 30, "1002", settings=settings),
                visit_row("F-OTHER", "R002", at(0, 9), 30, "1002", settings=settings),
                visit_row("F-PRIV", "R003", now + dt.timedelta(days=1), 60, "1003", settings=settings),
                visit_row("F-LEW", "R004", now + dt.timedelta(days=2), 60, "1001", settings=settings),
                visit_row("F-LATE", "R004", now - dt.timedelta(minutes=40), 60, "1001", settings=settings)]
        import_world(settings, factory, "\n".join([VISITS_HEADER, *rows]) + "\n")
        add_users(settings)
        ids = _ids(factory)
        with unit_of_work(factory) as s:
            s.add(ResidentContact(resident_id=ids["R001"], name="Jane Brown", relation_note="daughter",
                                  email="jane@family.test", notify_missed=True))
            s.add(ResidentContact(resident_id=ids["R002"], name="Sam Green", email="sam@family.test"))
            v = s.get(Visit, ids["F-MON"])
            w = s.scalar(select(Worker).where(Worker.worker_number == "1001"))
            s.add(Attendance(visit_id=v.id, resident_id=v.resident_id, worker_id=w.id, arrival_method="phone",
                             arrival_at=v.planned_start + dt.timedelta(minutes=4), departure_method="phone",
                             departure_at=v.planned_end))
            s.add(Feedback(resident_id=ids["R002"], kind=FeedbackKind.CONCERN, message="about R002", reply=""))
        with unit_of_work(factory) as s:
            raise_alert(s, kind="late", visit_id=ids["F-LATE"], resident_id=ids["R004"], at=now,
                        due_at=now - dt.timedelta(minutes=10))
        ids = _ids(factory)
        with factory() as s:
            ids["other_feedback"] = s.scalar(select(Feedback.id))
        config = (f"[web]\nlogin_ip_free_attempts = 1000\n[alerts]\nenabled = false\nsmtp_port = {smtp.port}\n"
                  f'email_from = "office@care.test"\n'
                  f'[notices]\nprovider_name = "Riverside Care"\noffice_phone = "020 7946 0000"\n'
                  f'[council]\npseudonymise = ["Private"]\n')
        try:
            with running_server(settings, tmp, config) as base:
                yield {"settings": settings, "base": base, "factory": factory, "ids": ids, "smtp": smtp,
                       "monday": monday}
        finally:
            factory.kw["bind"].dispose()


def invite_link(site: dict[str, Any], contact: str, resident: str) -> str:
    """The manager invites a contact from the office page; the link arrives by real e-mail."""
    office = Client(site["base"])
    assert office.login("manager").status == 303
    page = f"/residents/{site['ids'][resident]}/outreach"
    before = len(site["smtp"].messages)
    r = office.post(f"{page}/invite", {"csrf_token": office.csrf(page), "contact_id": str(site["ids"][contact])})
    assert (r.status, r.header("Location")) == (303, f"{page}?done=invited"), r.text
    msg = site["smtp"].messages[before]
    assert msg["Subject"] == "Your invitation to the Riverside Care family page"
    assert "Jane" not in msg["Subject"] and "Brown" not in msg.as_string()
    m = re.search(r"(/family/join\?token=[A-Za-z0-9_-]+)", msg.get_content())
    assert m, msg.get_content()
    return m.group(1)


def join(site: dict[str, Any], link: str, username: str) -> Client:
    fam = Client(site["base"])
    form = fam.get(link)
    assert form.status == 200, form.text
    token = re.search(r'name="token" value="([^"]+)"', form.text).group(1)
    csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
    r = fam.post("/family/join", {"login_csrf": csrf, "token": token, "username": username,
                                  "password": FAMILY_PASSWORD, "password2": FAMILY_PASSWORD})
    assert (r.status, r.header("Location")) == (303, "/family"), r.text
    return fam


@pytest.fixture(scope="module")
def family(site: dict[str, Any]) -> Client:
    return join(site, invite_link(site, "c:Jane Brown", "R001"), "jane.b")


@pytest.fixture(scope="module")
def commissioners(site: dict[str, Any]) -> dict[str, Client]:
    office = Client(site["base"])
    assert office.login("manager").status == 303
    out = {}
    for name, funder in (("lew.council", "Lewisham"), ("priv.council", "Private")):
        r = office.post("/council-users", {"csrf_token": office.csrf("/council-users"), "username": name,
                                           "funder": funder, "password": PASSWORD})
        assert r.status == 303, r.text
        c = Client(site["base"])
        r = c.login(name)
        assert (r.status, r.header("Location")) == (303, "/council")
        out[funder] = c
    return out


def test_an_invitation_works_once_and_the_family_user_sees_only_their_residents_week(site, family):
    ids = site["ids"]
    home = family.get("/family")
    assert (home.status, home.header("Location")) == (303, f"/family/residents/{ids['R001']}")
    week = family.get(f"/family/residents/{ids['R001']}?week={site['monday'].isoformat()}")
    assert week.status == 200
    text = week.text
    assert "Alice" in text  # the resident's first name: whose page this is
    assert "Brown" not in text and "Elm Road" not in text  # nothing more of them
    assert "Happened" in text and "Arrived" in text
    # Worker first names only: "Wendy Walker"-style full names and worker numbers stay in the office.
    with site["factory"]() as s:
        w1, w2 = (s.scalar(select(Worker.name).where(Worker.worker_number == n)) for n in ("1001", "1002"))
    assert w1.split()[0] in text and w1 not in text and "1001" not in text
    assert w2.split()[0] in text  # F-SUN, planned for the same week
    assert "about R002" not in text and "F-OTHER" not in text
    # The same link again: already used.
    again = Client(site["base"]).get("/family/join?token=" + "x" * 43)
    assert again.status == 410 and "expired or was already used" in again.text


def test_an_invitation_link_is_single_use(site):
    link = invite_link(site, "c:Jane Brown", "R001")
    join(site, link, "jane.second")
    second = Client(site["base"]).get(link)
    assert second.status == 410
    with site["factory"]() as s:
        scopes = s.scalars(select(OutsideScope.resident_id)).all()
    assert set(scopes) >= {site["ids"]["R001"]}


def test_feedback_lands_in_the_office_queue_and_the_reply_comes_back(site, family):
    rid = site["ids"]["R001"]
    page = f"/family/residents/{rid}/feedback"
    bad = family.post(page, {"csrf_token": family.csrf(page), "kind": "rant", "message": ""})
    assert bad.status == 400 and "choose compliment, concern or complaint" in bad.text
    r = family.post(page, {"csrf_token": family.csrf(page), "kind": "compliment",
                           "message": "Thank you <b>Wendy</b> for Tuesday"})
    assert (r.status, r.header("Location")) == (303, f"{page}?sent=1")
    office = Client(site["base"])
    office.login("coordinator")
    queue = office.get("/feedback?status=new")
    assert "Thank you &lt;b&gt;Wendy&lt;/b&gt; for Tuesday" in queue.text and "R001" in queue.text
    with site["factory"]() as s:
        fid = s.scalar(select(func.max(Feedback.id)))
    r = office.post(f"/feedback/{fid}", {"csrf_token": office.csrf(f"/feedback/{fid}"), "status": "closed",
                                         "reply": "We passed it on."})
    assert r.status == 303
    mine = family.get(page)
    assert "We passed it on." in mine.text and "Closed" in mine.text
    assert family.get(f"{page}/{fid}").status == 200


def test_office_edits_notice_preferences_and_bad_input_changes_nothing(site):
    rid = site["ids"]["R001"]
    office = Client(site["base"])
    office.login("coordinator")
    page = f"/residents/{rid}/outreach"
    bad = office.post(f"{page}/preferences", {"csrf_token": office.csrf(page), "lateness_consent": "on",
                                              "lateness_minutes": "500", "quiet_start": "25:00", "quiet_end": ""})
    assert bad.status == 400 and "between 1 and 120" in bad.text and "HH:MM" in bad.text
    with site["factory"]() as s:
        assert s.get(NoticePreference, rid) is None
    ok = office.post(f"{page}/preferences", {"csrf_token": office.csrf(page), "lateness_consent": "on",
                                             "lateness_channel": "call_resident", "lateness_minutes": "20",
                                             "quiet_start": "21:30", "quiet_end": "08:00", "survey_consent": "on"})
    assert ok.status == 303
    with site["factory"]() as s:
        p = s.get(NoticePreference, rid)
        assert (p.lateness_consent, p.lateness_minutes, p.quiet_start, p.quiet_end, p.survey_consent,
                p.do_not_call) == (True, 20, 21 * 60 + 30, 8 * 60, True, False)
    finance = Client(site["base"])
    finance.login("finance")
    assert finance.get(page).status == 200
    assert finance.post(f"{page}/preferences", {"csrf_token": finance.csrf(page)}).status == 403


def _concrete(path: str, ids: dict[str, int], own: int | None, other: int, own_feedback: int | None) -> str:
    path = path.replace("/feedback/{fid:int}", f"/feedback/{own_feedback or ids['other_feedback']}")
    path = path.replace("/residents/{id:int}", f"/residents/{own if own is not None else other}")
    return re.sub(r"\{\w+(:int)?\}", "1", path).replace("/static/1", "/static/app.css")


def sweep(site: dict[str, Any], client: Client, role: str, own: int, other: int) -> None:
    """Every route: 403 if the role may not use it; its own routes with another resident's id: 404."""
    ids = site["ids"]
    table = [(r.method, r.path, r.roles) for r in build_app(Runtime.create(site["settings"])).routes]
    assert len(table) >= 40
    # A valid CSRF token, so a POST reaches the handler's scope check rather than stopping at the token.
    csrf = client.csrf(f"/family/residents/{own}" if role == "family" else "/council")
    with unit_of_work(site["factory"]) as s:
        mine_fb = Feedback(resident_id=own, kind=FeedbackKind.CONCERN, message="own", reply="")
        s.add(mine_fb)
        s.flush()
        own_feedback = mine_fb.id
    checked = 0
    for method, path, roles in table:
        if roles is None or path.endswith("/events") or path == "/logout":
            continue
        mine = role in roles
        for target in ((own, other) if mine and "{id:int}" in path else (own,)):
            url = _concrete(path, ids, target, other, own_feedback if target == own else None)
            if path.startswith("/api/"):
                r = client.get(url) if method == "GET" else client.post(url)
                assert r.status == 401, (role, url, r.status)  # API: bearer tokens only, none for outside users
                continue
            r = client.get(url) if method == "GET" else client.post(url, {"csrf_token": csrf, "kind": "concern",
                                                                          "message": "x"})
            checked += 1
            if not mine:
                assert r.status == 403, (role, method, url, r.status)
            elif target == other:
                assert r.status == 404, (role, method, url, r.status)
            elif method == "GET":
                assert r.status in (200, 303), (role, method, url, r.status)
    assert checked >= 40


def test_a_family_user_gets_403_or_404_on_every_route_outside_their_resident(site, family):
    ids = site["ids"]
    sweep(site, family, "family", ids["R001"], ids["R002"])
    # Another resident's feedback under their own resident's path: 404, and nothing leaks.
    r = family.get(f"/family/residents/{ids['R001']}/feedback/{ids['other_feedback']}")
    assert r.status == 404 and "about R002" not in r.text
    page = f"/family/residents/{ids['R002']}/feedback"
    r = family.post(page, {"csrf_token": family.csrf(f"/family/residents/{ids['R001']}/feedback"),
                           "kind": "concern", "message": "sneaky"})
    assert r.status == 404
    with site["factory"]() as s:
        assert s.scalar(select(func.count(Feedback.id)).where(Feedback.message == "sneaky")) == 0


def test_a_commissioner_sees_only_their_funder_read_only_and_pseudonymised_if_configured(site, commissioners):
    ids = site["ids"]
    lew, priv = commissioners["Lewisham"], commissioners["Private"]
    page = lew.get("/council")
    assert page.status == 200
    assert "Dan Black" in page.text  # R004's planned visit and its live late alert
    assert 'id="live"' in page.text and ">late<" in page.text
    assert "Cara White" not in page.text  # the private resident is not Lewisham's
    priv_page = priv.get("/council")
    assert "Cara White" not in priv_page.text and "R003" not in priv_page.text
    assert re.search(r"P-[0-9A-F]{8}", priv_page.text)  # pseudonymised for this funder
    assert priv.get(f"/council/residents/{ids['R003']}").status == 200
    figures = lew.get("/council/figures")
    assert figures.status == 200 and "Missed visits" in figures.text
    sweep(site, lew, "commissioner", ids["R004"], ids["R003"])
    sweep(site, priv, "commissioner", ids["R003"], ids["R001"])


def test_the_visit_page_shows_the_lateness_notice_and_every_attempt(site):
    from outreach.models import LatenessNotice, NoticeEvent

    ids = site["ids"]
    now = dt.datetime.now(dt.UTC)
    with unit_of_work(site["factory"]) as s:
        n = LatenessNotice(visit_id=ids["F-LATE"], resident_id=ids["R004"], due_at=now, channel="call_resident",
                           target="+442086989944", status="unanswered", attempts=2,
                           note="gave up after 2 attempt(s): no answer")
        s.add(n)
        s.flush()
        for event, note in (("planned", "call to the resident's landline planned"), ("attempt", "attempt 1: calling"),
                            ("not answered", "no answer")):
            s.add(NoticeEvent(notice_id=n.id, at=now, event=event, note=note))
    office = Client(site["base"])
    office.login("finance")
    page = office.get(f"/visits/{ids['F-LATE']}")
    assert page.status == 200
    assert 'id="lateness-notice"' in page.text and "Call the resident" in page.text and "unanswered" in page.text
    assert "attempt 1: calling" in page.text and "gave up after 2 attempt(s)" in page.text
    assert "+442086989944" not in page.text  # the number itself is not shown
