"""A small routing layer on ``twisted.web``: login, roles, CSRF, headers, templates.

Why not WSGI: the live board holds a server-sent-events connection open per office PC;
under ``WSGIResource`` each would pin a thread for its whole life, while here it is a
few bytes of reactor state. Handlers are coroutines: they ``await runtime.run_db(fn)``
for every database touch (the function opens its own session and returns plain data),
and render Jinja2 (autoescape on) on the reactor thread.

Every route declares who may reach it: ``roles=None`` is public (the login page and
static files), anything else needs a valid session cookie (or, for ``/api/``, a bearer
token) whose role is in the set, else 401/redirect or 403. Every POST outside the API
must carry the session's CSRF token in its body (or an ``X-CSRF-Token`` header, never
the query string), else 403 and nothing is done.

A request body is only read as a form *after* the route is matched and the caller is
authenticated (from headers alone): Twisted's own form parsing is switched off, a body
is capped at ``SMALL_BODY`` unless it carries credentials for a known POST route, a form
may hold at most ``MAX_FIELDS`` fields or parts, and a body larger than ``INLINE_PARSE``
is parsed in a thread — so no anonymous request can take the reactor away from the
FastAGI calls it also serves (issue 14 item 6).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from carecall.runtime import Runtime
from ivr.clock import format_local
from ivr.db import unit_of_work
from ivr.models import utcnow
from ivr.pins import load_or_create_key
from ivr.text import control_problem
from web import auth
from web.auth import Principal, SessionPolicy
from web.formdata import FormDataError, FormFields, parse_form
from web.throttle import LoginThrottle

log = Logger(namespace="carecall.web")

HERE = Path(__file__).parent
SESSION_COOKIE = b"carecall_session"
LOGIN_CSRF_COOKIE = b"carecall_login_csrf"
MAX_BODY = 5 * 1024 * 1024  # a CSV upload of a few thousand visits fits easily
MAX_FIELD = 2000  # any single form field other than an uploaded file
# A body without credentials for a known POST route (the login form, anonymous or 404
# requests) may be at most this big: the login form's three short fields fit 20 times.
SMALL_BODY = 8 * 1024
MAX_FIELDS = 500  # fields or multipart parts in one form; the largest real form has ~20
INLINE_PARSE = 64 * 1024  # bodies up to this size are parsed on the reactor (well under 1 ms)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FormError(ValueError):
    """One or more fields failed validation; ``errors`` maps field → message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclasses.dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    cookies: list[tuple[bytes, bytes, dict[str, Any]]] = dataclasses.field(default_factory=list)


def redirect(location: str, status: int = 303) -> Response:
    return Response(status=status, headers={"Location": location})


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status=status, body=json.dumps(data, separators=(",", ":")).encode(),
                    content_type="application/json")


STREAMING = Response(status=0)  # the handler owns the request (server-sent events)


class Ctx:
    """One request as the handlers see it: who, what they sent, and helpers."""

    def __init__(self, app: WebApp, request: server.Request, principal: Principal | None) -> None:
        self.app = app
        self.request = request
        self.principal = principal
        self.runtime = app.runtime
        self.query = {k: v[0] for k, v in parse_qs(urlsplit(request.uri.decode("latin-1")).query).items()}
        self._form: FormFields = getattr(request, "form", {}) if request.method == b"POST" else {}

    @property
    def user(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def now(self) -> dt.datetime:
        return self.app.now()

    def field(self, name: str, *, limit: int = MAX_FIELD, multiline: bool = False) -> str:
        """A text field, decoded and stripped; over-long, non-UTF-8 or control-character values
        are refused (``ivr.text.control_problem``: only a ``multiline`` note may break lines)."""
        values = self._form.get(name.encode())
        if not values:
            return ""
        try:
            text = values[0].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormError({name: "is not valid text"}) from exc
        if len(text) > limit:
            raise FormError({name: f"is longer than {limit} characters"})
        problem = control_problem(text, multiline=multiline)
        if problem:
            raise FormError({name: problem})
        return text.strip()

    def upload(self, name: str) -> bytes:
        values = self._form.get(name.encode())
        return values[0] if values else b""

    def arg(self, name: str, *, limit: int = 100) -> str:
        value = self.query.get(name, "")
        if len(value) > limit:
            raise HTTPError(400, f"{name} is too long")
        return value.strip()

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        return Response(status=status, body=self.app.render_template(template, ctx=self, **values).encode())

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(session, *args)`` in one transaction off the reactor thread."""
        factory = self.runtime.factory

        def work() -> Any:
            with unit_of_work(factory) as session:
                return fn(session, *args)

        return await self.runtime.run_db(work)


Handler = Callable[..., Awaitable[Response]]


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str  # "/visits/{id:int}" style
    handler: Handler
    roles: frozenset[str] | None
    api: bool = False

    @property
    def regex(self) -> re.Pattern[str]:
        pattern = re.sub(r"\{(\w+):int\}", r"(?P<\1>[0-9]{1,9})", self.path)
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[A-Za-z0-9._-]{1,60})", pattern)
        return re.compile(f"^{pattern}$")


class LimitedRequest(server.Request):
    """A request whose body is capped by what its headers earn, and never parsed by Twisted.

    When the headers are in (``gotLength``), the web app says how big a body this
    request may have (:meth:`WebApp.body_limit`): anything over it — announced or
    streamed — gets 413 and the connection is closed before more is read. Twisted's
    own form parsing (on the reactor, before routing) is switched off; the app parses
    the body itself once the caller is known.
    """

    _received = 0
    _refused = False
    body_limit = MAX_BODY
    form: FormFields = {}  # replaced per request by WebApp._dispatch

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False  # Twisted would parse it on the reactor, before routing
        super().__init__(channel, *args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        app = getattr(getattr(self.channel, "site", None), "resource", None)
        if isinstance(app, WebApp):
            self.body_limit = app.body_limit(getattr(self.channel, "_command", b""),
                                             getattr(self.channel, "_path", b""), self)
        if length is not None and length > self.body_limit:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.body_limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self._refused = True
        self.channel.transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
        self.channel.loseConnection()


def access_log_line(timestamp: str, request: server.Request) -> str:
    """Method, path (without query string: searches and dates stay out of logs), status, size."""
    path = request.path.decode("latin-1", "replace")
    return f'{timestamp} "{request.method.decode("latin-1")} {path}" {request.code} {request.sentLength}'


class WebApp(Resource):
    isLeaf = True

    def __init__(self, runtime: Runtime, *, now: Callable[[], dt.datetime] = utcnow,
                 policy: SessionPolicy | None = None) -> None:
        super().__init__()
        self.runtime = runtime
        self.now = now
        web = runtime.settings.section("web")
        self.policy = policy or SessionPolicy(
            idle=dt.timedelta(minutes=float(web.get("session_idle_minutes", 60))),
            absolute=dt.timedelta(hours=float(web.get("session_max_hours", 12))),
        )
        self.throttle = LoginThrottle(
            free=int(web.get("login_free_attempts", 3)), ip_free=int(web.get("login_ip_free_attempts", 10)),
            max_delay=float(web.get("login_max_delay_seconds", 900)))
        self.login_key = auth.login_csrf_key(load_or_create_key(runtime.settings.secret_path))
        self.secure_cookies = runtime.settings.base_url.startswith("https:") or bool(web.get("secure_cookies", False))
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        tz = runtime.settings.tz
        self.env.filters["local"] = lambda v, fmt="%Y-%m-%d %H:%M": format_local(v, tz, fmt) if v else ""
        self.env.filters["hm"] = lambda v: format_local(v, tz, "%H:%M") if v else ""
        self.routes: list[Route] = []
        self.extensions: list[Any] = []

    # --- registration ----------------------------------------------------------------

    def add(self, method: str, path: str, handler: Handler, roles: Iterable[str] | None, *, api: bool = False) -> None:
        self.routes.append(Route(method, path, handler, frozenset(roles) if roles is not None else None, api))
        self._compiled = [(r, r.regex) for r in self.routes]

    def render_template(self, name: str, **values: Any) -> str:
        return self.env.get_template(name).render(**values)

    # --- dispatch --------------------------------------------------------------------

    def render(self, request: server.Request) -> Any:
        d = ensureDeferred(self._dispatch(request))
        d.addErrback(self._crash, request)
        return server.NOT_DONE_YET

    def _headers(self, request: server.Request) -> None:
        h = request.responseHeaders
        h.setRawHeaders(b"Content-Security-Policy", [CSP.encode()])
        h.setRawHeaders(b"X-Content-Type-Options", [b"nosniff"])
        h.setRawHeaders(b"X-Frame-Options", [b"DENY"])
        h.setRawHeaders(b"Referrer-Policy", [b"same-origin"])
        h.setRawHeaders(b"Cross-Origin-Opener-Policy", [b"same-origin"])
        h.setRawHeaders(b"Permissions-Policy", [b"camera=(), microphone=(), geolocation=()"])
        if self.secure_cookies:
            h.setRawHeaders(b"Strict-Transport-Security", [b"max-age=31536000"])

    def cookie_flags(self, request: server.Request) -> dict[str, Any]:
        return {"path": b"/", "httpOnly": True, "sameSite": "lax",
                "secure": self.secure_cookies or request.isSecure()}

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        path_known = False
        for route, regex in getattr(self, "_compiled", []):
            m = regex.match(path)
            if m is None:
                continue
            path_known = True
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, m.groupdict(), True
        return None, {}, path_known

    def body_limit(self, method: bytes, uri: bytes, request: server.Request) -> int:
        """How big a body this request may send, from its request line and headers alone.

        Only a POST to a known, non-public route that carries credentials (a session
        cookie, or a bearer token for the API) may send up to ``MAX_BODY``; whether
        those credentials are valid is checked before the body is parsed.
        """
        if method != b"POST":
            return SMALL_BODY
        try:
            path = uri.split(b"?", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            return SMALL_BODY
        route, _, _ = self._match("POST", path)
        if route is None or route.roles is None:
            return SMALL_BODY
        if route.api:
            has = (request.requestHeaders.getRawHeaders(b"authorization") or [b""])[0].startswith(b"Bearer ")
        else:
            has = bool(request.received_cookies.get(SESSION_COOKIE))
        return MAX_BODY if has else SMALL_BODY

    async def read_form(self, request: server.Request) -> FormFields:
        """The request's form body, parsed with ``MAX_FIELDS``; large bodies in a thread."""
        content = getattr(request, "content", None)
        if content is None:
            return {}
        size = content.seek(0, 2)
        content.seek(0)
        ctype = request.getHeader(b"content-type")

        def parse() -> FormFields:
            content.seek(0)
            return parse_form(ctype, content.read(), max_fields=MAX_FIELDS)

        if size <= INLINE_PARSE:
            return parse()
        reactor = self.runtime.reactor
        return await deferToThreadPool(reactor, reactor.getThreadPool(), parse)

    async def principal_for(self, request: server.Request, api: bool) -> Principal | None:
        now = self.now()
        factory = self.runtime.factory
        if api:
            header = (request.getHeader(b"authorization") or b"").decode("latin-1")
            if not header.startswith("Bearer "):
                return None
            token = header[len("Bearer "):].strip()

            def work_token() -> Principal | None:
                with unit_of_work(factory) as session:
                    return auth.load_token(session, token, now)

            return await self.runtime.run_db(work_token)
        cookie = (request.getCookie(SESSION_COOKIE) or b"").decode("latin-1")
        if not cookie:
            return None

        def work() -> Principal | None:
            with unit_of_work(factory) as session:
                return auth.load_session(session, cookie, now, self.policy)

        return await self.runtime.run_db(work)

    async def _dispatch(self, request: server.Request) -> None:
        self._headers(request)
        method = request.method.decode("latin-1")
        try:
            path = request.path.decode("utf-8")
        except UnicodeDecodeError:
            path = ""
        route, params, path_known = self._match(method, path)
        if route is None:
            status = 405 if path_known else 404
            message = "Method not allowed" if path_known else "Not found"
            self._write(request, self._error(request, None, status, message))
            return
        principal = None
        if route.roles is not None:
            principal = await self.principal_for(request, route.api)
            if principal is None:
                if route.api:
                    resp = json_response({"error": "authentication required"}, 401)
                    resp.headers["WWW-Authenticate"] = 'Bearer realm="carecall"'
                elif method == "GET" and not path.endswith("/events"):
                    resp = redirect("/login")
                else:
                    resp = self._error(request, None, 401, "Please log in again")
                self._write(request, resp)
                return
            if principal.role not in route.roles:
                self._write(request, self._error(request, principal, 403, "Your role may not do this"))
                return
        if method == "POST":
            try:
                request.form = await self.read_form(request)
            except FormDataError as exc:
                self._write(request, self._error(request, principal, exc.status, exc.message, api=route.api))
                return
            if principal is not None and not route.api:
                # From the body or a header only: a token in a URL leaks into logs and Referer.
                given = (request.form.get(b"csrf_token") or [request.getHeader(b"x-csrf-token") or b""])[0]
                if not auth.csrf_ok(principal.csrf_token, given.decode("latin-1")):
                    self._write(request, self._error(request, principal, 403, "The form was out of date; try again"))
                    return
        ctx = Ctx(self, request, principal)
        try:
            resp = await route.handler(ctx, **params)
        except HTTPError as exc:
            resp = self._error(request, principal, exc.status, exc.message, api=route.api)
        if resp is STREAMING:
            return
        if principal is not None:
            resp.headers.setdefault("Cache-Control", "no-store")
        self._write(request, resp)

    def _error(self, request: server.Request, principal: Principal | None, status: int, message: str,
               api: bool = False) -> Response:
        if api or request.path.startswith(b"/api/"):
            return json_response({"error": message}, status)
        body = self.render_template("error.html", ctx=_Bare(self, principal), status=status, message=message)
        return Response(status=status, body=body.encode())

    def _write(self, request: server.Request, resp: Response) -> None:
        if request._disconnected or request.finished:
            return
        request.setResponseCode(resp.status)
        request.setHeader(b"Content-Type", resp.content_type.encode())
        for k, v in resp.headers.items():
            request.setHeader(k.encode(), v.encode())
        for name, value, flags in resp.cookies:
            request.addCookie(name, value, **{**self.cookie_flags(request), **flags})
        if request.method != b"HEAD":
            request.write(resp.body)
        request.finish()

    def _crash(self, failure: Any, request: server.Request) -> None:
        log.failure("web request failed: {path}", failure, path=request.path.decode("latin-1", "replace"))
        if not (request._disconnected or request.finished):
            try:
                self._write(request, self._error(request, None, 500, "Something went wrong; it has been logged"))
            except Exception:  # the error page itself failed; give up politely
                request.finish()


class _Bare:
    """What error.html needs from a context when there is no handler context."""

    def __init__(self, app: WebApp, principal: Principal | None) -> None:
        self.app = app
        self.principal = principal
