"""The office web application assembled: routes from each page module, static files, live hub."""

from __future__ import annotations

import datetime as dt
import importlib
import mimetypes
from collections.abc import Callable
from typing import Any

from twisted.web import server

from carecall.runtime import Runtime
from ivr.models import utcnow
from web.app import HERE, Ctx, HTTPError, Response, WebApp, access_log_line
from web.auth import SessionPolicy
from web.live import board_hub

STATIC = HERE / "static"
# Page modules; each has register(app) and adds its routes (and, for alerts, its live hub).
PAGE_MODULES = ("web.pages", "web.admin", "web.api", "web.invoicing", "web.figures", "web.alerts",
                "web.people", "web.funders_page", "web.oncall", "web.family", "web.council", "web.outreach_office",
                "privacy.web", "web.worker_app")


async def static(ctx: Ctx, name: str) -> Response:
    path = STATIC / name
    if not name or name.startswith(".") or not path.is_file():
        raise HTTPError(404, "Not found")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("javascript"):
        ctype += "; charset=utf-8"
    return Response(body=path.read_bytes(), content_type=ctype, headers={"Cache-Control": "max-age=300"})


def journal_notice(app: WebApp, status: dict[str, Any]) -> str:
    """The board's banner while check-ins wait in this server's journal ("" when none do)."""
    oldest = dt.datetime.fromisoformat(status["oldest_at"]) if status.get("oldest_at") else None
    return app.render_template("_journal_banner.html", journal=status, oldest=oldest)


def build_app(runtime: Runtime, *, now: Callable[[], dt.datetime] = utcnow, policy: SessionPolicy | None = None,
              clock: Any = None, poll_interval: float | None = None) -> WebApp:
    app = WebApp(runtime, now=now, policy=policy)
    web = runtime.settings.section("web")
    interval = poll_interval if poll_interval is not None else float(web.get("poll_seconds", 2.0))
    app.hub = board_hub(runtime, lambda rows: app.render_template("_board_rows.html", rows=rows, team=""),
                       now=now, clock=clock, interval=interval,
                       journal_notice=lambda: journal_notice(app, runtime.journal_status()))
    app.hubs = [app.hub]  # page modules may add theirs (alerts); the service starts and stops them all
    app.live = {"now": now, "clock": clock, "interval": interval}
    app.add("GET", "/static/{name}", static, None)
    for name in PAGE_MODULES:
        importlib.import_module(name).register(app)
    return app


def build_site(app: WebApp) -> server.Site:
    site = server.Site(app, logFormatter=access_log_line)
    site.requestFactory = _request_factory
    site.displayTracebacks = False
    return site


def _request_factory(*args: Any, **kwargs: Any) -> server.Request:
    from web.app import LimitedRequest

    return LimitedRequest(*args, **kwargs)
