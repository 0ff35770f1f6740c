"""The on-call alert call, sans-IO: what the person we rang hears and what their keys do.

The escalation chain (:mod:`scheduler.chain`) rings a phone through the AMI; when it is
answered Asterisk runs ``AGI(agi://…/alert?alert=ID&delivery=ID)`` and the FastAGI
server drives this dialog, exactly as it drives the check-in (:class:`ivr.dialog.Dialog`,
whose driving machinery this class reuses; only the flow differs):

1. :class:`AlertCallStarted` — the call itself is the proof it reached someone: the
   delivery is marked answered; returns an :class:`AlertBrief` (or ``None``: no such alert).
2. If someone already took the alert: say so, goodbye. Otherwise say what happened
   (a prompt per kind), when (``SAY TIME``) and the resident *reference*, character by
   character (``SAY ALPHA``/``SAY DIGITS``); the resident's name is never spoken.
3. "Press 1 to accept, press 2 to pass it on" (``GET DATA``, 1 digit, a few tries; a key
   pressed while the facts are read counts too).
4. 1 → the user's 4-digit phone PIN → :class:`AcceptAlert` (acknowledged as that user,
   history "accepted by phone"); 2 → :class:`PassAlertOn` (the chain rings the next
   person now); nothing, wrong PIN three times or a hang-up → :class:`AlertCallEnded`
   (the chain moves on after its timer).

Every prompt is a sound name from Debian's ``asterisk-core-sounds-en`` by default and can
be replaced in ``[alert_prompts]`` (sites should record "press 1 to accept …").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Generator, Mapping
from typing import Any

from ivr.dialog import Action, CallerGone, CallInfo, Dialog, DialogError, Finished, script_name
from ivr.phone import caller_e164

SCRIPT = "alert"

DEFAULT_KIND_PROMPTS: dict[str, str] = {
    "no_reply": "number-not-answering",  # "the number you have dialled is not answering"
}


@dataclasses.dataclass(frozen=True)
class AlertPrompts:
    """``[alert_prompts]``: sound names (``&`` joins several). Defaults ship in asterisk-core-sounds-en."""

    intro: str = "vm-Urgent"  # "urgent"
    kind_default: str = ""  # said after intro for kinds not in ``kinds`` ("" = nothing)
    kinds: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_KIND_PROMPTS))
    when: str = "vm-received"  # "received", then SAY TIME of the deadline
    resident: str = "vm-from"  # "from", then the resident reference character by character
    menu: str = "if-correct-press&digits/1&vm-press&digits/2&vm-for&vm-next"  # "press 1 …, press 2 for next"
    pin: str = "agent-pass"  # "please enter your password"
    invalid_pin: str = "auth-incorrect"
    invalid_key: str = "pm-invalid-option"
    accepted: str = "auth-thankyou"
    passed_on: str = "auth-thankyou"
    already_handled: str = "cancelled"  # someone else took it while the phone rang
    goodbye: str = "vm-goodbye"

    def for_kind(self, kind: str) -> str:
        return self.kinds.get(kind, self.kind_default)


@dataclasses.dataclass(frozen=True)
class AlertDialogConfig:
    prompts: AlertPrompts = dataclasses.field(default_factory=AlertPrompts)
    digit_timeout_ms: int = 6000
    menu_tries: int = 3
    pin_tries: int = 3
    pin_digits: int = 4
    region: str = "GB"


# ---------------------------------------------------------------- effects and results


@dataclasses.dataclass(frozen=True)
class AlertCallStarted:
    """Effect: the rung phone is in our dialog; mark the delivery answered → :class:`AlertBrief` | None."""

    alert_id: int
    delivery_id: int
    uniqueid: str
    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class AcceptAlert:
    """Effect: check the called user's phone PIN; right → the alert acknowledged by them."""

    alert_id: int
    delivery_id: int
    pin: str
    at: dt.datetime
    final_try: bool


@dataclasses.dataclass(frozen=True)
class PassAlertOn:
    """Effect: the person declined ("pass it on"): the chain rings the next person now → None."""

    alert_id: int
    delivery_id: int
    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class AlertCallEnded:
    """Effect: the call ended without an answer to the question (``how`` says why) → None."""

    alert_id: int
    delivery_id: int
    at: dt.datetime
    how: str


AlertEffect = AlertCallStarted | AcceptAlert | PassAlertOn | AlertCallEnded


@dataclasses.dataclass(frozen=True)
class AlertBrief:
    kind: str
    due_at: dt.datetime
    resident_ref: str  # "" when the alert has no resident (a failed-login alert)
    open: bool  # False: already acknowledged or resolved
    handled_by: str = ""


@dataclasses.dataclass(frozen=True)
class Accepted:
    by: str


@dataclasses.dataclass(frozen=True)
class PinRejected:
    pass


@dataclasses.dataclass(frozen=True)
class AlreadyHandled:
    by: str


class Outcome:
    ACCEPTED = "accepted"
    PASSED_ON = "passed_on"
    NO_KEY = "no_key"
    WRONG_PIN = "wrong_pin"
    ALREADY_HANDLED = "already_handled"
    HANGUP = "hangup"
    ERROR = "error"


def alert_args(env: Mapping[str, str]) -> tuple[int, int] | None:
    """``alert`` and ``delivery`` from the script's query string (``alert?alert=12&delivery=34``)."""
    raw = env.get("agi_network_script", "") or env.get("agi_arg_1", "")
    query = urllib.parse.parse_qs(raw.partition("?")[2])
    try:
        return int(query["alert"][0]), int(query["delivery"][0])
    except (KeyError, IndexError, ValueError):
        return None


_Gen = Generator[Action, Any, Finished]


class AlertDialog(Dialog):
    """One answered alert call. Driven like :class:`ivr.dialog.Dialog` (start/send/hangup)."""

    def __init__(self, config: AlertDialogConfig, clock: Any) -> None:
        super().__init__(config, clock)  # type: ignore[arg-type]
        self.alert_config = config
        self.alert_id: int | None = None
        self.delivery_id: int | None = None

    def _tell(self, prompt: str) -> Generator[Action, Any, str]:
        """Play (``a&b``: one STREAM FILE each, Asterisk plays one file per command); a 1 or 2
        pressed meanwhile stops it and is returned (the person knows already)."""
        for part in prompt.split("&") if prompt else ():
            reply = yield from self._cmd("STREAM FILE", part, "12")
            key = _key(reply.result)
            if key:
                return key
        return ""

    def _menu(self, prompt: str) -> Generator[Action, Any, str]:
        """The question: every part but the last played with 1 and 2 as escapes, then ``GET DATA`` the last."""
        *before, last = prompt.split("&")
        key = yield from self._tell("&".join(before))
        if key:
            return key
        return (yield from self._get_data(last, 1))

    def _say(self, verb: str, value: str) -> Generator[Action, Any, str]:
        reply = yield from self._cmd(verb, value, "12")
        return _key(reply.result)

    def _ended(self, how: str, outcome: str) -> Generator[Action, Any, None]:
        assert self.alert_id is not None and self.delivery_id is not None
        self.recorded = True
        self.recorded_outcome = outcome
        yield AlertCallEnded(self.alert_id, self.delivery_id, self.now(), how)

    def _bye(self, prompt: str, outcome: str) -> _Gen:
        p = self.alert_config.prompts
        yield from self._play(f"{prompt}&{p.goodbye}" if prompt else p.goodbye)
        self.stage = "done"
        yield from self._cmd("HANGUP")
        return Finished(outcome, self.stage, self._result(outcome))

    def _result(self, outcome: str) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "delivery_id": self.delivery_id, "outcome": outcome}

    def _run(self, env: Mapping[str, str]) -> _Gen:  # type: ignore[override]
        cfg = self.alert_config
        p = cfg.prompts
        self.uniqueid = (env.get("agi_uniqueid") or "").strip()[:64] or None
        self.script = script_name(env)
        self.caller_e164 = caller_e164(env.get("agi_callerid"), cfg.region)
        self._call = CallInfo(self.uniqueid or "", SCRIPT, self.now(), self.caller_e164)
        ids = alert_args(env)
        if self.uniqueid is None or ids is None:
            return Finished(Outcome.ERROR, self.stage, {"error": "alert call without alert and delivery ids"},
                            hang_up=True)
        self.alert_id, self.delivery_id = ids
        try:
            self.stage = "answer"
            yield from self._cmd("ANSWER")
            self.stage = "loading"
            brief = yield AlertCallStarted(self.alert_id, self.delivery_id, self.uniqueid, self.now())
            if brief is None or not brief.open:
                self.recorded, self.recorded_outcome = True, Outcome.ALREADY_HANDLED
                return (yield from self._bye(p.already_handled, Outcome.ALREADY_HANDLED))
            self.stage = "telling"
            key = yield from self._tell(p.intro)
            key = key or (yield from self._tell(p.for_kind(brief.kind)))
            key = key or (yield from self._tell(p.when))
            key = key or (yield from self._say("SAY TIME", str(int(brief.due_at.timestamp()))))
            if brief.resident_ref:
                key = key or (yield from self._tell(p.resident))
                verb = "SAY DIGITS" if brief.resident_ref.isdigit() else "SAY ALPHA"
                key = key or (yield from self._say(verb, brief.resident_ref))
            prompt = p.menu
            for _ in range(cfg.menu_tries):
                if not key:
                    self.stage = "menu"
                    key = yield from self._menu(prompt)
                if key == "1":
                    return (yield from self._accept())
                if key == "2":
                    self.stage = "passing"
                    self.recorded, self.recorded_outcome = True, Outcome.PASSED_ON
                    yield PassAlertOn(self.alert_id, self.delivery_id, self.now())
                    return (yield from self._bye(p.passed_on, Outcome.PASSED_ON))
                prompt = f"{p.invalid_key}&{p.menu}" if key else p.menu
                key = ""
            yield from self._ended("no key pressed", Outcome.NO_KEY)
            return (yield from self._bye("", Outcome.NO_KEY))
        except CallerGone as gone:
            if not self.recorded:
                yield from self._ended(f"hung up ({self.stage})", Outcome.HANGUP)
            return Finished(self.recorded_outcome or Outcome.HANGUP, self.stage,
                            self._result(self.recorded_outcome or Outcome.HANGUP) | {"why": str(gone)})
        except DialogError as exc:
            if not self.recorded and self.stage not in ("answer", "connected"):
                yield from self._ended(f"call failed: {str(exc)[:200]}", Outcome.ERROR)
            return Finished(Outcome.ERROR, self.stage, {"error": str(exc)}, hang_up=not self._gone)

    def _accept(self) -> _Gen:
        cfg = self.alert_config
        p = cfg.prompts
        assert self.alert_id is not None and self.delivery_id is not None
        prompt = p.pin
        for attempt in range(1, cfg.pin_tries + 1):
            self.stage = "pin"
            pin = yield from self._get_data(prompt, cfg.pin_digits)
            if len(pin) == cfg.pin_digits:
                self.stage = "accepting"
                result = yield AcceptAlert(self.alert_id, self.delivery_id, pin, self.now(),
                                           attempt == cfg.pin_tries)
                if isinstance(result, Accepted):
                    self.recorded, self.recorded_outcome = True, Outcome.ACCEPTED
                    return (yield from self._bye(p.accepted, Outcome.ACCEPTED))
                if isinstance(result, AlreadyHandled):
                    self.recorded, self.recorded_outcome = True, Outcome.ALREADY_HANDLED
                    return (yield from self._bye(p.already_handled, Outcome.ALREADY_HANDLED))
            prompt = f"{p.invalid_pin}&{p.pin}"
        yield from self._ended(f"wrong PIN {cfg.pin_tries} times", Outcome.WRONG_PIN)
        return (yield from self._bye(p.invalid_pin, Outcome.WRONG_PIN))


def _key(result: str) -> str:
    """STREAM FILE / SAY … answer ``result=<ASCII code>`` when an escape digit stopped them."""
    if result.isdigit() and result not in ("0",):
        char = chr(int(result))
        return char if char in "12" else ""
    return ""
