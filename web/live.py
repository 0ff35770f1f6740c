"""Live pages (the board, the alerts list): server-sent events pushed when the database says something changed.

Two triggers, one path. ``runtime.events`` (a call recorded by this process) asks for an
immediate check; a poll every ``interval`` seconds catches what other servers on the
same database wrote. Either way one cheap "change token" query decides whether the
page data is fetched again, once per key shown (the board's (day, team), the alerts
list's status), not once per browser. Each
stream is closed after ``max_age`` seconds and the browser's EventSource reconnects,
which re-checks its session: an expired or logged-out session stops getting data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web import server

from carecall.runtime import Runtime
from ivr.db import unit_of_work
from web.board import board_rows, change_token

log = Logger(namespace="carecall.web.live")


@dataclasses.dataclass(eq=False)
class Stream:
    request: server.Request
    key: Any
    opened: float
    last_push: float = 0.0

    def send(self, event: str, data: str) -> None:
        self.request.write(sse_event(event, data))


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sse_event(event: str, data: str) -> bytes:
    """One server-sent event whose data no character can split or end early.

    Browsers end an event-stream line at CR, LF or CRLF (WHATWG HTML §9.2.6), so the data is
    cut at every one of the three and each piece sent as its own ``data:`` line; the browser
    joins them with LF. A CR in a name (from an old import) arrives as a line break inside
    the HTML, never as a new ``event:`` field (issue 14 item 8). The event name is ours.
    """
    if not event or _LINE_BREAK.search(event) or ":" in event:
        raise ValueError(f"bad event name {event!r}")
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"event: {event}\n{lines}\n".encode()


class LiveHub:
    """Streams grouped by key; ``token(session)`` says whether anything changed, ``fetch(session, key, now)``
    returns what to render and ``render(rows, key)`` the HTML fragment sent as event ``event``."""

    def __init__(self, runtime: Runtime, render: Callable[[Any, Any], str], *,
                 token: Callable[[Any], Any], fetch: Callable[[Any, Any, dt.datetime], Any], event: str,
                 now: Callable[[], dt.datetime], clock: Any = None, interval: float = 2.0,
                 refresh: float = 30.0, max_age: float = 600.0, topics: tuple[str, ...] | None = None,
                 status: Callable[[], str] | None = None, status_event: str = "journal") -> None:
        self.runtime = runtime
        self.render = render
        self.token = token
        self.fetch = fetch
        self.event = event
        self.topics = topics  # runtime.events kinds that trigger a check (None: any)
        self.now = now
        self.clock = clock or runtime.reactor
        self.interval = interval
        self.refresh = refresh
        self.max_age = max_age
        # A page-wide notice that must not depend on the database (the journal banner):
        # a blocking function returning HTML, run on the journal thread before any query.
        self.status = status
        self.status_event = status_event
        self._status: str | None = None
        self.streams: set[Stream] = set()
        self._token: Any = None
        self._busy = False
        self._again = False
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._unsubscribe: Callable[[], None] | None = None
        self.pushes = 0

    def start(self) -> None:
        self._unsubscribe = self.runtime.events.subscribe(self._on_event)

    def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self._loop.running:
            self._loop.stop()
        for s in list(self.streams):
            s.request.finish()
        self.streams.clear()

    def open(self, request: server.Request, key: Any) -> None:
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.write(b"retry: 2000\n\n")
        stream = Stream(request, key, self.clock.seconds())
        self.streams.add(stream)
        request.notifyFinish().addBoth(lambda _: self.streams.discard(stream))
        if not self._loop.running:
            self._loop.start(self.interval, now=False)
        # Send the current rows at once: the page may be older than the stream.
        self._kick(force=[stream])

    def _on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if self.streams and (self.topics is None or kind in self.topics):
            self._kick()

    def _tick(self) -> None:
        if not self.streams:
            self._loop.stop()
            return
        now = self.clock.seconds()
        for s in list(self.streams):
            if now - s.opened >= self.max_age:
                self.streams.discard(s)
                s.request.finish()
        self._kick()

    def _kick(self, force: list[Stream] | None = None) -> None:
        if self._busy:
            self._again = True
            return
        self._busy = True
        d = ensureDeferred(self._check(force or []))
        d.addErrback(lambda f: log.failure("live update failed", f))
        d.addBoth(self._done)

    def _done(self, _: Any) -> None:
        self._busy = False
        if self._again:
            self._again = False
            self._kick()

    async def _check(self, force: list[Stream]) -> None:
        factory = self.runtime.factory
        if self.status is not None:
            # First, and off the database pool: during an outage the queries below fail or
            # hang, and this notice is how the office learns the server runs on its journal.
            notice = await self.runtime.run_journal(self.status)
            targets = list(self.streams) if notice != self._status else [s for s in force if s in self.streams]
            self._status = notice
            for s in targets:
                s.send(self.status_event, notice)

        def token() -> Any:
            with unit_of_work(factory) as session:
                return self.token(session)

        current = await self.runtime.run_db(token)
        now_s = self.clock.seconds()
        if current != self._token:
            self._token = current
            due = list(self.streams)
        else:
            due = [s for s in self.streams if s in force or now_s - s.last_push >= self.refresh]
        groups: dict[Any, list[Stream]] = {}
        for s in due:
            groups.setdefault(s.key, []).append(s)
        now = self.now()
        for key, streams in groups.items():
            def rows(key: Any = key) -> Any:
                with unit_of_work(factory) as session:
                    return self.fetch(session, key, now)

            html = self.render(await self.runtime.run_db(rows), key)
            for s in streams:
                if s in self.streams:
                    s.send(self.event, html)
                    s.last_push = now_s
                    self.pushes += 1


def board_hub(runtime: Runtime, render_rows: Callable[[list[dict[str, Any]]], str], *,
              now: Callable[[], dt.datetime], clock: Any = None, interval: float = 2.0,
              journal_notice: Callable[[], str] | None = None) -> LiveHub:
    """The board: keyed by (day, team); any call recorded in this process triggers a check.

    ``journal_notice`` renders the banner that says this server is running on its journal."""
    settings = runtime.settings
    return LiveHub(runtime, lambda rows, key: render_rows(rows), token=change_token,
                   fetch=lambda session, key, now: board_rows(session, key[0], key[1], now, settings),
                   event="board", now=now, clock=clock, interval=interval, status=journal_notice)
