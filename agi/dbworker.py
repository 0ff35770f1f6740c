"""EXPERIMENT: run call effects in a child process."""
from __future__ import annotations

import pickle
import struct
import sys


def main() -> None:
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer

    def read() -> object:
        head = stdin.read(4)
        if len(head) < 4:
            raise EOFError
        (n,) = struct.unpack("!I", head)
        return pickle.loads(stdin.read(n))

    settings = read()
    from ivr.callstore import CallStore, MatchWindows
    from ivr.db import make_engine
    from ivr.lockout import LockoutPolicy
    from ivr.pins import PinHasher, load_or_create_key

    store = CallStore(make_engine(settings.db_url, hide_parameters=True),
                      PinHasher(load_or_create_key(settings.secret_path)),
                      MatchWindows.from_settings(settings), LockoutPolicy.from_settings(settings))
    while True:
        try:
            bid, effects = read()
        except EOFError:
            return
        outcomes = store.run_batch(effects)
        out = []
        for ok, v in outcomes:
            if not ok:
                try:
                    pickle.dumps(v)
                except Exception:
                    v = RuntimeError(type(v).__name__)
            out.append((ok, v))
        data = pickle.dumps((bid, out), protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(struct.pack("!I", len(data)) + data)
        stdout.flush()


if __name__ == "__main__":
    main()
