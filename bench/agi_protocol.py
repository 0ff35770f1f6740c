"""The reactor side of a call, without sockets or threads: what our own Python costs.

Drives ``FastAGIProtocol`` over a ``StringTransport`` with the sans-IO Asterisk of
``agi/simulator.py`` on the other end and the database effects run inline, for N arrival
dialogs against imported data (SQLite), and prints CPU per dialog split into the
effects and everything else (codec, dialog, protocol, logging). Compare with the bare
floor server's ~0.2 ms CPU per dialog in docs/benchmarks.md.

    PYTHONPATH=$PWD python bench/agi_protocol.py [--calls 3000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet.defer import maybeDeferred  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.logger import globalLogPublisher  # noqa: E402

from agi.fastagi import FastAGIFactory  # noqa: E402
from agi.simulator import CallScript, FakeAsterisk  # noqa: E402
from bench.agi_load import build_world, uk_line  # noqa: E402
from carecall.config import load_settings  # noqa: E402
from ivr.callstore import CallStore  # noqa: E402
from ivr.db import make_engine  # noqa: E402
from ivr.dialog import DialogConfig  # noqa: E402
from ivr.pins import PinHasher, load_or_create_key  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    # Log events are built and published as in the server, to an observer that drops them.
    globalLogPublisher.addObserver(lambda event: None)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'bench.db'}"
        info = build_world(args.calls, workdir, url)
        settings = load_settings(None, db_url=url, environ={}, secret_file=str(info["key"]))
        store = CallStore(make_engine(url), PinHasher(load_or_create_key(info["key"])))
        effect_seconds = 0.0

        def run_db(fn: Any, *a: Any) -> Any:
            nonlocal effect_seconds
            t = time.process_time()
            d = maybeDeferred(fn, *a)
            effect_seconds += time.process_time() - t
            return d

        clock = Clock()
        factory = FastAGIFactory(DialogConfig.from_settings(settings), store, run_db, clock)

        def one(i: int) -> None:
            fake = FakeAsterisk(CallScript(callerid=uk_line(i), digits=[str(20000 + i), "1234"],
                                           uniqueid=f"p.{i}"))
            proto = factory.buildProtocol(None)
            transport = StringTransport()
            proto.makeConnection(transport)
            proto.dataReceived(fake.environment())
            while not transport.disconnecting:
                out = transport.value()
                transport.clear()
                if not out:
                    raise RuntimeError("server waits for nothing")
                proto.dataReceived(fake.receive_data(out))
            proto.connectionLost(None)

        profiler = cProfile.Profile() if args.profile else None
        cpu0 = time.process_time()
        if profiler:
            profiler.enable()
        for i in range(args.calls):
            one(i)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu0
        n = args.calls
        print(f"{n} arrival dialogs: {cpu / n * 1e3:.3f} ms CPU per dialog, of which database effects "
              f"{effect_seconds / n * 1e3:.3f} ms and codec + dialog + protocol + logging "
              f"{(cpu - effect_seconds) / n * 1e3:.3f} ms; outcomes {factory.outcomes}")
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
