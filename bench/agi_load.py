"""Load generator for the call path: plays Asterisk over TCP against a real carecall server.

Usage (from the repository root):

    PYTHONPATH=$PWD python bench/agi_load.py [--calls 4000] [--concurrency 200] [--rounds 3] [--hold 5000]
                                             [--process-calls 20] [--sweep 10,25,50,100]
                                             [--db sqlite|postgresql://…]

What it measures (each server runs in its own subprocess, the load generator here):

1. carecall: ``carecall run`` (the real server, SQLite by default) with N imported
   residents, workers and visits; ``--calls`` full arrival dialogs (ANSWER, worker
   number, PIN, confirmation, SAY TIME, goodbye, HANGUP) kept ``--concurrency`` at a
   time → completed dialogs/s, and server think-time per command (from our reply to
   its next command, seen from the client) p50/p99.
2. held calls: ``--hold`` connections opened together, each held at its first GET DATA
   until all are open, then all completed → most concurrent calls held open.
3. the pyst2 process-AGI script, one Python process per call (as Asterisk runs it).
4. the floor: a bare Twisted protocol sending the same commands with one plain SQLite
   insert per call in a thread pool (bench/agi_floor_server.py). The floor and carecall
   take turns for ``--rounds`` rounds, and the ratio is given per round and as the
   median: the machine's speed drifts, so only like-with-like ratios mean anything.
5. ``--sweep``: more arrival phases at lower concurrencies (rate and p99 per level).

The machine is shared: other processes use the CPU too; run it twice and read both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy.engine import make_url  # noqa: E402

from agi.simulator import CallScript, FakeAsterisk, SimResult, simulate_process  # noqa: E402


def raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def stop(proc: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM and wait; a server that does not stop in 30 s is reported and killed."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(f"WARNING: {name} did not stop within 30 s of SIGTERM; killed")
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start listening")


def uk_line(i: int) -> str:
    return f"0208{3000000 + i:07d}"


def build_world(n: int, workdir: Path, db_url: str) -> dict[str, Any]:
    from carecall.config import load_settings
    from ivr.clock import format_local
    from ivr.db import make_engine, session_factory, upgrade
    from ivr.importer import ImportContext, import_csv
    from ivr.pins import PinHasher, load_or_create_key

    key = workdir / "carecall.key"
    settings = load_settings(None, db_url=db_url, environ={}, secret_file=str(key), data_dir=str(workdir))
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = session_factory(engine)
    ctx = ImportContext(settings.tz, settings.phone_region, PinHasher(load_or_create_key(key)), "bench")
    now = dt.datetime.now(dt.UTC)
    residents = ["reference,name,landline,address,postcode,funder,phone_code"]
    workers = ["worker_number,name,pin,mobile"]
    visits = ["visit_ref,resident_reference,planned_start,planned_end,workers,time_critical"]
    for i in range(n):
        residents.append(f"B{i},Resident {i},{uk_line(i)},,,Bench,{10000 + i}")
        workers.append(f"{20000 + i},Worker {i},1234,")
        start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=25)
        visits.append(f"BV{i},B{i},{format_local(start, settings.tz)},{format_local(end, settings.tz)},{20000 + i},no")
    for kind, rows in (("residents", residents), ("workers", workers), ("visits", visits)):
        report = import_csv(factory, kind, "\n".join(rows) + "\n", ctx)
        if not report.ok:
            raise SystemExit(f"import {kind}: {report.errors[:3]}")
    engine.dispose()
    return {"key": key}


def start_carecall(db_url: str, workdir: Path, key: Path, port: int, alerts: bool = True,
                   db_threads: int = 0) -> subprocess.Popen[bytes]:
    config = workdir / "carecall.toml"
    config.write_text(f'[carecall]\nagi_port = {port}\nweb_port = {free_port()}\nsecret_file = "{key}"\n'
                      f'data_dir = "{workdir}"\n' + (f"db_threads = {db_threads}\n" if db_threads else "")
                      + ("" if alerts else "[alerts]\nenabled = false\n"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = (workdir / "server.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "carecall", "--db", db_url, "--config", str(config), "run"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def start_floor(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "agi_floor_server.py"), str(port),
                             str(workdir / "floor.db")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)


class CPU:
    """User and system CPU a process and its children (the effect workers) used between two readings (/proc)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self._read()

    def _pids(self) -> list[int]:
        children: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
        return [self.pid, *children]

    def _read(self) -> dict[int, tuple[float, float]]:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for pid in self._pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            out[pid] = (int(fields[11]) / tick, int(fields[12]) / tick)
        return out

    def per(self, n: int) -> str:
        now = self._read()
        user = sum(u - self.start.get(pid, (0.0, 0.0))[0] for pid, (u, _s) in now.items())
        system = sum(s - self.start.get(pid, (0.0, 0.0))[1] for pid, (_u, s) in now.items())
        n = max(n, 1)
        return f"server CPU {(user + system) / n * 1e3:.3f} ms per dialog ({user / n * 1e3:.3f} user, " \
               f"{system / n * 1e3:.3f} system; {len(now) - 1} worker process(es) included)"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# ---------------------------------------------------------------- Twisted load generator


def run_load(port: int, scripts: list[CallScript], concurrency: int) -> dict[str, Any]:
    """Keep ``concurrency`` dialogs in flight until every script has run."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, DeferredList

    from agi.simulator import simulate

    results: list[SimResult] = []
    errors: list[str] = []
    queue = list(reversed(scripts))
    t0 = time.perf_counter()
    done_all: Deferred[None] = Deferred()

    def next_call() -> Deferred[Any] | None:
        if not queue:
            return None
        d = simulate(reactor, "127.0.0.1", port, queue.pop(), timeout=120)

        def ok(r: SimResult) -> None:
            results.append(r)
            next_call()
            if len(results) + len(errors) == len(scripts) and not done_all.called:
                done_all.callback(None)

        def bad(f: Any) -> None:
            errors.append(f.getErrorMessage())
            next_call()
            if len(results) + len(errors) == len(scripts) and not done_all.called:
                done_all.callback(None)

        d.addCallbacks(ok, bad)
        return d

    for _ in range(min(concurrency, len(scripts))):
        next_call()
    elapsed: list[float] = []
    done_all.addCallback(lambda _: elapsed.append(time.perf_counter() - t0))
    DeferredList([done_all]).addCallback(lambda _: reactor.stop())
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    secs = elapsed[0] if elapsed else time.perf_counter() - t0
    completed = [r for r in results if r.completed]
    think = [t for r in completed for t in r.think_times[1:]]  # [0] includes connect + environment
    return {
        "calls": len(scripts), "completed": len(completed), "errors": len(errors) + len(results) - len(completed),
        "seconds": secs, "rate": len(completed) / secs, "p50_ms": pct(think, 50) * 1000,
        "p99_ms": pct(think, 99) * 1000, "results": results,
    }


def run_hold(port: int, scripts: list[CallScript]) -> dict[str, Any]:
    """Open every call at once; hold each at its first GET DATA until all are held; then finish all."""
    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory, Protocol

    n = len(scripts)
    held: list[Any] = []
    finished: list[bool] = []
    failed: list[str] = []
    state = {"released": False, "peak": 0, "t0": time.perf_counter()}

    class Holder(Protocol):
        def __init__(self, call: CallScript) -> None:
            self.fake = FakeAsterisk(call)
            self.pending = b""

        def connectionMade(self) -> None:
            self.transport.write(self.fake.environment())  # type: ignore[union-attr]

        def dataReceived(self, data: bytes) -> None:
            if not state["released"] and b"GET DATA" in data and not self.pending:
                self.pending = data  # hold the call here, like a worker slow to type
                held.append(self)
                state["peak"] = max(state["peak"], len(held))
                if len(held) == n:
                    release()
                return
            self._answer(data)

        def _answer(self, data: bytes) -> None:
            out = self.fake.receive_data(data)
            if out:
                self.transport.write(out)  # type: ignore[union-attr]

        def connectionLost(self, reason: Any = None) -> None:
            finished.append(self.fake.server_hung_up)
            if len(finished) + len(failed) == n:
                reactor.stop()

    class F(ClientFactory):
        def __init__(self, call: CallScript) -> None:
            self.call = call

        def buildProtocol(self, addr: Any) -> Holder:
            return Holder(self.call)

        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
            failed.append(reason.getErrorMessage())
            if len(finished) + len(failed) == n:
                reactor.stop()

    def release() -> None:
        state["released"] = True
        state["held_at"] = time.perf_counter() - state["t0"]
        for h in held:
            h._answer(h.pending)

    def connect_batch(i: int = 0) -> None:
        for call in scripts[i : i + 250]:
            reactor.connectTCP("127.0.0.1", port, F(call), timeout=60)
        if i + 250 < n:
            reactor.callLater(0.02, connect_batch, i + 250)

    reactor.callWhenRunning(connect_batch)
    guard = reactor.callLater(300, reactor.stop)
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    if guard.active():
        guard.cancel()
    return {"requested": n, "peak_held": state["peak"], "completed": sum(finished), "failed": len(failed),
            "held_after_s": state.get("held_at")}


def in_subprocess(fn_name: str, *args: Any) -> dict[str, Any]:
    """Twisted's reactor runs once per process: run each load phase in a fresh interpreter."""
    import json

    code = (f"import json,sys; sys.path.insert(0,{str(ROOT)!r}); import bench.agi_load as b; b.raise_nofile(); "
            f"r=b.{fn_name}(*json.loads(sys.argv[1])); r.pop('results',None); print(json.dumps(r))")
    payload = json.dumps(list(args), default=lambda o: o.__dict__)
    out = subprocess.run([sys.executable, "-c", code, payload], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def scripts_for(n: int, offset: int = 0, first: int = 0) -> list[CallScript]:
    """Arrival dialogs of residents/workers ``first`` … ``first + n - 1`` (a second call is a departure)."""
    return [CallScript(callerid=uk_line(i), digits=[str(20000 + i), "1234"], uniqueid=f"bench.{offset + i}")
            for i in range(first, first + n)]


def load_phase(port: int, n: int, concurrency: int, offset: int = 0, first: int = 0) -> dict[str, Any]:
    return run_load(port, scripts_for(n, offset, first), concurrency)


def hold_phase(port: int, n: int, offset: int) -> dict[str, Any]:
    return run_hold(port, scripts_for(n, offset))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--hold", type=int, default=5000)
    ap.add_argument("--process-calls", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="floor and carecall take turns this many times")
    ap.add_argument("--sweep", default="", help="more arrival phases at these concurrencies, e.g. 10,25,50,100")
    ap.add_argument("--sweep-calls", type=int, default=2000, help="dialogs per sweep level")
    ap.add_argument("--db-threads", type=int, default=0, help="database threads (default: the server's own)")
    ap.add_argument("--no-floor", action="store_true", help="skip the bare Twisted floor")
    ap.add_argument("--no-alerts", action="store_true",
                    help="switch the alert scheduler off (its passes over N visits all due now share the pool)")
    ap.add_argument("--db", default="sqlite", help="sqlite (a temp file) or a PostgreSQL URL")
    args = ap.parse_args()
    nofile = raise_nofile()
    print(f"RLIMIT_NOFILE raised to {nofile}; load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    sweep = [int(c) for c in args.sweep.split(",") if c.strip()]
    n_world = max(args.calls * args.rounds + args.sweep_calls * len(sweep), args.hold, args.process_calls)
    with tempfile.TemporaryDirectory(prefix="carecall-bench-") as tmp:
        workdir = Path(tmp)
        db_url = f"sqlite:///{workdir / 'bench.db'}" if args.db == "sqlite" else args.db
        t = time.perf_counter()
        world = build_world(n_world, workdir, db_url)
        print(f"imported {n_world} residents, workers and visits in {time.perf_counter() - t:.1f} s")

        floor = None
        if not args.no_floor:
            floor_port = free_port()
            floor = start_floor(workdir, floor_port)
        port = free_port()
        server = start_carecall(db_url, workdir, world["key"], port, alerts=not args.no_alerts,
                                db_threads=args.db_threads)
        shown = "sqlite" if args.db == "sqlite" else make_url(args.db).render_as_string(hide_password=True)
        try:
            wait_for_port(port, server)
            in_subprocess("load_phase", port, min(200, args.calls), args.concurrency, 10_000_000)  # warm-up
            if floor is not None:
                wait_for_port(floor_port, floor)
                in_subprocess("load_phase", floor_port, min(200, args.calls), args.concurrency, 0)
            # The floor and carecall take turns, round after round: this shared machine's speed
            # drifts by ±15 % over minutes, and each round's ratio compares like with like.
            rates, ratios = [], []
            for k in range(args.rounds):
                if floor is not None:
                    cpu = CPU(floor.pid)
                    f = in_subprocess("load_phase", floor_port, args.calls, args.concurrency, 0)
                    print(f"round {k + 1}: bare Twisted floor: {f['rate']:.0f} dialogs/s, think p50 "
                          f"{f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms; {cpu.per(f['completed'])}")
                cpu = CPU(server.pid)
                r = in_subprocess("load_phase", port, args.calls, args.concurrency, k * 1_000_000, k * args.calls)
                print(f"round {k + 1}: carecall FastAGI ({shown}): {r['completed']}/{r['calls']} dialogs in "
                      f"{r['seconds']:.2f} s = {r['rate']:.0f} dialogs/s at concurrency {args.concurrency}; "
                      f"think-time per command p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; "
                      f"errors {r['errors']}; {cpu.per(r['completed'])}")
                rates.append(r["rate"])
                if floor is not None:
                    ratios.append(r["rate"] / f["rate"])
                    print(f"round {k + 1}: carecall / floor = {ratios[-1]:.2f}")
            carecall_rate = statistics.median(rates)
            if ratios:
                print(f"carecall / floor, median of {len(ratios)} rounds = {statistics.median(ratios):.2f} "
                      f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
            low = in_subprocess("load_phase", port, min(1000, args.calls), 10, 30_000_000)
            print(f"carecall at concurrency 10 (these calls are the departures): {low['rate']:.0f} dialogs/s; "
                  f"think-time p50 {low['p50_ms']:.2f} ms, p99 {low['p99_ms']:.2f} ms")
            for n, c in enumerate(sweep):  # arrivals again, each level on residents not called yet
                first = args.calls * args.rounds + n * args.sweep_calls
                w = in_subprocess("load_phase", port, args.sweep_calls, c, 40_000_000 + first, first)
                print(f"sweep: concurrency {c}: {w['rate']:.0f} dialogs/s; think-time p50 {w['p50_ms']:.2f} ms, "
                      f"p99 {w['p99_ms']:.2f} ms; errors {w['errors']}")
            h = in_subprocess("hold_phase", port, args.hold, 20_000_000) if args.hold else None
            if h:
                print(f"held open at once: {h['peak_held']}/{h['requested']} calls (all mid-dialog after "
                      f"{h['held_after_s'] or float('nan'):.1f} s); then completed {h['completed']}, "
                      f"failed to connect {h['failed']}")
        finally:
            stop(server, "carecall")
            if floor is not None:
                stop(floor, "floor server")
            slow = []
            for line in (workdir / "server.log").read_text(errors="replace").splitlines():
                if "group commit:" in line:
                    print("server:", line.split("] ", 1)[-1])
                if "slow alert pass" in line:
                    slow.append(line.split("] ", 1)[-1])
            print(f"server: {len(slow)} alert passes took 0.1 s or more" + (f"; the last: {slow[-1]}" if slow else ""))

        # pyst2 process AGI: one process per call, sequential like a quiet line.
        env = dict(os.environ, PYTHONPATH=str(ROOT), CARECALL_DB=db_url)
        config = workdir / "agi.toml"
        config.write_text(f'[carecall]\nsecret_file = "{world["key"]}"\n')
        env["CARECALL_CONFIG"] = str(config)
        t = time.perf_counter()
        ok = 0
        for i in range(args.process_calls):
            res = simulate_process([sys.executable, "-m", "agi.process_agi"],
                                   CallScript(callerid=uk_line(i), digits=[str(20000 + i), "1234"],
                                              uniqueid=f"proc.{i}"), env=env, timeout=60)
            ok += res.completed
        if args.process_calls:
            proc_rate = ok / (time.perf_counter() - t)
            print(f"pyst2 process AGI: {ok}/{args.process_calls} dialogs = {proc_rate:.1f} dialogs/s "
                  f"(FastAGI is {carecall_rate / proc_rate:.0f}x faster)")

        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
