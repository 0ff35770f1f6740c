"""The two outbound calls of issue 16, free of I/O: the lateness notice and the quality call.

Asterisk places the call (AMI ``Originate``, channel variables ``CARECALL_NOTICE_ID`` /
``CARECALL_SURVEY_ID``); when the resident answers, its dialplan runs
``AGI(agi://…/notice)`` or ``…/survey`` and the FastAGI server drives one of these
objects exactly as it drives :class:`ivr.dialog.Dialog`: ``start(env)``, then
``send(reply)`` after each :class:`~ivr.dialog.Command` and ``send(result)`` after each
effect, ``hangup()`` when the callee is gone. They speak through recorded prompts only
(the provider's name is its own sound file; :class:`OutboundPrompts`), never a name or a
time of the resident's, and they end with one effect that records what happened.

The notice (spec §5.26): "This is <provider>. Your care worker is running late. The
office knows and will call you if the visit changes." — played twice, in case the first
words were lost while the phone was lifted.

The quality call (spec §5.34): three questions answered 1–5 on the keypad (each asked
again once if nothing, or a key other than 1–5, came); every answer given is stored,
even when the callee hangs up before the end (``partial``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Generator, Mapping
from typing import Any
from urllib.parse import parse_qs

from ivr.dialog import CallerGone, DialogDriver, DialogError, Finished, script_name

NOTICE = "notice"
SURVEY = "survey"
QUESTIONS = ("on_time", "did_what_needed", "would_recommend")


@dataclasses.dataclass(frozen=True)
class OutboundPrompts:
    """Sound files (no extension). ``provider`` says "This is <provider name>"; the site records it."""

    provider: str = "carecall/provider-name"
    running_late: str = "carecall/worker-running-late"  # "Your care worker is running late. The office knows…"
    survey_intro: str = "carecall/survey-intro"  # "We would like to ask three questions about your care…"
    survey_questions: tuple[str, str, str] = ("carecall/survey-on-time", "carecall/survey-did-what-needed",
                                              "carecall/survey-recommend")
    thanks: str = "auth-thankyou"  # core sound: "Thank you."
    goodbye: str = "vm-goodbye"  # core sound: "Goodbye."


@dataclasses.dataclass(frozen=True)
class RecordNotice:
    """Effect: the notice call's outcome for the visit's history → ``None``."""

    notice_id: int
    outcome: str  # "played" | "hung_up" | "error"
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class RecordSurvey:
    """Effect: the quality call's answers (None = not answered) → ``None``."""

    survey_id: int
    answers: tuple[int | None, int | None, int | None]
    complete: bool
    detail: str = ""


_Gen = Generator[Any, Any, Finished]


def _id_from(env: Mapping[str, str]) -> int | None:
    """``…/notice?id=7`` or ``AGI(agi://…/notice,7)``; None → ask the channel variable."""
    query = env.get("agi_network_script", "").partition("?")[2]
    values = parse_qs(query).get("id", []) or [env.get("agi_arg_1", "")]
    text = (values[0] or "").strip()
    return int(text) if text.isdigit() and len(text) < 10 else None


class _Outbound(DialogDriver):
    """What the notice and the survey share beyond the driving (:class:`ivr.dialog.DialogDriver`)."""

    script = ""
    variable = ""
    # No apology flow of their own: a shutdown mid-call is recorded as a broken call and hung up.
    shutdown_error = DialogError

    def __init__(self, prompts: OutboundPrompts | None = None, digit_timeout_ms: int = 6000,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.prompts = prompts or OutboundPrompts()
        self.digit_timeout_ms = digit_timeout_ms
        self.clock = clock
        self.record_id: int | None = None  # the server's log line masks caller_e164; an outbound call has none

    def effect_failed(self, reason: str) -> Any:
        # The outcome could not be stored: the sender still has the AMI's answer to record.
        return self.fail(f"could not record the outcome: {reason}")

    def _play(self, prompt: str) -> Generator[Any, Any, None]:
        reply = yield from self._cmd("STREAM FILE", prompt, "")
        if reply.result == "-1" and not reply.endpos:
            # A missing sound file: the callee heard nothing of this part. Said in the record.
            self.missing.append(prompt)

    def _record_id(self, env: Mapping[str, str]) -> Generator[Any, Any, int]:
        found = _id_from(env)
        if found is None:
            reply = yield from self._cmd("GET VARIABLE", self.variable)
            text = (reply.data or "").strip() if reply.result == "1" else ""
            if not text.isdigit() or len(text) >= 10:
                raise DialogError(f"no {self.variable} on the channel")
            found = int(text)
        return found

    def _run(self, env: Mapping[str, str]) -> _Gen:
        self.missing: list[str] = []
        self.uniqueid = (env.get("agi_uniqueid") or "").strip()[:64] or None
        if script_name(env) != self.script or "agi_request" not in env:
            yield from self._cmd("HANGUP")
            return Finished("error", self.stage, {"error": f"not a {self.script} call"})
        try:
            self.record_id = yield from self._record_id(env)
        except (CallerGone, DialogError) as exc:
            return Finished("error", self.stage, {"error": str(exc)}, hang_up=True)
        return (yield from self._flow())

    def _flow(self) -> _Gen:  # pragma: no cover - each dialog has its own
        raise NotImplementedError


class NoticeDialog(_Outbound):
    """The lateness notice: provider's name, the message (twice), goodbye; the outcome recorded."""

    script = NOTICE
    variable = "CARECALL_NOTICE_ID"

    def _flow(self) -> _Gen:
        assert self.record_id is not None
        p = self.prompts
        try:
            self.stage = "answer"
            yield from self._cmd("ANSWER")
            self.stage = "message"
            for _ in range(2):
                yield from self._play(p.provider)
                yield from self._play(p.running_late)
            self.stage = "goodbye"
            yield from self._play(p.goodbye)
        except CallerGone as gone:
            heard = "" if self.stage in ("answer",) else f" during the {self.stage}"
            yield RecordNotice(self.record_id, "hung_up", f"the callee hung up{heard} ({gone})")
            return Finished("hangup", self.stage, {"notice_id": self.record_id})
        except DialogError as exc:
            yield RecordNotice(self.record_id, "error", str(exc)[:300])
            return Finished("error", self.stage, {"error": str(exc)}, hang_up=True)
        detail = f"missing sound files: {', '.join(self.missing)}" if self.missing else ""
        yield RecordNotice(self.record_id, "played", detail)
        self.stage = "done"
        with contextlib.suppress(CallerGone, DialogError):
            yield from self._cmd("HANGUP")
        return Finished("played", self.stage, {"notice_id": self.record_id})


class SurveyDialog(_Outbound):
    """The quality call: introduction, three 1–5 questions, thanks; whatever was answered is stored."""

    script = SURVEY
    variable = "CARECALL_SURVEY_ID"

    def _ask(self, prompt: str) -> Generator[Any, Any, int | None]:
        for _ in range(2):
            reply = yield from self._cmd("GET DATA", prompt, str(self.digit_timeout_ms), "1")
            if reply.result == "-1":
                raise CallerGone("hang-up during GET DATA")
            if reply.result in ("1", "2", "3", "4", "5"):
                return int(reply.result)
        return None

    def _flow(self) -> _Gen:
        assert self.record_id is not None
        p = self.prompts
        answers: list[int | None] = []
        try:
            self.stage = "answer"
            yield from self._cmd("ANSWER")
            self.stage = "intro"
            yield from self._play(p.provider)
            yield from self._play(p.survey_intro)
            for i, prompt in enumerate(p.survey_questions):
                self.stage = QUESTIONS[i]
                answers.append((yield from self._ask(prompt)))
        except (CallerGone, DialogError) as exc:
            padded = ([*answers, None, None, None])[:3]
            yield RecordSurvey(self.record_id, (padded[0], padded[1], padded[2]), False,
                               f"ended at {self.stage}: {exc}"[:300])
            return Finished("hangup" if isinstance(exc, CallerGone) else "error", self.stage,
                            {"survey_id": self.record_id}, hang_up=isinstance(exc, DialogError))
        complete = all(a is not None for a in answers)
        yield RecordSurvey(self.record_id, (answers[0], answers[1], answers[2]), complete,
                           "" if complete else "a question was not answered with 1 to 5")
        self.stage = "done"
        try:
            yield from self._play(p.thanks)
            yield from self._cmd("HANGUP")
        except (CallerGone, DialogError):
            pass
        return Finished("answered", self.stage, {"survey_id": self.record_id})


DIALOGS: dict[str, type[_Outbound]] = {NOTICE: NoticeDialog, SURVEY: SurveyDialog}
