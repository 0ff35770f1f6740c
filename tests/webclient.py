"""A real carecall server in a subprocess, and a tiny cookie-keeping HTTP client for it.

The web tests talk to ``python -m carecall run`` over a real TCP socket, exactly as an
office browser would; no reactor is shared with the test process.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

from carecall.config import Settings
from tests.pg import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


def cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CARECALL_SECRET_FILE": settings.secret_file}
    return subprocess.run([sys.executable, "-m", "carecall", "--db", settings.db_url, *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)


def add_users(settings: Settings) -> None:
    for role in ("coordinator", "finance", "manager"):
        r = cli(settings, "user", "add", role, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr


class ServerURL(str):
    """The web base URL of a running server; ``agi_port`` is its FastAGI listener."""

    agi_port: int


@contextlib.contextmanager
def running_server(settings: Settings, tmp: Path, extra_toml: str = "") -> Iterator[ServerURL]:
    port, agi_port = free_port(), free_port()
    config = tmp / f"server-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(
        f'[carecall]\nweb_port = {port}\nagi_port = {agi_port}\nsecret_file = "{settings.secret_file}"\n'
        f'data_dir = "{settings.data_dir}"\n{extra_toml}'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp / f"server-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "carecall", "--db", settings.db_url, "--config", str(config),
                             "run"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/login")
                conn.getresponse().read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp / f"server-{port}.log").read_text()) from None
                time.sleep(0.1)
        url = ServerURL(f"http://127.0.0.1:{port}")
        url.agi_port = agi_port
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


class Client:
    def __init__(self, base: str) -> None:
        self.host, self.port = base.removeprefix("http://").split(":")
        self.jar: dict[str, str] = {}
        self.bearer: str | None = None

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> Response:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=20)
        headers = {}
        if self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        if ctype:
            headers["Content-Type"] = ctype
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        resp = Response(r.status, r.getheaders(), r.read())
        conn.close()
        for c in resp.cookies():
            name, _, rest = c.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in c or not value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return resp

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str] | None = None) -> Response:
        return self.request("POST", path, urlencode(fields or {}).encode(), "application/x-www-form-urlencoded")

    def upload(self, path: str, fields: dict[str, str], name: str, filename: str, data: bytes) -> Response:
        boundary = "----carecall" + uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: text/csv\r\n\r\n".encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", path, body, f"multipart/form-data; boundary={boundary}")

    def login(self, username: str, password: str = PASSWORD) -> Response:
        page = self.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token, page.text
        return self.post("/login", {"login_csrf": token.group(1), "username": username, "password": password})

    def csrf(self, path: str = "/board") -> str:
        m = re.search(r'name="csrf_token" value="([^"]+)"', self.get(path).text)
        assert m, "no CSRF token on the page"
        return m.group(1)
