"""Real loopback servers for the delivery tests: an SMTP server and an Asterisk Manager Interface.

Both speak their protocol over TCP the way the real thing does (RFC 5321 replies; the
AMI banner ``Asterisk Call Manager/…``, ``key: value`` blocks ended by a blank line,
responses echoing the ActionID, and after an Originate the ``OriginateResponse`` event
carrying its ActionID and a Reason), so the production code talks to them through
smtplib and agi.outbound unchanged. They run in threads so that a test, the reactor or a child
process can use them alike.
"""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
from email.message import EmailMessage
from typing import Any


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpServer:
    """Accepts mail on 127.0.0.1; ``fail_next`` transactions get ``451`` after DATA (a temporary failure)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 test.local ESMTP carecall-test")
                sender, rcpts = "", []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode("ascii", "replace").rstrip("\r\n")
                    verb = line[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250-test.local\r\n250 8BITMIME\r\n" if verb == "EHLO" else b"250 ok\r\n")
                    elif verb == "MAIL":
                        sender, rcpts = line.split(":", 1)[1].strip().strip("<>").split(">")[0], []
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        rcpts.append(line.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        body = []
                        while True:
                            data = self.rfile.readline()
                            if data in (b".\r\n", b""):
                                break
                            body.append(data[1:] if data.startswith(b"..") else data)
                        with outer.lock:
                            if outer.fail_next > 0:
                                outer.fail_next -= 1
                                self.reply("451 4.3.0 try again later")
                                continue
                            msg = email.message_from_bytes(b"".join(body), policy=email.policy.default)
                            outer.messages.append(msg)  # type: ignore[arg-type]
                            outer.envelopes.append((sender, rcpts))
                        self.reply("250 ok: queued")
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 ok")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 command not implemented")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SmtpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class AmiServer:
    """A minimal Asterisk Manager Interface: Login (checks the secret), Originate, Logoff."""

    def __init__(self, username: str = "carecall", secret: str = "s3cret", originate_response: str = "Success",
                 reason: int | None = 4) -> None:
        """``reason``: the OriginateResponse's Reason (4 answered, 3 no answer, 5 busy, 0 failed; None: no event)."""
        self.actions: list[dict[str, Any]] = []
        self.username, self.secret = username, secret
        self.originate_response = originate_response
        self.reason = reason
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def send(self, **headers: str) -> None:
                self.wfile.write("".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n")

            def handle(self) -> None:
                self.wfile.write(b"Asterisk Call Manager/9.0.0\r\n")
                authed = False
                block: dict[str, Any] = {}
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line:
                        key, _, value = line.partition(":")
                        value = value.strip()
                        if key in block:  # repeated header (Variable): keep them all
                            prev = block[key]
                            block[key] = (prev if isinstance(prev, list) else [prev]) + [value]
                        else:
                            block[key] = value
                        continue
                    if not block:
                        continue
                    action, action_id = block.get("Action", "").lower(), block.get("ActionID", "")
                    outer.actions.append(block)
                    block = {}
                    if action == "login":
                        got = outer.actions[-1]
                        if got.get("Username") == outer.username and got.get("Secret") == outer.secret:
                            authed = True
                            self.send(Response="Success", ActionID=action_id, Message="Authentication accepted")
                            self.send(Event="FullyBooted", Privilege="system,all", Uptime="12", LastReload="12",
                                      Status="Fully Booted")
                        else:
                            self.send(Response="Error", ActionID=action_id, Message="Authentication failed")
                            return  # Asterisk ends the session after a failed login
                    elif not authed:
                        self.send(Response="Error", ActionID=action_id, Message="Permission denied")
                    elif action == "originate":
                        msg = "Originate successfully queued" if outer.originate_response == "Success" \
                            else "Originate failed"
                        self.send(Response=outer.originate_response, ActionID=action_id, Message=msg)
                        if outer.originate_response == "Success" and outer.reason is not None:
                            got = outer.actions[-1]
                            self.send(Event="OriginateResponse", Privilege="call,all", ActionID=action_id,
                                      Response="Success" if outer.reason == 4 else "Failure",
                                      Channel=got.get("Channel", ""), Context=got.get("Context", ""),
                                      Exten=got.get("Exten", ""), Application="", Data="",
                                      Reason=str(outer.reason), Uniqueid="1700000000.1" if outer.reason == 4
                                      else "<null>", CallerIDNum="<unknown>", CallerIDName="<unknown>")
                    elif action == "logoff":
                        self.send(Response="Goodbye", ActionID=action_id, Message="Thanks for all the fish.")
                        return
                    else:
                        self.send(Response="Error", ActionID=action_id, Message="Invalid/unknown command")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AmiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_smtp_test_server_speaks_smtp_to_smtplib():
    import smtplib

    with SmtpServer() as server, smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:
        client.sendmail("a@test.local", ["b@test.local"], "Subject: hi\r\n\r\nbody\r\n")
    assert server.messages[0]["Subject"] == "hi" and server.envelopes == [("a@test.local", ["b@test.local"])]
