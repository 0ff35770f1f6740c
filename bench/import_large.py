"""A large visits CSV uploaded through the web, and the web's responsiveness while it imports.

Issue 14 item 11: a 4.9 MB visits import froze the web for 65 s and left the server at
736 MB RSS. This starts a real ``carecall run`` (SQLite: one database thread, the worst
case), uploads an N-MB visits file as a coordinator, and meanwhile asks for ``GET /login``
(no database) and ``GET /board`` (the database) every 100 ms; it samples the server's
RSS from /proc. Prints the upload's time, the slowest and median answers during it, and
the RSS before, at its peak and after.

Run: PYTHONPATH=$PWD python bench/import_large.py [MB] [--engine sqlite|postgresql]
(PostgreSQL: set CARECALL_BENCH_PG to a database URL you may fill.)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import os
import re
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from carecall.config import load_settings
from ivr.db import upgrade
from tests.helpers import VISITS_HEADER, factory_for, import_world, visit_row
from tests.webclient import Client, add_users, running_server


def visits_csv(megabytes: float, settings: object) -> bytes:
    tz = settings.tz  # type: ignore[attr-defined]
    rows, size, i = [VISITS_HEADER], 0, 0
    while size < megabytes * 1_000_000:
        day, slot_of_day = divmod(i // 4, 28)  # 28 half-hour slots from 07:00 local: clear of clock changes
        slot = dt.datetime.combine(dt.date(2027, 1, 4) + dt.timedelta(days=day), dt.time(7), tzinfo=tz) \
            + dt.timedelta(minutes=30 * slot_of_day)
        row = visit_row(f"BIG-{i:07d}", f"R00{1 + i % 4}", slot, 30, f"100{1 + i % 4}", settings=settings)
        rows.append(row)
        size += len(row) + 1
        i += 1
    return ("\n".join(rows) + "\n").encode()


def server_pid(port: int) -> int:
    """The child ``carecall run`` serving this port (its command line names our config)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and b"carecall" in cmd and b"run" in cmd:
            return int(entry.name)
    raise RuntimeError("server process not found")


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def upload(base: str, jar: dict[str, str], token: str, data: bytes) -> tuple[int, str, float]:
    host, port = base.removeprefix("http://").split(":")
    boundary = "----bench" + uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nvisits\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection(host, int(port), timeout=900)
    t = time.perf_counter()
    conn.request("POST", "/import", body=body, headers={
        "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    took = time.perf_counter() - t
    m = re.search(r'id="import-summary">([^<]*)<', text)
    errors = re.findall(r"<li>(line [^<]*)</li>", text)[:3]
    return r.status, (m.group(1) if m else text[:200]) + "".join(f"; {e}" for e in errors), took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("megabytes", nargs="?", type=float, default=5.0)
    ap.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="carecall-bench-import-"))
    url = f"sqlite:///{tmp / 'b.db'}" if args.engine == "sqlite" else os.environ["CARECALL_BENCH_PG"]
    settings = load_settings(None, db_url=url, environ={}, secret_file=str(tmp / "k"), data_dir=str(tmp / "var"))
    upgrade(settings.db_url)
    import_world(settings, factory_for(settings))
    add_users(settings)
    data = visits_csv(args.megabytes, settings)
    rows = data.count(b"\n") - 1
    with running_server(settings, tmp, "[alerts]\nenabled = false\n") as base:
        pid = server_pid(int(base.rsplit(":", 1)[1]))
        coord = Client(base)
        coord.login("coordinator")
        token = coord.csrf("/import")
        watcher = Client(base)
        watcher.login("manager")
        for _ in range(3):
            watcher.get("/board")
        before = rss_mb(pid)
        done = threading.Event()
        answers: dict[str, list[float]] = {"/login": [], "/board": []}
        peak = [before]

        def watch() -> None:
            anon = Client(base)
            while not done.is_set():
                for path, c in (("/login", anon), ("/board", watcher)):
                    t = time.perf_counter()
                    with contextlib.suppress(OSError):  # no answer within 20 s: counted as that long
                        c.get(path)
                    answers[path].append(time.perf_counter() - t)
                    peak[0] = max(peak[0], rss_mb(pid))
                time.sleep(0.1)

        thread = threading.Thread(target=watch)
        thread.start()
        status, summary, took = upload(base, coord.jar, token, data)
        done.set()
        thread.join()
        time.sleep(2)
        after = rss_mb(pid)
    print(f"{len(data) / 1e6:.1f} MB, {rows} visits ({args.engine}): HTTP {status} '{summary}' in {took:.1f} s")
    for path, times in answers.items():
        med = statistics.median(times) * 1000
        print(f"  GET {path:7} during the import: {len(times)} answers, median {med:.0f} ms,"
              f" slowest {max(times) * 1000:.0f} ms")
    print(f"  server RSS: before {before:.0f} MB, peak {peak[0]:.0f} MB, 2 s after {after:.0f} MB")


if __name__ == "__main__":
    main()
