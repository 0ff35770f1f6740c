"""The floor: a bare Twisted FastAGI protocol sending carecall's commands, one SQLite insert per call.

No codec, no dialog, no lookups, no PIN check: what Python and the reactor cost for
the same conversation. ``python bench/agi_floor_server.py PORT DBFILE``.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

COMMANDS = [
    b"ANSWER\n",
    b"GET DATA agent-user 6000 8\n",
    b"GET DATA agent-pass 6000 4\n",
    None,  # the insert happens here
    b'STREAM FILE agent-loginok ""\n',
    b'SAY TIME %d ""\n',
    b'STREAM FILE goodbye ""\n',
    b"HANGUP\n",
]

local = threading.local()


def insert(path: str, uniqueid: str, digits: str) -> None:
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = local.conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO calls (uniqueid, digits, at) VALUES (?, ?, ?)", (uniqueid, digits, time.time()))
    conn.execute("COMMIT")


class Bare(Protocol):
    def __init__(self, factory: BareFactory) -> None:
        self.factory = factory
        self.buf = b""
        self.env = True
        self.step = 0
        self.uniqueid = ""
        self.digits: list[str] = []

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if self.env:
                if line.startswith(b"agi_uniqueid: "):
                    self.uniqueid = line[14:].decode()
                if not line:
                    self.env = False
                    self.send()
                continue
            if line == b"HANGUP":
                continue
            if line.startswith(b"200 result=") and self.step in (2, 3):
                self.digits.append(line[11:].decode())
            if self.step >= len(COMMANDS):
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            self.send()

    def send(self) -> None:
        cmd = COMMANDS[self.step]
        self.step += 1
        if cmd is None:
            d = deferToThreadPool(reactor, self.factory.pool, insert, self.factory.path, self.uniqueid,
                                  ",".join(self.digits))
            d.addCallback(lambda _: self.send())
            return
        if b"%d" in cmd:
            cmd = cmd % int(time.time())
        self.transport.write(cmd)  # type: ignore[union-attr]


class BareFactory(Factory):
    def __init__(self, path: str) -> None:
        self.path = path
        self.pool = ThreadPool(1, 1)
        self.pool.start()
        reactor.addSystemEventTrigger("before", "shutdown", self.pool.stop)  # type: ignore[attr-defined]

    def buildProtocol(self, addr: Any) -> Bare:
        return Bare(self)


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, uniqueid TEXT, digits TEXT, at REAL)")
    conn.close()
    reactor.listenTCP(port, BareFactory(path), interface="127.0.0.1", backlog=1024)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
