"""The call effects' worker process: ``python -m agi.effectworker`` (started by :mod:`agi.effectprocess`).

Why a process and not only a thread: the check-in transaction is Python work (binding,
row conversion, the decision) between short SQLite calls. In a database *thread* that
work holds the GIL, so the reactor thread, which serves every call in flight, waits for
it; measured, the reactor ran only two thirds of the time under load. In a process of
its own the same work runs on the other core and the reactor never waits for it
(docs/benchmarks.md). The dialog, the effects and :class:`~ivr.callstore.CallStore` are
unchanged: batches are pickled across a pipe instead of handed to a thread.

Wire format on stdin/stdout, both ways: a 4-byte big-endian length, then a pickle. The
first frame from the parent is the server's :class:`~carecall.config.Settings`; then each
request is ``(batch_id, [effect, …])`` and each reply ``(batch_id, [(ok, value), …])``
(:meth:`CallStore.run_batch`). Only the parent writes to this pipe, so unpickling it is
as safe as importing our own modules.

The worker dies with its parent (``PR_SET_PDEATHSIG`` on Linux, end of stdin elsewhere):
a server killed in the middle of a check-in must leave that transaction uncommitted, as
a killed thread would, never finish it behind the restarted server's back. SIGINT is
ignored: a Ctrl-C in the terminal reaches the whole process group, and the parent stops
its worker in order (end of stdin) after the calls in flight.
"""

from __future__ import annotations

import pickle
import signal
import struct
import sys
from typing import IO, Any

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024


class EffectError(Exception):
    """An effect's exception that could not cross the pipe; its message is the original type's name."""


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame, or EOFError at the end of the stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        raise EOFError
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # frames come only from our parent process


def portable(outcomes: list[tuple[bool, Any]]) -> list[tuple[bool, Any]]:
    """Exceptions that pickle go as they are (``failure.type`` stays meaningful); others as EffectError."""
    out: list[tuple[bool, Any]] = []
    for ok, value in outcomes:
        if not ok:
            try:
                pickle.loads(pickle.dumps(value))
            except Exception:
                value = EffectError(type(value).__name__)
        out.append((ok, value))
    return out


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the end of stdin stops us instead
        pass


def main() -> int:
    _die_with_parent()
    # Ctrl-C and a control-group SIGTERM reach us too: the parent decides when we stop
    # (end of stdin, after the calls it is draining are recorded; PR_SET_PDEATHSIG if it dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        settings = read_frame(stdin)
    except EOFError:
        return 0
    from ivr.callstore import CallStore, MatchWindows
    from ivr.db import make_engine
    from ivr.lockout import LockoutPolicy
    from ivr.pins import PinHasher, load_or_create_key

    # hide_parameters: an error message must not carry a caller's number into the logs.
    engine = make_engine(settings.db_url, hide_parameters=True)
    store = CallStore(engine, PinHasher(load_or_create_key(settings.secret_path)),
                      MatchWindows.from_settings(settings), LockoutPolicy.from_settings(settings))
    stdout.write(frame(("ready", None)))
    stdout.flush()
    while True:
        try:
            batch_id, effects = read_frame(stdin)
        except EOFError:
            engine.dispose()
            return 0
        stdout.write(frame((batch_id, portable(store.run_batch(effects)))))
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
