"""Outbound calls: the AMI parser, the Originate exchange as transcripts, and the Twisted client over TCP.

The outcome of a call is the ``OriginateResponse`` event with the Originate's ActionID,
never the immediate "Originate successfully queued". (Against a real Asterisk:
tests/test_alert_chain_asterisk.py.)
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from agi.ami import AmiConnection, AmiProtocolError, encode_action
from agi.outbound import AmiConfig, OriginateSession, Originator, OutboundCall, originate_headers
from carecall.config import ConfigError, parse_table
from tests.pg import free_port
from tests.test_alerts_servers import AmiServer

BANNER = b"Asterisk Call Manager/9.0.0\r\n"


def block(**headers: str) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"


def test_parser_takes_any_chunking_and_keeps_repeated_keys():
    data = BANNER + b"Response: Success\r\nActionID: x-1\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n" \
        + block(Event="OriginateResponse", ActionID="x-2", Reason="3")
    for size in (1, 3, 7, len(data)):
        conn = AmiConnection()
        for i in range(0, len(data), size):
            conn.receive_data(data[i:i + size])
        first, second = list(conn.messages())
        assert conn.banner == "Asterisk Call Manager/9.0.0"
        assert (first.response, first.action_id, first.get_all("variable")) == ("Success", "x-1", ["A=1", "B=2"])
        assert (second.event, second.get("reason")) == ("OriginateResponse", "3")


def test_parser_refuses_what_is_not_ami():
    with pytest.raises(AmiProtocolError):
        AmiConnection().receive_data(b"HTTP/1.1 200 OK\r\n")
    conn = AmiConnection()
    conn.receive_data(BANNER)
    with pytest.raises(AmiProtocolError):
        conn.receive_data(b"x" * 9000)


def test_a_line_break_in_a_value_cannot_smuggle_a_second_action():
    with pytest.raises(ValueError):
        encode_action("Originate", {"Channel": "Local/1@x\r\nAction: Command"})
    with pytest.raises(ValueError):
        OutboundCall("0770&Local/1@x", "alert")  # "&" would dial a second channel


def _session() -> tuple[OriginateSession, list[bytes]]:
    headers = originate_headers(AmiConfig(secret="s"), OutboundCall("07700900123", "alert", {"alert": "7"}))
    session = OriginateSession("carecall", "s", headers, id_prefix="t")
    return session, session.receive(BANNER)


def test_transcript_answered_only_when_the_originate_response_says_so():
    session, out = _session()
    assert out[0] == b"Action: Login\r\nActionID: t-1\r\nUsername: carecall\r\nSecret: s\r\nEvents: call\r\n\r\n"
    (originate,) = session.receive(block(Response="Success", ActionID="t-1", Message="Authentication accepted"))
    text = originate.decode()
    assert "Action: Originate\r\nActionID: t-2\r\n" in text and "Async: true" in text
    assert "Channel: PJSIP/07700900123@carecall-trunk" in text and "Context: carecall-outbound" in text
    assert "Variable: CARECALL_SCRIPT=alert\r\nVariable: CARECALL_ARGS=alert=7" in text
    assert session.receive(block(Response="Success", ActionID="t-2", Message="Originate successfully queued")) == []
    assert session.result is None and session.queued  # queued is not an outcome
    # Another call's event (another ActionID) changes nothing.
    assert session.receive(block(Event="OriginateResponse", ActionID="other-9", Response="Success", Reason="4")) == []
    assert session.result is None
    (logoff,) = session.receive(block(Event="OriginateResponse", ActionID="t-2", Response="Success", Reason="4",
                                      Uniqueid="1.1", Channel="PJSIP/x-1"))
    assert logoff.startswith(b"Action: Logoff")
    assert session.result is not None and session.result.answered and session.result.uniqueid == "1.1"


@pytest.mark.parametrize(("reason", "outcome"), [("0", "failed"), ("1", "hung up"), ("3", "no answer"),
                                                 ("5", "busy"), ("8", "congestion")])
def test_transcript_every_failure_reason_is_named(reason, outcome):
    session, _ = _session()
    session.receive(block(Response="Success", ActionID="t-1"))
    session.receive(block(Response="Success", ActionID="t-2", Message="Originate successfully queued"))
    session.receive(block(Event="OriginateResponse", ActionID="t-2", Response="Failure", Reason=reason,
                          Uniqueid="<null>"))
    assert session.result is not None
    assert (session.result.answered, session.result.outcome, session.result.uniqueid) == (False, outcome, "")


def test_transcript_refusals_and_silence():
    session, _ = _session()
    session.receive(block(Response="Error", ActionID="t-1", Message="Authentication failed"))
    assert session.result is not None and (session.result.outcome, session.result.detail) == (
        "refused", "AMI login: Authentication failed")
    session, _ = _session()
    session.receive(block(Response="Success", ActionID="t-1"))
    session.receive(block(Response="Error", ActionID="t-2", Message="Extension does not exist."))
    assert session.result is not None and session.result.outcome == "refused"
    session, _ = _session()
    session.receive(block(Response="Success", ActionID="t-1"))
    session.receive(block(Response="Success", ActionID="t-2"))
    result = session.timed_out("no event")
    assert (result.answered, result.outcome) == (False, "timeout") and "queued" in result.detail


def test_ami_table_checks_its_values():
    assert parse_table("ami", {"port": 5039, "secret": "x"}).port == 5039
    for bad in ({"channel": "PJSIP/07700900123"}, {"ring_seconds": 1}, {"number_format": "intl"},
                {"port": "5038"}, {"hostname": "x"}):
        with pytest.raises(ConfigError):
            parse_table("ami", bad)
    assert AmiConfig().dial_number("+447700900123") == "07700900123"
    assert AmiConfig(number_format="e164").dial_number("+447700900123") == "+447700900123"


@pytest_twisted.inlineCallbacks
def test_originator_over_tcp_reports_what_the_event_said():
    for reason, answered, outcome in ((4, True, "answered"), (3, False, "no answer"), (5, False, "busy")):
        with AmiServer(reason=reason) as ami:
            cfg = AmiConfig(port=ami.port, secret="s3cret", ring_seconds=5)
            result = yield Originator(cfg, reactor).originate(OutboundCall("07700900123", "alert", {"alert": "1"}))
            for _ in range(100):  # the server thread reads our Logoff after the result fired
                if len(ami.actions) >= 3:
                    break
                yield task.deferLater(reactor, 0.02, lambda: None)
        assert (result.answered, result.outcome) == (answered, outcome)
        assert [a["Action"] for a in ami.actions] == ["Login", "Originate", "Logoff"]
        assert ami.actions[1]["Timeout"] == "5000" and ami.actions[1]["Async"] == "true"


@pytest_twisted.inlineCallbacks
def test_originator_failures_are_results_never_sent():
    with AmiServer(secret="other") as ami:
        result = yield Originator(AmiConfig(port=ami.port, secret="wrong"), reactor).originate(
            OutboundCall("07700900123", "alert"))
    assert (result.answered, result.outcome) == (False, "refused")
    result = yield Originator(AmiConfig(port=free_port(), connect_timeout=2), reactor).originate(
        OutboundCall("07700900123", "alert"))
    assert (result.answered, result.outcome) == (False, "unreachable")
    # Asterisk queued it but no OriginateResponse ever came: a timeout, not a delivery.
    with AmiServer(reason=None) as ami:
        cfg = AmiConfig(port=ami.port, secret="s3cret", ring_seconds=5, response_grace_seconds=0.5,
                        connect_timeout=0.5)
        result = yield Originator(cfg, reactor).originate(OutboundCall("07700900123", "alert"))
    assert (result.answered, result.outcome) == (False, "timeout") and "queued" in result.detail
