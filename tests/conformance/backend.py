"""The recording backend: a raw socket server that keeps every byte it receives.

Owns: accepting the proxies' connections on 127.0.0.1, recording what arrives (per connection,
exactly), finding where each forwarded request ends (with the tolerant reader of ``wire``), and
answering each one with the scripted raw bytes of the case being run. ``cut()`` ends a case: it
returns what arrived since the last cut. Connections a proxy keeps open stay open across cases
(a backend closing idle keep-alive connections would race with the proxy reusing them, and
make the outcome depend on timing); a scripted answer that ends with a close closes its
connection right after the answer, as a backend does.
Must not know: which proxy is in front of it, what the case tests.
Invariants: one thread per connection plus one accepting; every thread ends when ``close()``
returns; nothing listens beyond 127.0.0.1; bytes are attributed to the case during which they
arrived (the runner cuts only once the client has its answers).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from tests.conformance.wire import Message, read_message


@dataclass(frozen=True)
class Reply:
    """What the backend answers to each request: raw bytes, then (``close``) a closed connection.

    Closing after answering is the default: a proxy that waits for more than the answer says
    (an odd framing) then sees the end instead of waiting for the case's time limit."""

    data: bytes
    close: bool = True

    @property
    def switches(self) -> bool:
        """Whether this answer turns the connection into a tunnel (a 101)."""
        return self.data.startswith(b"HTTP/1.1 101")


@dataclass
class Received:
    """What reached the backend during one case."""

    raw: list[bytes] = field(default_factory=list)  # per connection that received something
    requests: list[Message] = field(default_factory=list)
    garbled: bytes = b""  # bytes that did not make a request (all connections, concatenated)


@dataclass
class _Conn:
    sock: socket.socket
    raw: bytearray = field(default_factory=bytearray)
    requests: list[tuple[int, Message]] = field(default_factory=list)  # (arrival order, request)
    pending: bytes = b""  # received, not yet a whole request
    raw_mark: int = 0  # what the last cut took
    requests_mark: int = 0
    closed: bool = False  # by us (after an answer with close) or by the proxy


class RecordingBackend:
    """A backend that records; use as a context manager (it closes every connection it made)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.name = f"recorder{self.port}"
        self.reply = Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._arrivals = 0  # requests read so far, all connections: their order of arrival
        self._accepting = threading.Thread(target=self._accept, name=f"{self.name}-accept", daemon=True)

    def __enter__(self) -> RecordingBackend:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._accepting.join(10)
        for thread in self._threads:
            thread.join(10)

    def cut(self) -> Received:
        """What arrived since the last cut (connections stay as they are)."""
        received = Received()
        requests: list[tuple[int, Message]] = []
        with self._lock:
            for conn in self._conns:
                if len(conn.raw) > conn.raw_mark:
                    received.raw.append(bytes(conn.raw[conn.raw_mark :]))
                requests += conn.requests[conn.requests_mark :]
                received.garbled += conn.pending
                conn.raw_mark, conn.requests_mark, conn.pending = len(conn.raw), len(conn.requests), b""
            self._conns = [conn for conn in self._conns if not conn.closed]
        received.requests = [msg for _, msg in sorted(requests, key=lambda pair: pair[0])]
        return received

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = _Conn(sock)
            with self._lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name=f"{self.name}-conn", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: _Conn) -> None:
        with conn.sock:
            tunnel = False
            while True:
                data = self._receive(conn)
                if not data:
                    return
                with self._lock:
                    if tunnel:
                        continue
                    conn.pending += data
                    answers = self._take_requests(conn)
                for reply in answers:
                    try:
                        conn.sock.sendall(reply.data)
                    except OSError:
                        return
                    tunnel = reply.switches
                if answers and answers[-1].close and not tunnel:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_WR)
                    # What the proxy still sends goes to a closed connection, where a real
                    # backend would not read it: kept in ``raw`` only, until the proxy closes.
                    while self._receive(conn):
                        pass
                    return

    def _receive(self, conn: _Conn) -> bytes:
        try:
            data = conn.sock.recv(65536)
        except OSError:
            data = b""
        with self._lock:
            conn.raw += data
            conn.closed = not data
        return data

    def _take_requests(self, conn: _Conn) -> list[Reply]:
        """Every complete request pending on ``conn``, answered (a 101 ends the parsing: a tunnel)."""
        answers = []
        while conn.pending:
            try:
                msg = read_message(conn.pending, response=False)
            except ValueError:
                return answers  # a body that does not parse: kept as garbled
            if msg is None:
                break
            self._arrivals += 1
            conn.requests.append((self._arrivals, msg))
            conn.pending = conn.pending[len(msg.raw) :]
            answers.append(self.reply)
            if self.reply.switches or self.reply.close:
                break  # the connection ends with this answer: what follows is not read as requests
        return answers
