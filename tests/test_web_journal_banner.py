"""The office board says when the server is running on its journal, and stops saying it after the replay."""

from __future__ import annotations

import datetime as dt
import http.client
import time

from sqlalchemy import text

from agi.simulator import CallScript, simulate_blocking
from ivr.db import make_engine
from tests.callhelpers import attendances
from tests.helpers import VISITS_HEADER, factory_for, import_world, on_today, visit_row
from tests.webclient import Client, add_users, running_server

TABLES = ("attendances", "call_records")


def _refuse_writes(url: str) -> None:
    """The database accepts reads but refuses every check-in write (a full disk, a failing volume)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            for table in TABLES:
                for op in ("INSERT", "UPDATE"):
                    conn.execute(text(f"CREATE TRIGGER refuse_{table}_{op} BEFORE {op} ON {table} "
                                      "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'could not extend file'; END $$ LANGUAGE plpgsql"))
            for table in TABLES:
                conn.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT OR UPDATE ON {table} "
                                  "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    engine.dispose()


def _accept_writes(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in TABLES:
            if conn.dialect.name == "sqlite":
                for op in ("INSERT", "UPDATE"):
                    conn.execute(text(f"DROP TRIGGER refuse_{table}_{op}"))
            else:
                conn.execute(text(f"DROP TRIGGER refuse_{table} ON {table}"))
    engine.dispose()


def _next_event(stream: http.client.HTTPResponse, name: str, deadline: float) -> str:
    """The data of the next server-sent event called ``name``."""
    event, data = None, []
    while time.monotonic() < deadline:
        line = stream.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            event, data = line[7:], []
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and event is not None:
            if event == name:
                return "\n".join(data)
            event = None
    raise AssertionError(f"no {name!r} event in time")


def test_board_shows_the_journal_banner_while_check_ins_wait_and_clears_it_after_replay(settings, tmp_path):
    factory = factory_for(settings)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    import_world(settings, factory, f"{VISITS_HEADER}\n"
                 + visit_row("V-J", "R001", on_today(now, -5, settings), 45, "1001", settings=settings) + "\n")
    add_users(settings)
    with running_server(settings, tmp_path, "journal_retry_seconds = 1\n") as url:
        c = Client(url)
        assert c.login("coordinator").status == 303
        assert "Running on its journal" not in c.get("/board").text
        _refuse_writes(settings.db_url)
        call = simulate_blocking("127.0.0.1", url.agi_port,
                                 CallScript(callerid="020 8698 9911", digits=["1001", "1234"], uniqueid="j.1"))
        assert call.completed and call.said_time() is not None  # confirmed: durable in the journal
        assert attendances(factory) == []
        page = c.get("/board").text
        assert "Running on its journal" in page and "1 check-in since" in page

        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("GET", "/board/events", headers={"Cookie": "; ".join(f"{k}={v}" for k, v in c.jar.items())})
        stream = conn.getresponse()
        assert stream.status == 200
        deadline = time.monotonic() + 20
        assert "Running on its journal" in _next_event(stream, "journal", deadline)

        _accept_writes(settings.db_url)  # the server's next replay (every second here) takes the check-in
        assert _next_event(stream, "journal", deadline).strip() == ""
        assert "on site" in _next_event(stream, "board", deadline)
        conn.close()
    [att] = attendances(factory)
    assert att.arrival_uniqueid == "j.1" and int(att.arrival_at.timestamp()) == call.said_time()
