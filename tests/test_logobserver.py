"""The server's log writer batches info lines but never holds back a warning."""

from __future__ import annotations

import io

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher

from carecall.logobserver import BufferedTextLogObserver, CallLogger


def _setup() -> tuple[io.StringIO, Clock, Logger, BufferedTextLogObserver]:
    stream, clock = io.StringIO(), Clock()
    writer = BufferedTextLogObserver(stream, clock, delay=0.2)
    publisher = LogPublisher(writer)
    return stream, clock, Logger(namespace="carecall.agi", observer=publisher), writer


def test_info_lines_are_written_together_after_the_delay():
    stream, clock, log, _writer = _setup()
    log.info("call {uniqueid} stage={stage}", uniqueid="1.1", stage="pin")
    log.info("call {uniqueid} stage={stage}", uniqueid="1.1", stage="done")
    assert stream.getvalue() == ""
    clock.advance(0.2)
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "[carecall.agi#info] call 1.1 stage=pin", "[carecall.agi#info] call 1.1 stage=done"]


def test_a_warning_flushes_at_once_with_what_came_before():
    stream, _clock, log, _writer = _setup()
    log.info("call {uniqueid} stage={stage}", uniqueid="2.1", stage="pin")
    log.warn("call {uniqueid} journalled", uniqueid="2.1")
    assert stream.getvalue().count("\n") == 2 and "#warn] call 2.1 journalled" in stream.getvalue()


def test_twisted_format_syntax_still_renders_and_failures_keep_their_traceback():
    stream, _clock, log, writer = _setup()
    log.info("seconds={seconds:.2f} {f()}", seconds=1.234, f=lambda: "called")
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("effect failed")
    writer.flush()
    text = stream.getvalue()
    assert "seconds=1.23 called" in text and "ValueError: boom" in text


def test_events_below_the_minimum_level_are_dropped_by_the_writer():
    stream, clock = io.StringIO(), Clock()
    writer = BufferedTextLogObserver(stream, clock, min_level=LogLevel.warn)
    log = CallLogger(namespace="carecall.agi", observer=LogPublisher(writer))
    log.info("call {uniqueid} stage={stage}", uniqueid="3.1", stage="pin")
    log.debug("noise")
    log.error("call {uniqueid} failed", uniqueid="3.1")
    writer.flush()
    assert stream.getvalue().splitlines()[0].split(" ", 1)[1] == "[carecall.agi#error] call 3.1 failed"
    assert stream.getvalue().count("\n") == 1


def test_the_call_logger_emits_the_same_event_as_twisteds_logger():
    seen: list[dict] = []
    for cls in (Logger, CallLogger):
        cls(namespace="carecall.agi", observer=seen.append).info("call {uniqueid}", uniqueid="4.1")
    plain, fast = ({k: v for k, v in e.items() if k not in ("log_time", "log_logger")} for e in seen)
    assert plain == fast and fast["log_level"] is LogLevel.info and fast["uniqueid"] == "4.1"
