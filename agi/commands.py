"""``carecall simulate-call``: ring the FastAGI server without a phone."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from agi.simulator import HANGUP_MODES, CallScript, SimResult, simulate_blocking
from carecall.config import Settings
from ivr.clock import format_local


def describe(result: SimResult, settings: Settings) -> str:
    """What the caller heard, in words: the outcome as the worker would understand it."""
    p = settings.prompts
    played = result.played()
    said = result.said_time()
    when = format_local(dt.datetime.fromtimestamp(said, dt.UTC), settings.tz) if said is not None else "?"
    if result.error:
        return f"error: {result.error}"
    if p.arrival in played and said is not None:
        return f"arrival logged at {when}"
    if p.departure in played and said is not None:
        return f"departure logged at {when}"
    if p.no_reply in played:
        return "no reply reported to the office"
    if played and played[-1] == p.invalid:
        return "login failed: wrong worker number or PIN"
    if p.sorry in played:
        return "not recorded: the home or the visit was not found"
    if not result.server_hung_up:
        return "caller hung up before the end"
    return "call ended without a confirmation"


def cmd_simulate_call(args: argparse.Namespace, settings: Settings) -> int:
    digits = [d.strip() for d in args.digits.split(",")] if args.digits else []
    caller = args.caller.strip()
    call = CallScript(
        callerid=None if caller.lower() in ("", "withheld", "unknown", "anonymous") else caller,
        digits=digits,
        script=args.script,
        uniqueid=args.uniqueid,
        hangup_after=args.hangup_after,
        hangup_mode=args.hangup_mode,
        host=args.host or settings.agi_host,
        port=args.port or settings.agi_port,
    )
    host, port = call.host, call.port
    try:
        result = simulate_blocking(host, port, call, timeout=args.timeout)
    except OSError as exc:
        print(f"carecall simulate-call: cannot connect to FastAGI server at {host}:{port}: {exc}", file=sys.stderr)
        return 2
    print(f"call {result.uniqueid} from {caller or 'withheld'} to agi://{host}:{port}/{args.script}")
    for command, reply in result.transcript:
        print(f"  > {command}")
        print(f"  < {reply}" if reply else "  < (no reply: caller gone)")
    print(f"server {'closed the connection' if result.server_closed else 'did not close the connection'}")
    print(f"outcome: {describe(result, settings)}")
    return 0 if result.completed or (args.hangup_after and result.error is None) else 1


def register(sub: Any) -> None:
    p = sub.add_parser("simulate-call", help="act as Asterisk and ring the FastAGI server over TCP")
    p.add_argument("--from", dest="caller", default="", help='caller ID, e.g. "020 8698 9911" (empty = withheld)')
    p.add_argument("--digits", default="", help="DTMF for each GET DATA in order, comma-separated: 1001,1234")
    p.add_argument("--script", default="checkin", help="request path: checkin or noreply (default checkin)")
    p.add_argument("--uniqueid", help="Asterisk's uniqueid (default: a new one)")
    p.add_argument("--host", help="FastAGI host (default: agi_host setting)")
    p.add_argument("--port", type=int, help="FastAGI port (default: agi_port setting)")
    p.add_argument("--hangup-after", type=int, metavar="N", help="hang up when the Nth command arrives")
    p.add_argument("--hangup-mode", choices=HANGUP_MODES, default="hangup", help="how to hang up (default hangup)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the call to end")
    p.set_defaults(func=cmd_simulate_call)
