"""The call dialog, written once and free of I/O.

A :class:`Dialog` is fed the AGI environment, the reply to each command and the result
of each database effect, and answers every time with the next *action*: a
:class:`Command` to send to Asterisk, an effect (:class:`LookupLine`,
:class:`LookupPhoneCode`, :class:`CheckIn`, :class:`NoReplyCall`, :class:`RecordCall`)
for the driver to run against the database, or :class:`Finished`. The Twisted FastAGI
server, the pyst2 process script and the tests drive this same object, so the call flow
lives in exactly one place.

The dialog is a generator underneath (the flow reads top to bottom like the spec), but
only :class:`Dialog` is public. ``stage`` always says how far the call got; a caller who
hangs up at any point gets one ``hangup`` call record with that stage and nothing else.

Rules (issue 2): caller ID → resident line, else the resident's phone code (3 tries,
attendance not location-verified); worker number (≤ 8 digits, ``#`` ends) and PIN
(4 digits), 3 tries; the arrival/departure decision and recording are one effect
(:class:`CheckIn`, one transaction, see :mod:`ivr.callstore`); then the logged time is
spoken and we hang up. The resident's name is never spoken. Each prompt is played
*inside* ``GET DATA``: Asterisk discards DTMF typed between commands.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Generator, Mapping
from typing import Any

from agi.codec import DeadChannel, InvalidCommand, Result, UsageError
from ivr.models import CallOutcome, ReviewStatus
from ivr.phone import caller_e164

# "device": no landline; the home is proved by the code its verification device shows.
SCRIPTS = ("checkin", "noreply", "unanswered", "device")


class Mode:
    """How the worker was identified (``CheckIn.mode``): data, the decision is the same."""

    PIN = "pin"  # worker number + PIN keyed on an answered call
    UNANSWERED = "unanswered"  # the worker's own number (DDI) dialled; never answered, no PIN


class Stage:
    """How far a call got (``call_records.stage``), in dialog order."""

    CONNECTED = "connected"
    ANSWER = "answer"
    LINE = "line_lookup"
    PHONE_CODE = "phone_code"
    DEVICE_CODE = "device_code"
    WORKER_NUMBER = "worker_number"
    PIN = "pin"
    RECORDING = "recording"
    CONFIRMING = "confirming"
    DONE = "done"


# ---------------------------------------------------------------- actions


@dataclasses.dataclass(frozen=True)
class Command:
    """An AGI command for the driver to send; the dialog waits for its reply."""

    verb: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return " ".join((self.verb, *(repr(a) if a == "" else a for a in self.args)))


@dataclasses.dataclass(frozen=True)
class CallInfo:
    """What every record of this call needs, whatever its outcome."""

    uniqueid: str
    script: str
    started_at: dt.datetime
    caller_e164: str | None


@dataclasses.dataclass(frozen=True)
class LookupLine:
    """Effect: the residents registered on this landline → ``tuple[int, ...]``."""

    e164: str


@dataclasses.dataclass(frozen=True)
class LookupPhoneCode:
    """Effect: the resident with this phone code → ``tuple[int, ...]`` (0 or 1)."""

    code: str


@dataclasses.dataclass(frozen=True)
class CheckIn:
    """Effect: verify the PIN and, if right, log the arrival or departure with its call record.

    Returns :class:`LoginFailed` (and records a ``failed_login`` call when
    ``final_try``) or :class:`CheckedIn`.
    """

    call: CallInfo
    worker_number: str
    pin: str
    resident_ids: tuple[int, ...]
    location_verified: bool
    at: dt.datetime
    failed_attempts: int  # failures before this try
    final_try: bool
    # Set when the line lookup could not run (database down): the replay resolves the
    # home from the caller ID, else from this code, at the original time.
    phone_code: str | None = None
    # Set by a journal replay instead of ``pin`` (the journal never holds a PIN).
    pin_hash: str | None = None
    # Mode.UNANSWERED: the worker is the one whose unanswered_ddi is ``ddi_e164`` (and who
    # has the mode on); worker_number and pin are empty. Everything else is decided alike.
    mode: str = Mode.PIN
    ddi_e164: str | None = None
    # No landline: the code the home's verification device showed; the store finds the
    # home by it (ivr.devicecodes) and logs the attendance as verified by device.
    device_code: str | None = None
    # A check-in that is not a call (the worker's phone scanned the home's tag): how it
    # was logged, the worker already authenticated by their enrolled phone, and, for a
    # scan queued offline, when it reached the server.
    method: str = "phone"
    preauthenticated: bool = False
    entered_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class NoReplyCall:
    """Effect: verify the PIN, find the worker's due visit, record it and raise the alert.

    Returns :class:`LoginFailed`, :class:`NeedPhoneCode` (several visits due and no or
    an unmatched code) or :class:`NoReplyRecorded`.
    """

    call: CallInfo
    worker_number: str
    pin: str
    phone_code: str | None
    at: dt.datetime
    failed_attempts: int
    final_try: bool  # last login try: a wrong PIN is recorded as failed_login
    final_code: bool  # last phone-code try: no match is recorded as no_visit


@dataclasses.dataclass(frozen=True)
class RecordCall:
    """Effect: a call record alone (hang-up, unknown line, failed login, error) → its id."""

    call: CallInfo
    outcome: str
    stage: str
    at: dt.datetime
    worker_number_entered: str | None = None
    failed_pin_attempts: int = 0
    resident_id: int | None = None
    review_status: str = ReviewStatus.NONE
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class AppendJournal:
    """Effect: the database could not take ``effect``; append it to the local journal, fsynced → :class:`Journalled`.

    The driver hashes the PIN before anything reaches the disk (:mod:`ivr.journal`).
    """

    effect: CheckIn | RecordCall


@dataclasses.dataclass(frozen=True)
class Wait:
    """Effect: pause the call this long without blocking anyone else (PIN-guessing delay) → ``None``."""

    seconds: float


Effect = LookupLine | LookupPhoneCode | CheckIn | NoReplyCall | RecordCall | AppendJournal | Wait


@dataclasses.dataclass(frozen=True)
class Finished:
    """The dialog is over; the driver closes the connection. ``record`` is plain data for the board."""

    outcome: str
    stage: str
    record: Mapping[str, Any] | None = None
    hang_up: bool = False  # send HANGUP (without awaiting its reply) before closing


Action = Command | Effect | Finished


# ---------------------------------------------------------------- effect results


@dataclasses.dataclass(frozen=True)
class LoginFailed:
    call_record_id: int | None = None  # set when the failure was recorded (final try, or locked)
    delay: float = 0.0  # seconds to wait before saying "incorrect" (PIN-guessing slow-down)
    locked: bool = False  # this worker number is locked on this line: end the call


@dataclasses.dataclass(frozen=True)
class Journalled:
    """The check-in (or call record) is durable in the local journal, to be replayed."""

    event_id: str
    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class CheckedIn:
    """An arrival or departure logged (or, ``duplicate``, found logged by this uniqueid)."""

    direction: str  # "arrival" | "departure"
    at: dt.datetime  # the logged time (the original one for a duplicate)
    attendance_id: int
    visit_id: int | None
    attendance_kind: str  # scheduled | substitute | unscheduled
    call_record_id: int
    worker_id: int
    resident_id: int
    duplicate: bool = False


@dataclasses.dataclass(frozen=True)
class CodeRefused:
    """The device code opened no home (``no_match``), two (``ambiguous``) or was used (``used``)."""

    reason: str


@dataclasses.dataclass(frozen=True)
class NeedPhoneCode:
    candidates: int


@dataclasses.dataclass(frozen=True)
class NoReplyRecorded:
    call_record_id: int
    visit_id: int | None  # None: no visit due (outcome no_visit)
    worker_id: int
    resident_id: int | None
    alert_raised: bool


# ---------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class DialogConfig:
    """The settings the dialog reads (built from :class:`carecall.config.Settings`)."""

    prompts: Any
    region: str = "GB"
    digit_timeout_ms: int = 6000
    max_tries: int = 3
    worker_number_digits: int = 8
    pin_digits: int = 4
    phone_code_digits: int = 8
    unanswered_ring_seconds: float = 3.0  # logged: ring this long more (the worker hangs up), then end
    device_code_digits: int = 8

    @classmethod
    def from_settings(cls, settings: Any) -> DialogConfig:
        return cls(
            prompts=settings.prompts,
            region=settings.phone_region,
            digit_timeout_ms=settings.digit_timeout_ms,
            max_tries=settings.max_tries,
            unanswered_ring_seconds=settings.unanswered_ring_seconds,
        )


class CallerGone(Exception):
    """The caller hung up (HANGUP line, 511, ``result=-1``, closed socket or time limit)."""


class DialogError(Exception):
    """Something the dialog cannot go on from (bad environment, 510/520 replies)."""


class ServerShutdown(Exception):
    """The server is stopping and this call ran past the drain time: apologise, record, hang up."""


class EffectFailed(DialogError):
    """The database could not run the last effect (down, or a write failed)."""


def script_name(env: Mapping[str, str]) -> str | None:
    """Which dialog the call asks for: FastAGI's path, or process AGI's first argument."""
    if env.get("agi_network", "").lower() == "yes" or "agi_network_script" in env:
        name = env.get("agi_network_script", "")
    else:
        name = env.get("agi_arg_1", "")
    name = name.split("?", 1)[0].strip("/ ")
    return name or None


_Gen = Generator[Action, Any, Finished]


class DialogDriver:
    """The driving surface every dialog shares: check-in, alert call, notice, survey.

    The FastAGI server (and the pyst2 process script, and the tests) know only this:
    ``start(env)``, ``send(value)``, ``hangup(reason)``, ``shut_down(reason)``,
    ``fail(reason)``, ``effect_failed(reason)``, ``pending``, ``finished``. A dialog
    subclass writes its flow as the generator ``_run(env)``; how a caller's hang-up, a
    server shutdown or a refused command reaches that generator is decided here, once.
    """

    # What a shutdown throws into the flow at its next command. The check-in catches
    # ServerShutdown (apologise, record a cut call); a flow without that handler gets a
    # DialogError, so it records its own error and hangs up like any broken call.
    shutdown_error: type[Exception] = ServerShutdown

    def __init__(self) -> None:
        self.stage: str = Stage.CONNECTED
        self.pending: Any = None
        self.uniqueid: str | None = None
        self.caller_e164: str | None = None
        self.recorded_outcome: str | None = None
        self._gone: str | None = None
        self._cut: str | None = None  # shut_down(): applied at the next command
        self._cutting = False
        self._gen: Generator[Any, Any, Finished] | None = None

    def _run(self, env: Mapping[str, str]) -> Generator[Any, Any, Finished]:  # pragma: no cover - each has its own
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        return isinstance(self.pending, Finished)

    @property
    def awaiting_reply(self) -> bool:
        return isinstance(self.pending, Command)

    def start(self, env: Mapping[str, str]) -> Action:
        if self._gen is not None:
            raise RuntimeError("dialog already started")
        self._gen = self._run(env)
        return self._advance(lambda g: next(g))

    def send(self, value: Any) -> Action:
        if self._gen is None or self.pending is None or self.finished:
            raise RuntimeError("nothing is waiting for a value")
        return self._advance(lambda g: g.send(value))

    def hangup(self, reason: str = "hangup") -> Action | None:
        if self.finished:
            return self.pending
        if self._gen is None:
            self.pending = Finished(CallOutcome.HANGUP, self.stage)
            return self.pending
        if not isinstance(self.pending, Command):
            self._gone = self._gone or reason  # an effect is running: apply when it returns
            return None
        self._gone = reason
        return self._advance(lambda g: g.throw(CallerGone(reason)))

    def shut_down(self, reason: str = "server shutting down") -> Action | None:
        """The server is stopping: end this call at its next command (a command in flight, a
        database effect or a PIN delay finishes first; there is no way to interrupt Asterisk
        mid-command but hanging up). A call not yet logged gets a ``cut`` record (open for the
        office's review) and hears the ``not_logged`` prompt; a logged one is just hung up.
        Returns the next action when the dialog was idle between actions, else None."""
        if self.finished or self._cut is not None:
            return None
        self._cut = reason
        if self._gen is None:
            self.pending = Finished(CallOutcome.CUT, self.stage)
            return self.pending
        return None

    def fail(self, reason: str) -> Action:
        """Something we cannot go on from: record what we can and hang up."""
        if self.finished:
            return self.pending  # type: ignore[return-value]
        return self._advance(lambda g: g.throw(DialogError(reason)))

    def effect_failed(self, reason: str) -> Action:
        """The last effect could not run (database down): the dialog falls back to the journal."""
        if self.finished:
            return self.pending  # type: ignore[return-value]
        return self._advance(lambda g: g.throw(EffectFailed(reason)))

    def _advance(self, step: Callable[[_Gen], Action]) -> Action:
        assert self._gen is not None
        try:
            try:
                action = step(self._gen)
            except StopIteration as stop:
                action = stop.value
            if self._gone and isinstance(action, Command):
                # The caller left while a database effect ran: no more commands.
                try:
                    action = self._gen.throw(CallerGone(self._gone))
                except StopIteration as stop:
                    action = stop.value
            elif self._cut and not self._cutting and isinstance(action, Command):
                # Shutting down: this command is never sent; the generator apologises instead.
                self._cutting = True
                try:
                    action = self._gen.throw(self.shutdown_error(self._cut))
                except StopIteration as stop:
                    action = stop.value
        except (CallerGone, DialogError) as exc:
            # Raised while already handling one (e.g. the error record itself failed).
            action = Finished(self.recorded_outcome or CallOutcome.ERROR, self.stage, {"error": str(exc)})
        self.pending = action
        return action

    def _cmd(self, verb: str, *args: str) -> Generator[Action, Any, Result]:
        reply = yield Command(verb, args)
        if isinstance(reply, DeadChannel):
            raise CallerGone("511 dead channel")
        if isinstance(reply, InvalidCommand | UsageError):
            raise DialogError(f"Asterisk refused {verb}: {reply}")
        if not isinstance(reply, Result):
            raise DialogError(f"unexpected reply to {verb}: {reply!r}")
        return reply


class Dialog(DialogDriver):
    """One call's conversation. Feed it; it tells you what to do next.

    ``start(env)`` → first action. After a :class:`Command`, call ``send(reply)`` with
    the codec's reply event; after an effect, ``send(result)`` with its result.
    ``hangup(reason)`` when the caller is gone (HANGUP line, closed socket, time
    limit): it returns the next action, or ``None`` when an effect is in flight (the
    hang-up is taken into account as soon as that effect's result is sent).
    """

    def __init__(self, config: DialogConfig, clock: Callable[[], float]) -> None:
        super().__init__()
        self.config = config
        self._clock = clock
        self.script: str | None = None
        self.recorded = False
        self.record: Mapping[str, Any] | None = None
        self._call: CallInfo | None = None

    # ------------------------------------------------------------ helpers

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    def _get_data(self, prompt: str, maxdigits: int) -> Generator[Action, Any, str]:
        """``a&b``: ``a`` played first, then ``GET DATA b``. A real Asterisk's ``GET DATA`` takes one
        file only ("File a&b does not exist", ``result=-1``, read as a hang-up)."""
        *before, prompt = prompt.split("&")
        for part in before:
            yield from self._play(part)
        reply = yield from self._cmd("GET DATA", prompt, str(self.config.digit_timeout_ms), str(maxdigits))
        if reply.result == "-1":
            raise CallerGone("hang-up during GET DATA")
        digits = reply.result
        return digits if digits.isdigit() else ""

    def _play(self, prompt: str) -> Generator[Action, Any, None]:
        # result=-1 here means a missing sound file, not a hang-up (that comes as 511/HANGUP).
        # STREAM FILE plays one file: "a&b" is two commands.
        for part in prompt.split("&"):
            yield from self._cmd("STREAM FILE", part, "")

    def _record(self, outcome: str, **fields: Any) -> Generator[Action, Any, int | None]:
        assert self._call is not None
        fields.setdefault("stage", self.stage)
        effect = RecordCall(self._call, outcome, at=self.now(), **fields)
        try:
            record_id = yield effect
        except EffectFailed:
            journalled = yield AppendJournal(effect)
            self._mark_recorded(outcome, {"outcome": outcome, "journal_event": journalled.event_id})
            return None
        self._mark_recorded(outcome, {"outcome": outcome, "call_record_id": int(record_id)})
        return int(record_id)

    def _mark_recorded(self, outcome: str, record: Mapping[str, Any]) -> None:
        self.recorded = True
        self.recorded_outcome = outcome
        self.record = record

    def _hang_up(self, outcome: str, record: Mapping[str, Any] | None = None) -> _Gen:
        yield from self._cmd("HANGUP")
        return Finished(outcome, self.stage, record)

    # ------------------------------------------------------------ the flow

    def _run(self, env: Mapping[str, str]) -> _Gen:
        self.uniqueid = (env.get("agi_uniqueid") or "").strip()[:64] or None
        self.script = script_name(env)
        started = self.now()
        self.caller_e164 = caller_e164(env.get("agi_callerid"), self.config.region)
        state: dict[str, Any] = {"worker_number": None, "failures": 0}
        try:
            if self.uniqueid is None or "agi_request" not in env:
                raise DialogError("environment without agi_uniqueid or agi_request")
            if self.script not in SCRIPTS:
                self._call = CallInfo(self.uniqueid, (self.script or "")[:16], started, self.caller_e164)
                raise DialogError(f"unknown request path {self.script!r}")
            self._call = CallInfo(self.uniqueid, self.script, started, self.caller_e164)
            if self.script == "checkin":
                return (yield from self._checkin(state))
            if self.script == "unanswered":
                return (yield from self._unanswered(env))
            if self.script == "device":
                return (yield from self._device(state))
            return (yield from self._noreply(state))
        except ServerShutdown as cut:
            if self._call is not None and not self.recorded:
                # Every call the shutdown cuts leaves a record, open for the office: the
                # worker was told to ring again; if they do not, someone must follow it up.
                yield from self._record(
                    CallOutcome.CUT,
                    worker_number_entered=state["worker_number"],
                    failed_pin_attempts=state["failures"],
                    review_status=ReviewStatus.OPEN,
                    detail=f"{cut}: caller told the call was not logged",
                )
            try:
                if self.recorded_outcome == CallOutcome.CUT and self.script == "unanswered":
                    yield from self._cmd("EXEC", "Busy", "5")  # never answered: engaged tone, not a prompt
                elif self.recorded_outcome == CallOutcome.CUT:
                    yield from self._play(self.config.prompts.not_logged)
                return (yield from self._hang_up(self.recorded_outcome or CallOutcome.CUT, self.record))
            except CallerGone:
                return Finished(self.recorded_outcome or CallOutcome.CUT, self.stage, self.record)
        except CallerGone as gone:
            if self._call is not None and not self.recorded:
                yield from self._record(
                    CallOutcome.HANGUP,
                    worker_number_entered=state["worker_number"],
                    failed_pin_attempts=state["failures"],
                    detail=str(gone),
                )
            return Finished(self.recorded_outcome or CallOutcome.HANGUP, self.stage, self.record)
        except DialogError as exc:
            if self._call is not None and not self.recorded:
                yield from self._record(
                    CallOutcome.ERROR, review_status=ReviewStatus.NONE, detail=str(exc)[:500]
                )
            # Hang up without waiting: a peer that sent nonsense may never answer.
            return Finished(self.recorded_outcome or CallOutcome.ERROR, self.stage, {"error": str(exc)},
                            hang_up=not self._gone)

    def _login(self, state: dict[str, Any], effect: Callable[[str, str, int, bool], Any],
               after_pin: Callable[[], Generator[Action, Any, None]] | None = None) -> Generator[
        Action, Any, Any
    ]:
        """Worker number + PIN, up to max_tries; returns the effect's success or None after failure.

        ``after_pin`` asks for anything else the effect needs (the device code) once the
        PIN is typed, so the worker keys everything before the one database effect runs.
        """
        p = self.config.prompts
        max_tries = self.config.max_tries
        number_prompt = p.worker_number
        for attempt in range(1, max_tries + 1):
            final = attempt == max_tries
            self.stage = Stage.WORKER_NUMBER
            number = yield from self._get_data(number_prompt, self.config.worker_number_digits)
            state["worker_number"] = number or state["worker_number"]
            pin = ""
            if number:
                self.stage = Stage.PIN
                pin = yield from self._get_data(p.pin, self.config.pin_digits)
            if number and len(pin) == self.config.pin_digits:
                if after_pin is not None:
                    yield from after_pin()
                self.stage = Stage.RECORDING
                request = effect(number, pin, state["failures"], final)
                if isinstance(request, AppendJournal):  # the database was already found down
                    return (yield request)
                try:
                    result = yield request
                except EffectFailed:
                    if not isinstance(request, CheckIn):
                        raise
                    # Nothing was committed (one transaction): make it durable locally instead.
                    return (yield AppendJournal(request))
                if not isinstance(result, LoginFailed):
                    return result
                if result.call_record_id is not None:
                    self._mark_recorded(
                        CallOutcome.FAILED_LOGIN,
                        {"outcome": CallOutcome.FAILED_LOGIN, "call_record_id": result.call_record_id},
                    )
                if result.delay > 0:
                    yield Wait(result.delay)
                if result.locked:
                    break
            elif final:
                yield from self._record(
                    CallOutcome.FAILED_LOGIN,
                    worker_number_entered=state["worker_number"],
                    failed_pin_attempts=state["failures"] + 1,
                    review_status=ReviewStatus.OPEN,
                    resident_id=state.get("resident_id"),
                )
            state["failures"] += 1
            # "Login incorrect", then the question again, as one GET DATA prompt.
            number_prompt = f"{p.invalid}&{p.worker_number}"
        yield from self._play(p.invalid)
        return None

    def _checkin(self, state: dict[str, Any]) -> _Gen:
        p = self.config.prompts
        call = self._call
        assert call is not None
        self.stage = Stage.ANSWER
        reply = yield from self._cmd("ANSWER")
        if reply.result == "-1":
            raise CallerGone("ANSWER failed")
        residents: tuple[int, ...] = ()
        verified = False
        db_down = False  # a lookup failed: journal the raw facts, the replay decides
        phone_code: str | None = None
        if call.caller_e164:
            self.stage = Stage.LINE
            try:
                residents = tuple((yield LookupLine(call.caller_e164)))
            except EffectFailed:
                db_down = True
            verified = bool(residents)
        if not residents and not db_down:
            self.stage = Stage.PHONE_CODE
            prompt = p.phone_code
            for _ in range(self.config.max_tries):
                code = yield from self._get_data(prompt, self.config.phone_code_digits)
                if code:
                    try:
                        residents = tuple((yield LookupPhoneCode(code)))
                    except EffectFailed:
                        db_down, phone_code = True, code
                        break
                    if residents:
                        break
                prompt = f"{p.invalid}&{p.phone_code}"
            else:
                yield from self._record(CallOutcome.UNKNOWN_LINE, review_status=ReviewStatus.OPEN)
                yield from self._play(p.sorry)
                return (yield from self._hang_up(CallOutcome.UNKNOWN_LINE))
        if len(residents) == 1:
            state["resident_id"] = residents[0]

        def effect(number: str, pin: str, failures: int, final: bool) -> CheckIn | AppendJournal:
            request = CheckIn(call, number, pin, residents, verified, self.now(), failures, final,
                              phone_code=phone_code)
            return AppendJournal(request) if db_down else request

        result = yield from self._login(state, effect)
        return (yield from self._confirm(result, verified))

    def _confirm(self, result: Any, verified: bool) -> _Gen:
        """Say what was logged (or journalled) and the time, then hang up."""
        p = self.config.prompts
        if result is None:
            return (yield from self._hang_up(CallOutcome.FAILED_LOGIN))
        if isinstance(result, Journalled):
            # Durable on this server's disk (fsynced): the worker may hear "logged" and the time.
            record = {"outcome": CallOutcome.JOURNALLED, "journal_event": result.event_id,
                      "at": result.at.isoformat()}
            self._mark_recorded(CallOutcome.JOURNALLED, record)
            self.stage = Stage.CONFIRMING
            yield from self._play(p.journalled)
            yield from self._cmd("SAY TIME", str(int(result.at.timestamp())), "")
            yield from self._play(p.goodbye)
            self.stage = Stage.DONE
            return (yield from self._hang_up(CallOutcome.JOURNALLED, record))
        assert isinstance(result, CheckedIn)
        outcome = CallOutcome.DUPLICATE if result.duplicate else result.direction
        record = {
            "outcome": outcome,
            "direction": result.direction,
            "at": result.at.isoformat(),
            "attendance_id": result.attendance_id,
            "visit_id": result.visit_id,
            "attendance_kind": result.attendance_kind,
            "call_record_id": result.call_record_id,
            "worker_id": result.worker_id,
            "resident_id": result.resident_id,
            "location_verified": verified,
        }
        self._mark_recorded(outcome, record)
        self.stage = Stage.CONFIRMING
        yield from self._play(p.arrival if result.direction == "arrival" else p.departure)
        yield from self._cmd("SAY TIME", str(int(result.at.timestamp())), "")
        yield from self._play(p.goodbye)
        self.stage = Stage.DONE
        return (yield from self._hang_up(outcome, record))

    def _unanswered(self, env: Mapping[str, str]) -> _Gen:
        """The free check-in: never ANSWERed (the call costs nothing). The worker is named by
        the number they dialled (the dialplan's first argument), the home by the caller ID;
        no PIN. Logged: a few seconds more ringing, then the call ends. Not logged: engaged
        tone, so the worker knows to ring the check-in number instead."""
        call = self._call
        assert call is not None
        network = env.get("agi_network", "").lower() == "yes" or "agi_network_script" in env
        dialled = env.get("agi_arg_1" if network else "agi_arg_2", "")
        ddi = caller_e164(dialled, self.config.region)
        residents: tuple[int, ...] = ()
        db_down = False  # as for a PIN call: journal the facts, the replay decides the home
        if call.caller_e164 is not None:
            self.stage = Stage.LINE
            try:
                residents = tuple((yield LookupLine(call.caller_e164)))
            except EffectFailed:
                db_down = True
        if ddi is None or not (residents or db_down):
            why = ("no worker's number was dialled" if ddi is None else
                   "caller ID withheld" if call.caller_e164 is None else "caller ID is no resident's line")
            yield from self._record(CallOutcome.UNKNOWN_LINE, review_status=ReviewStatus.OPEN,
                                    detail=f"unanswered check-in: {why}")
            return (yield from self._engaged(CallOutcome.UNKNOWN_LINE))
        self.stage = Stage.RECORDING
        request = CheckIn(call, "", "", residents, True, self.now(), 0, True, mode=Mode.UNANSWERED, ddi_e164=ddi)
        if db_down:
            result = yield AppendJournal(request)
        else:
            try:
                result = yield request
            except EffectFailed:
                result = yield AppendJournal(request)  # nothing committed: durable locally instead
        if isinstance(result, Journalled):
            record = {"outcome": CallOutcome.JOURNALLED, "journal_event": result.event_id,
                      "at": result.at.isoformat(), "mode": Mode.UNANSWERED}
            self._mark_recorded(CallOutcome.JOURNALLED, record)
            return (yield from self._ring_then_end(CallOutcome.JOURNALLED, record))
        if isinstance(result, LoginFailed):
            if result.call_record_id is not None:
                self._mark_recorded(CallOutcome.FAILED_LOGIN, {"outcome": CallOutcome.FAILED_LOGIN,
                                                               "call_record_id": result.call_record_id})
            return (yield from self._engaged(CallOutcome.FAILED_LOGIN))
        assert isinstance(result, CheckedIn)
        outcome = CallOutcome.DUPLICATE if result.duplicate else result.direction
        record = {"outcome": outcome, "direction": result.direction, "at": result.at.isoformat(),
                  "attendance_id": result.attendance_id, "visit_id": result.visit_id,
                  "attendance_kind": result.attendance_kind, "call_record_id": result.call_record_id,
                  "worker_id": result.worker_id, "resident_id": result.resident_id, "location_verified": True,
                  "mode": Mode.UNANSWERED}
        self._mark_recorded(outcome, record)
        return (yield from self._ring_then_end(outcome, record))

    def _ring_then_end(self, outcome: str, record: Mapping[str, Any]) -> _Gen:
        self.stage = Stage.CONFIRMING
        if self.config.unanswered_ring_seconds > 0:
            yield from self._cmd("EXEC", "Wait", f"{self.config.unanswered_ring_seconds:g}")
        self.stage = Stage.DONE
        return (yield from self._hang_up(outcome, record))

    def _engaged(self, outcome: str) -> _Gen:
        yield from self._cmd("EXEC", "Busy", "5")
        return (yield from self._hang_up(outcome, self.record))

    def _device(self, state: dict[str, Any]) -> _Gen:
        """No landline: worker number, PIN, then the code the home's device shows.

        The same :class:`CheckIn` effect as a landline call, carrying the code instead of
        a line: the store finds the home by the code and makes the same decision.
        """
        p = self.config.prompts
        call = self._call
        assert call is not None
        self.stage = Stage.ANSWER
        reply = yield from self._cmd("ANSWER")
        if reply.result == "-1":
            raise CallerGone("ANSWER failed")
        state["code_tries"] = 0

        def ask_code(prompt: str = p.device_code) -> Generator[Action, Any, None]:
            self.stage = Stage.DEVICE_CODE
            state["device_code"] = yield from self._get_data(prompt, self.config.device_code_digits)
            state["code_tries"] += 1

        def effect(number: str, pin: str, failures: int, final: bool) -> CheckIn:
            state["pin"] = pin
            return CheckIn(call, number, pin, (), False, self.now(), failures, final,
                           device_code=state["device_code"])

        result = yield from self._login(state, effect, after_pin=ask_code)
        while isinstance(result, CodeRefused) and state["code_tries"] < self.config.max_tries:
            yield from self._play(p.invalid)  # GET DATA plays one file: "incorrect" first, on its own
            yield from ask_code()
            self.stage = Stage.RECORDING
            request = effect(state["worker_number"], state["pin"], state["failures"], True)
            try:
                result = yield request
            except EffectFailed:
                result = yield AppendJournal(request)
        if isinstance(result, CodeRefused):
            yield from self._record(CallOutcome.UNKNOWN_LINE, worker_number_entered=state["worker_number"],
                                    review_status=ReviewStatus.OPEN, detail=f"device code refused: {result.reason}")
            yield from self._play(p.sorry)
            return (yield from self._hang_up(CallOutcome.UNKNOWN_LINE))
        return (yield from self._confirm(result, verified=True))

    def _noreply(self, state: dict[str, Any]) -> _Gen:
        p = self.config.prompts
        call = self._call
        assert call is not None
        self.stage = Stage.ANSWER
        reply = yield from self._cmd("ANSWER")
        if reply.result == "-1":
            raise CallerGone("ANSWER failed")

        def effect(number: str, pin: str, failures: int, final: bool) -> NoReplyCall:
            state["pin"] = pin
            return NoReplyCall(call, number, pin, None, self.now(), failures, final, False)

        result = yield from self._login(state, effect)
        if result is None:
            return (yield from self._hang_up(CallOutcome.FAILED_LOGIN))
        if isinstance(result, NeedPhoneCode):
            self.stage = Stage.PHONE_CODE
            prompt = p.phone_code
            tries = self.config.max_tries
            for attempt in range(1, tries + 1):
                code = yield from self._get_data(prompt, self.config.phone_code_digits)
                result = yield NoReplyCall(
                    call, state["worker_number"], state["pin"], code, self.now(), state["failures"], False,
                    attempt == tries
                )
                if isinstance(result, NoReplyRecorded | LoginFailed):
                    break
                prompt = f"{p.invalid}&{p.phone_code}"
        if isinstance(result, LoginFailed):
            # Locked (or the PIN changed) between two effects of this call: a failed login.
            if result.call_record_id is not None:
                self._mark_recorded(CallOutcome.FAILED_LOGIN,
                                    {"outcome": CallOutcome.FAILED_LOGIN, "call_record_id": result.call_record_id})
            else:
                yield from self._record(CallOutcome.FAILED_LOGIN, worker_number_entered=state["worker_number"],
                                        failed_pin_attempts=state["failures"] + 1, review_status=ReviewStatus.OPEN)
            yield from self._play(p.invalid)
            return (yield from self._hang_up(CallOutcome.FAILED_LOGIN))
        if not isinstance(result, NoReplyRecorded):
            raise DialogError(f"no-reply call ended without a record: {type(result).__name__}")
        outcome = CallOutcome.NO_REPLY if result.visit_id is not None else CallOutcome.NO_VISIT
        record = {
            "outcome": outcome,
            "visit_id": result.visit_id,
            "call_record_id": result.call_record_id,
            "worker_id": result.worker_id,
            "resident_id": result.resident_id,
            "alert_raised": result.alert_raised,
        }
        self._mark_recorded(outcome, record)
        self.stage = Stage.CONFIRMING
        # What the worker hears is what the office got: "office told" whenever an alert is
        # stored for this call (with or without a matched visit), "sorry" only when not.
        yield from self._play(p.no_reply if result.alert_raised else p.sorry)
        self.stage = Stage.DONE
        return (yield from self._hang_up(outcome, record))
