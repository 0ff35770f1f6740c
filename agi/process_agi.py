"""``carecall-agi``: the same call dialog as a process-AGI script, for ``AGI(carecall-agi,checkin)``.

Asterisk starts one process per call and talks AGI over its stdin/stdout. pyst2's
``asterisk.agi.AGI`` owns those streams: it reads the ``agi_*`` environment, installs
its SIGHUP handler (fine here: one call per process, main thread) and writes our
commands. Replies are parsed by our codec rather than by ``AGI.get_result``, because
pyst2 reads a ``HANGUP`` line as a reply and raises on ``result=-1``; the codec knows
both. The dialog (:mod:`ivr.dialog`) and the effects (:mod:`ivr.callstore`) are the very
ones the FastAGI server runs, called synchronously.

Configuration: ``CARECALL_CONFIG`` (else ``/etc/carecall/carecall.toml``, else
``./carecall.toml``) and ``CARECALL_DB``; give ``secret_file`` as an absolute path, since
Asterisk's working directory is not carecall's. Logs go to stderr (Asterisk's console)
with the caller masked; pyst2's own chatter (which would print the caller ID) is discarded.

Exit status: 0 when the dialog finished (whatever its outcome), 1 on a fault.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

from agi.codec import NEED_DATA, AGIConnection, Closed, Hangup, LocalProtocolError, RemoteProtocolError
from ivr.logsafe import printable

SYSTEM_CONFIG = Path("/etc/carecall/carecall.toml")


def log(message: str) -> None:
    # One line whatever the peer put in its uniqueid or script (ivr.logsafe).
    sys.stderr.write(f"carecall-agi: {printable(message, limit=1000)}\n")
    sys.stderr.flush()


def run_call(agi: Any, store: Any, config: Any, clock: Any = time.time, journal: Any = None,
             sleep: Any = time.sleep) -> str:
    """Drive one dialog over a pyst2 ``AGI`` object; returns the outcome.

    Database down: as in the server, the dialog falls back to ``journal`` (an
    :class:`ivr.journal.CallJournal` on the site's data directory), fsynced before the
    worker hears the time; a running server (or ``carecall journal replay``) replays it.
    The PIN-guessing delay (``Wait``) simply blocks: this process serves one call.
    """
    from ivr.dialog import AppendJournal, CheckIn, Command, Dialog, Finished, Wait
    from ivr.phone import mask

    codec = AGIConnection(environment_received=True)
    dialog = Dialog(config, clock)
    action: Any = dialog.start(agi.env)

    def next_event() -> Any:
        while True:
            event = codec.next_event()
            if event is not NEED_DATA:
                return event
            line = agi.stdin.readline()
            codec.receive_data(line.encode("utf-8", "replace") if line else b"")

    while not isinstance(action, Finished):
        if isinstance(action, Command):
            try:
                data = codec.send(action.verb, *action.args)
            except LocalProtocolError as exc:
                action = dialog.fail(str(exc))
                continue
            try:
                agi.send_command(data.decode("utf-8").rstrip("\n"))
            except BrokenPipeError:
                action = dialog.hangup("stdout closed")
                continue
            try:
                event = next_event()
                if isinstance(event, Hangup):
                    # HANGUP is never the reply: the caller left; the dialog stops sending.
                    action = dialog.hangup("HANGUP from Asterisk")
                elif isinstance(event, Closed):
                    action = dialog.hangup("stdin closed")
                else:
                    action = dialog.send(event)
            except RemoteProtocolError as exc:
                log(f"call {dialog.uniqueid} protocol error: {exc}")
                action = dialog.hangup(f"protocol error: {exc}")
        elif isinstance(action, Wait):
            sleep(action.seconds)
            action = dialog.send(None)
        elif isinstance(action, AppendJournal):
            if journal is None:
                action = dialog.fail("database down and no journal configured")
                continue
            try:
                journalled = journal.append(action.effect)
            except OSError as exc:  # never "logged" for something that is not durable
                log(f"call {dialog.uniqueid} journal append failed: {type(exc).__name__}")
                action = dialog.fail("journal append failed")
            else:
                log(f"call {dialog.uniqueid} journalled: database unavailable, event {journalled.event_id} fsynced")
                action = dialog.send(journalled)
        elif isinstance(action, CheckIn) and journal is not None and journal.pending:
            # Journalled check-ins still wait for replay: this one queues behind them, so a
            # departure is never written before the arrival it closes (as in the server).
            action = dialog.effect_failed("journal not yet replayed")
        else:
            try:
                result = store.run(action)
            except Exception as exc:  # only the type: the text can hold the statement's parameters
                log(f"call {dialog.uniqueid} database error: {type(exc).__name__}")
                action = dialog.effect_failed(f"database error: {type(exc).__name__}")
            else:
                action = dialog.send(result)
        if action is None:  # only when a hang-up arrives during an effect, which cannot happen here
            action = Finished(dialog.recorded_outcome or "hangup", dialog.stage)
    if action.hang_up and codec.state == "idle":
        with contextlib.suppress(BrokenPipeError):
            agi.send_command("HANGUP")
    log(f"call {dialog.uniqueid} caller={mask(dialog.caller_e164)} script={dialog.script} "
        f"outcome={action.outcome} stage={action.stage}")
    return str(action.outcome)


def main(argv: list[str] | None = None) -> int:
    from asterisk.agi import AGI

    from carecall.config import ConfigError, load_settings
    from ivr.callstore import CallStore, MatchWindows
    from ivr.db import make_engine
    from ivr.dialog import DialogConfig
    from ivr.journal import CallJournal, directory_for
    from ivr.pins import PinHasher, load_or_create_key

    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="\n")
    devnull = open(os.devnull, "w")  # noqa: SIM115 - pyst2 keeps writing to it for the whole call
    try:
        agi = AGI(stdin=stdin, stdout=sys.stdout, stderr=devnull)
    except Exception as exc:
        log(f"could not read the AGI environment: {exc}")
        return 1
    try:
        config_file = os.environ.get("CARECALL_CONFIG") or (str(SYSTEM_CONFIG) if SYSTEM_CONFIG.exists() else None)
        settings = load_settings(config_file)
        engine = make_engine(settings.db_url)
        store = CallStore(engine, PinHasher(load_or_create_key(settings.secret_path)),
                          MatchWindows.from_settings(settings))
    except (ConfigError, OSError, RuntimeError) as exc:
        log(f"configuration error: {exc}")
        agi.send_command("HANGUP")
        return 1
    try:
        journal = CallJournal(directory_for(settings), store.hasher)
    except OSError as exc:
        log(f"journal unavailable ({type(exc).__name__}); a database failure will end the call unconfirmed")
        journal = None
    try:
        run_call(agi, store, DialogConfig.from_settings(settings), journal=journal)
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
