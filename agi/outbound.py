"""Outbound calls (alerts, notices, surveys): an AMI ``Originate`` whose outcome is the call's own.

``Originate`` with ``Async: true`` is answered at once with ``Response: Success`` —
"Originate successfully queued" — which says nothing about the phone. What happened to
the call arrives later as an ``OriginateResponse`` event carrying the same ``ActionID``:
``Response: Success`` with ``Reason: 4`` (answered; the channel then runs our dialplan
context, which hands it to the FastAGI server), or ``Response: Failure`` with the
reason: 0 failed (no such channel type, unroutable), 1 hung up, 3 no answer (still
ringing at the timeout), 5 busy, 8 congestion. :class:`OriginateSession` waits for that
event; only it decides the :class:`OriginateResult`. Asterisk merely queueing the call is
never reported as delivered.

Layers: :class:`OriginateSession` is sans-IO (AMI messages in, bytes out, a result at
the end: tested with transcripts); :class:`AmiOriginateProtocol` moves its bytes over a
Twisted TCP connection and keeps its timers; :class:`Originator` is what features use::

    originator = Originator(settings.table("ami"), reactor)
    result = yield originator.originate(OutboundCall("07700900123", "alert", {"alert": "12"}))
    if result.answered: ...

One TCP session per call (login, originate, wait, logoff): outbound calls are rare
(an alert, a batch of notices), a session of its own cannot be confused by another
call's events, and there is no long-lived connection to watch and re-open. The answered
channel runs the dialplan context ``[ami] context`` (shipped in
``asterisk-config/extensions_alerts.conf``) with ``CARECALL_SCRIPT`` and ``CARECALL_ARGS``
set, i.e. ``AGI(${CARECALL_AGI}/${CARECALL_SCRIPT}?${CARECALL_ARGS})``: the FastAGI server
picks the dialog for that script from its registry (:mod:`agi.scripts`).

Why not pyst2's ``asterisk.manager``: it is blocking (a thread per call for the whole
ringing time) and its reader thread races the writer (docs/benchmarks NOTES: a refused
login can surface as "I/O operation on closed file"), and it has no way to wait for the
event an action caused.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from agi.ami import (
    REASON_ANSWERED,
    REASON_FAILED,
    AmiConnection,
    AmiProtocolError,
    Message,
    reason_word,
)
from carecall.config import ConfigError, register_table
from ivr.phone import mask

log = Logger(namespace="carecall.outbound")
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
_SCRIPT = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


@register_table("ami")
@dataclasses.dataclass(frozen=True)
class AmiConfig:
    """``[ami]``: how carecall reaches Asterisk's Manager Interface to place outbound calls."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "carecall"
    secret: str = ""
    # The channel that rings the person; {number} is the number to ring (digits, maybe +).
    channel: str = "PJSIP/{number}@carecall-trunk"
    # The dialplan run once they answer (extensions_alerts.conf): it starts our FastAGI script.
    context: str = "carecall-outbound"
    exten: str = "s"
    priority: int = 1
    caller_id: str = "carecall"
    # How a stored E.164 number is written into {number}: "national" (07700 900123 → 07700900123),
    # "e164" (+447700900123) or "digits" (447700900123), as the carrier expects.
    number_format: str = "national"
    ring_seconds: int = 30  # Originate Timeout: how long the phone rings before "no answer"
    connect_timeout: float = 5.0
    # How long after the ring time we still wait for the OriginateResponse before giving up.
    response_grace_seconds: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"[ami] port must be 1-65535, got {self.port}")
        if "{number}" not in self.channel:
            raise ConfigError("[ami] channel must contain {number}, e.g. PJSIP/{number}@carecall-trunk")
        if not 5 <= self.ring_seconds <= 300:
            raise ConfigError(f"[ami] ring_seconds must be 5-300, got {self.ring_seconds}")
        if self.connect_timeout <= 0 or self.response_grace_seconds <= 0:
            raise ConfigError("[ami] connect_timeout and response_grace_seconds must be positive")
        if not self.context or not self.exten:
            raise ConfigError("[ami] context and exten must be set")
        if self.number_format not in ("national", "e164", "digits"):
            raise ConfigError(f"[ami] number_format must be national, e164 or digits, got {self.number_format!r}")

    def dial_number(self, e164: str) -> str:
        """The stored E.164 number as the trunk wants it in the channel string."""
        if self.number_format == "e164":
            return e164
        if self.number_format == "digits":
            return e164.lstrip("+")
        import phonenumbers

        try:
            parsed = phonenumbers.parse(e164, None)
        except phonenumbers.NumberParseException:
            return e164.lstrip("+")
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        return re.sub(r"[^0-9+]", "", national)


@dataclasses.dataclass(frozen=True)
class OutboundCall:
    """Ring ``number``; once answered, run FastAGI script ``script`` with ``args`` (its query string)."""

    number: str
    script: str
    args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    caller_id: str = ""  # default: [ami] caller_id
    channel: str = ""  # default: [ami] channel (tests ring a Local channel instead)

    def __post_init__(self) -> None:
        # The number goes into a channel string, where "&" would dial a second channel.
        if not _NUMBER.match(self.number):
            raise ValueError("an outbound number must be 3-20 digits, optionally after +")
        if not _SCRIPT.match(self.script):
            raise ValueError(f"bad script name {self.script!r}")


@dataclasses.dataclass(frozen=True)
class OriginateResult:
    """What happened to the call. ``answered`` only when Asterisk said the far end answered."""

    answered: bool
    outcome: str  # answered | no answer | busy | congestion | hung up | failed | refused | unreachable | timeout
    reason: int | None = None
    detail: str = ""
    uniqueid: str = ""
    channel: str = ""

    def describe(self) -> str:
        return self.outcome + (f" ({self.detail})" if self.detail else "")


def originate_headers(cfg: AmiConfig, call: OutboundCall) -> dict[str, Any]:
    """The Originate action's headers (without ActionID)."""
    query = urllib.parse.urlencode(dict(call.args))
    if "," in query or "," in call.script:  # Asterisk splits Variable values on commas
        raise ValueError("outbound call arguments cannot contain commas")
    return {
        "Channel": (call.channel or cfg.channel).format(number=call.number),
        "Context": cfg.context,
        "Exten": cfg.exten,
        "Priority": str(cfg.priority),
        "CallerID": call.caller_id or cfg.caller_id,
        "Timeout": str(cfg.ring_seconds * 1000),
        "Async": "true",
        "Variable": [f"CARECALL_SCRIPT={call.script}", f"CARECALL_ARGS={query}"],
    }


class OriginateSession:
    """Sans-IO: one AMI session that logs in, originates, waits for the outcome and logs off.

    Feed it bytes with :meth:`receive`; it returns the bytes to send. When ``result`` is
    set the exchange is over (the caller closes the connection after sending what
    :meth:`receive` returned, which then includes the Logoff).
    """

    def __init__(self, username: str, secret: str, headers: Mapping[str, Any], id_prefix: str = "carecall") -> None:
        self.conn = AmiConnection(id_prefix)
        self.username = username
        self.secret = secret
        self.headers = dict(headers)
        self.state = "banner"  # banner → login → originate → waiting → done
        self.result: OriginateResult | None = None
        self._login_id = ""
        self._originate_id = ""
        self.queued = False  # Asterisk took the Originate (not an outcome!)

    def receive(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        try:
            banner_before = self.conn.banner
            self.conn.receive_data(data)
            if banner_before is None and self.conn.banner is not None and self.state == "banner":
                self.state = "login"
                # Events: call is the class OriginateResponse belongs to; nothing else is wanted.
                self._login_id, login = self.conn.send(
                    "Login", {"Username": self.username, "Secret": self.secret, "Events": "call"})
                out.append(login)
            for msg in self.conn.messages():
                out.extend(self._message(msg))
        except AmiProtocolError as exc:
            self._finish(OriginateResult(False, "failed", REASON_FAILED, f"AMI protocol error: {exc}"))
        return out

    def _message(self, msg: Message) -> list[bytes]:
        if self.result is not None:
            return []
        if self.state == "login" and msg.action_id == self._login_id and msg.response:
            if msg.response.lower() != "success":
                # Asterisk closes the session itself after a refused login.
                self._finish(OriginateResult(False, "refused", None, f"AMI login: {msg.get('Message')}"))
                return []
            self.state = "originate"
            self._originate_id, action = self.conn.send("Originate", self.headers)
            return [action]
        if self.state == "originate" and msg.action_id == self._originate_id and msg.response:
            if msg.response.lower() != "success":
                # Refused before any call existed: no such extension/context, no permission.
                return self._done(OriginateResult(False, "refused", None, f"Originate: {msg.get('Message')}"))
            self.queued = True
            self.state = "waiting"
            return []
        if self.state in ("originate", "waiting") and msg.event.lower() == "originateresponse" \
                and msg.action_id == self._originate_id:
            return self._done(self._outcome(msg))
        return []

    @staticmethod
    def _outcome(msg: Message) -> OriginateResult:
        raw = msg.get("Reason")
        reason = int(raw) if raw.lstrip("-").isdigit() else None
        uniqueid = msg.get("Uniqueid")
        if uniqueid in ("<null>", "<unknown>"):
            uniqueid = ""
        channel = msg.get("Channel")
        answered = msg.response.lower() == "success" and reason == REASON_ANSWERED
        word = "answered" if answered else reason_word(reason)
        if not answered and word == "answered":  # Failure with reason 4: treat as failed, keep the code
            word = "failed"
        return OriginateResult(answered, word, reason, "", uniqueid, channel)

    def _done(self, result: OriginateResult) -> list[bytes]:
        self._finish(result)
        _, logoff = self.conn.send("Logoff")
        return [logoff]

    def _finish(self, result: OriginateResult) -> None:
        if self.result is None:
            self.result = result
            self.state = "done"

    def timed_out(self, what: str) -> OriginateResult:
        """The clock ran out (no banner, no reply, no OriginateResponse): the outcome is unknown = failed."""
        if self.result is None:
            detail = what if not self.queued else f"{what} (Asterisk queued the call; no outcome came)"
            self._finish(OriginateResult(False, "timeout", None, detail))
        assert self.result is not None
        return self.result


class AmiOriginateProtocol(Protocol):
    """Moves one :class:`OriginateSession`'s bytes; fires ``factory.done`` with the result exactly once."""

    def __init__(self, factory: _OriginateFactory) -> None:
        self.factory = factory
        self.session = factory.session
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        f = self.factory
        self._timer = f.clock.callLater(f.cfg.connect_timeout + f.cfg.ring_seconds + f.cfg.response_grace_seconds,
                                        self._timeout)

    def dataReceived(self, data: bytes) -> None:
        for chunk in self.session.receive(data):
            self.transport.write(chunk)  # type: ignore[union-attr]
        if self.session.result is not None:
            self._cancel()
            self.factory.finish(self.session.result)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _timeout(self) -> None:
        self._timer = None
        self.factory.finish(self.session.timed_out("no answer from Asterisk's AMI in time"))
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._cancel()
        if self.session.result is None:
            why = "Asterisk closed the AMI session"
            if self.session.queued:
                why += " after queueing the call; its outcome is unknown"
            self.session.timed_out(why)
            self.factory.finish(OriginateResult(False, "failed", None, why))


class _OriginateFactory(ClientFactory):
    protocol = AmiOriginateProtocol  # type: ignore[assignment]

    def __init__(self, cfg: AmiConfig, session: OriginateSession, clock: Any) -> None:
        self.cfg = cfg
        self.session = session
        self.clock = clock
        self.deferred: Deferred[OriginateResult] = Deferred()
        self._fired = False

    def buildProtocol(self, addr: Any) -> AmiOriginateProtocol:
        return AmiOriginateProtocol(self)

    def finish(self, result: OriginateResult) -> None:
        if not self._fired:
            self._fired = True
            self.deferred.callback(result)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.finish(OriginateResult(False, "unreachable", None,
                                    f"AMI {self.cfg.host}:{self.cfg.port}: {reason.getErrorMessage()}"))


class Originator:
    """Places outbound calls through the AMI. ``originate`` never errbacks: every failure is a result."""

    def __init__(self, cfg: AmiConfig, reactor: Any) -> None:
        self.cfg = cfg
        self.reactor = reactor

    def originate(self, call: OutboundCall) -> Deferred[OriginateResult]:
        session = OriginateSession(self.cfg.username, self.cfg.secret, originate_headers(self.cfg, call))
        factory = _OriginateFactory(self.cfg, session, self.reactor)
        self.reactor.connectTCP(self.cfg.host, self.cfg.port, factory, timeout=self.cfg.connect_timeout)
        d = factory.deferred

        def logged(result: OriginateResult) -> OriginateResult:
            log.info("outbound {script} call to {number}: {outcome}", script=call.script,
                     number=mask(call.number), outcome=result.describe())
            return result

        return d.addCallback(logged)


