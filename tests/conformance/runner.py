"""Running one case through one proxy: what the client got, what the backend got.

Owns: the client side of a case (one new connection, the case's bytes in one write, responses
read until the expected number of final answers, the end of the connection, or ``ANSWER_WAIT``
seconds of silence) and pairing it with what the proxy's recording backend received.
Must not know: how outcomes are compared or described.
Invariants: a case never waits more than ``ANSWER_WAIT`` for a byte; the backend is cut after
every case, whatever happened.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field

from tests.conformance.backend import Received, Reply
from tests.conformance.proxies import Proxy
from tests.conformance.wire import Message, read_message

ANSWER_WAIT = 5.0
"""Seconds of silence after which a proxy is taken not to answer (the proxies answer in
milliseconds here: this is never reached by a case that gets an answer)."""

OK = Reply(b"HTTP/1.1 200 OK\r\nX-Script: 1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok", close=False)
"""The answer of request cases: as plain as an answer gets, on a connection kept open (a proxy
that sends pipelined requests one at a time finds it still there)."""


@dataclass(frozen=True)
class Case:
    """One exchange: raw client bytes, and the raw answer the backend gives to each request."""

    id: str
    area: str  # the case class, as the table groups them
    rfc: str  # RFC 9110/9112 section(s)
    request: bytes
    reply: Reply = OK
    answers: int = 1  # final answers the client waits for (pipelined requests: more)
    note: str = ""

    def methods(self) -> list[bytes]:
        """The methods of the requests the client sends, in order (to read HEAD answers)."""
        out, rest = [], self.request.lstrip(b"\r\n")
        while rest:
            msg = read_message(rest, response=False, eof=True)
            if msg is None or not msg.raw:
                break
            out.append(msg.start.split(b" ", 1)[0])
            rest = rest[len(msg.raw) :].lstrip(b"\r\n")
        return out or [b"GET"]

    def sent(self) -> Message | None:
        """The first request as the client meant it (tolerantly read), for describing changes."""
        return read_message(self.request.lstrip(b"\r\n"), response=False, eof=True)

    def scripted(self, method: bytes) -> list[Message]:
        """The backend's answers, read as the client would read them if nothing changed them."""
        out, rest = [], self.reply.data.lstrip(b"\r\n")
        while rest:
            msg = read_message(rest, response=True, method=method, eof=True)
            if msg is None or not msg.raw:
                break
            out.append(msg)
            rest = rest[len(msg.raw) :]
        return out


@dataclass
class Outcome:
    proxy: str
    case: str
    responses: list[Message] = field(default_factory=list)
    client_raw: bytes = b""
    end: str = "answered"  # "answered", "closed" (before all answers came), "timeout" or "garbled"
    received: Received = field(default_factory=Received)

    @property
    def forwarded(self) -> bool:
        return any(self.received.raw)


def run_case(proxy: Proxy, case: Case) -> Outcome:
    """Send ``case`` through ``proxy``; what each side saw."""
    outcome = Outcome(proxy.name, case.id)
    proxy.backend.reply = case.reply
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=ANSWER_WAIT) as sock:
            _exchange(sock, case, outcome)
    finally:
        outcome.received = proxy.backend.cut()
    return outcome


def _exchange(sock: socket.socket, case: Case, outcome: Outcome) -> None:
    with contextlib.suppress(OSError):  # a proxy may close before reading it all: its answer is read below
        sock.sendall(case.request)
    methods = case.methods()
    buf, finals, eof = b"", 0, False
    while finals < case.answers:
        method = methods[min(finals, len(methods) - 1)]
        try:
            msg = read_message(buf, response=True, method=method, eof=eof) if buf else None
        except ValueError:  # a chunked body that does not parse
            outcome.end = "garbled"
            return
        if msg is not None:
            outcome.responses.append(msg)
            buf = buf[len(msg.raw) :]
            status = msg.status
            if status == 101 or not msg.complete:
                return
            if not 100 <= status < 200:  # 1xx are interim; "20" or "2000" are what they are
                finals += 1
            continue
        if eof:
            outcome.end = "closed"
            return
        try:
            data = sock.recv(65536)
        except TimeoutError:
            outcome.end = "timeout"
            return
        except OSError:
            data = b""
        outcome.client_raw += data
        buf += data
        eof = not data

