"""Time the office board: GET /board with N visits on one day, over real HTTP (SQLite).

Run: PYTHONPATH=$PWD python bench/web_board.py [N]
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from carecall.config import load_settings
from ivr.db import upgrade
from tests.helpers import VISITS_HEADER, factory_for, import_world, visit_row
from tests.webclient import Client, add_users, running_server


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    tmp = Path(tempfile.mkdtemp(prefix="carecall-bench-web-"))
    settings = load_settings(None, db_url=f"sqlite:///{tmp / 'b.db'}", environ={},
                             secret_file=str(tmp / "k"), data_dir=str(tmp / "var"))
    upgrade(settings.db_url)
    day = dt.datetime.now(dt.UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    rows = [visit_row(f"B{i}", f"R00{1 + i % 4}", day + dt.timedelta(minutes=2 * i), 30, f"100{1 + i % 4}",
                      settings=settings) for i in range(n)]
    import_world(settings, factory_for(settings), "\n".join([VISITS_HEADER, *rows]) + "\n")
    add_users(settings)
    with running_server(settings, tmp) as base:
        c = Client(base)
        c.login("coordinator")
        c.get("/board")
        times = []
        for _ in range(30):
            t = time.perf_counter()
            r = c.get("/board")
            times.append(time.perf_counter() - t)
        times.sort()
        print(f"{n} visits: GET /board median {times[15] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms, "
              f"{len(r.body) // 1024} KiB")


if __name__ == "__main__":
    main()
