"""The latency cases' client (benchmarks/latency.py) against small servers on 127.0.0.1 whose
behaviour the tests choose: what it counts as a sample, what as an error, how it reads framing,
whether it keeps or opens connections. No figure is asserted: only orders (first byte <= total)."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trustme

from benchmarks import latency

BODY = b"b" * 100


class _Backend(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.connections = 0
        self.tls_versions: list[str] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port


class _Handler(socketserver.BaseRequestHandler):
    """Answers by path: `/` 100 B, `/chunked` in three pieces with a trailer, `/busy` 503, `/cut` a
    body cut short, `/close` with Connection: close."""

    server: _Backend

    def handle(self) -> None:
        sock: socket.socket = self.request
        with self.server.lock:
            self.server.connections += 1
        try:
            if self.server.context is not None:
                sock = self.server.context.wrap_socket(sock, server_side=True)
                with self.server.lock:
                    self.server.tls_versions.append(str(sock.version()))
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                path = head.split(b" ")[1]
                if not self._answer(sock, path):
                    return
        except OSError:
            return

    def _answer(self, sock: socket.socket, path: bytes) -> bool:
        """Send the answer for `path`; False when the connection is to end."""
        if path == b"/chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"first", b"second piece", b"x" * 300):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif path == b"/busy":
            sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
        elif path == b"/cut":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + BODY[:10])
            return False
        elif path == b"/close":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n" + BODY)
            return False
        else:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + BODY)
        return True


@contextmanager
def backend(context: ssl.SSLContext | None = None) -> Iterator[_Backend]:
    server = _Backend(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def server_context() -> ssl.SSLContext:
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA).configure_cert(context)
    return context


def _sane(samples: latency.Samples, count: int) -> None:
    assert len(samples) == count and samples.errors == 0, samples.last_error
    assert all(0 <= first <= total for first, total in zip(samples.first_ms, samples.total_ms, strict=True))


def test_new_opens_a_connection_per_request() -> None:
    with backend() as server:
        samples = latency.run(server.port, kind="new", max_samples=12, seconds=30)
    _sane(samples, 12)
    assert server.connections == 12


def test_keepalive_reuses_one_connection() -> None:
    with backend() as server:
        samples = latency.run(server.port, kind="keepalive", max_samples=12, seconds=30)
    _sane(samples, 12)
    assert server.connections == 1


def test_keepalive_reconnects_when_the_server_says_close() -> None:
    with backend() as server:
        samples = latency.run(server.port, kind="keepalive", path="/close", max_samples=5, seconds=30)
    _sane(samples, 5)
    assert server.connections == 5


def test_new_tls_connections_are_full_tls13_handshakes(server_context: ssl.SSLContext) -> None:
    with backend(server_context) as server:
        samples = latency.run(server.port, kind="new", tls=True, max_samples=6, seconds=30)
    _sane(samples, 6)
    assert server.tls_versions == ["TLSv1.3"] * 6


@pytest.mark.parametrize("nodelay", [False, True])
def test_a_chunked_answer_is_read_to_its_end(nodelay: bool) -> None:
    with backend() as server:
        samples = latency.run(server.port, kind="stream", nodelay=nodelay, path="/chunked", max_samples=4, seconds=30)
    _sane(samples, 4)
    assert server.connections == 1  # the trailer was read: the next answer started clean


@pytest.mark.parametrize(("path", "error"), [("/busy", "status 503"), ("/cut", "ConnectionError")])
def test_a_failed_answer_is_an_error_not_a_sample(path: str, error: str) -> None:
    with backend() as server:
        samples = latency.run(server.port, kind="keepalive", path=path, max_samples=100, seconds=30)
    assert len(samples) == 0
    assert samples.errors == latency.MAX_ERRORS  # and the run stopped there
    assert error in samples.last_error


def test_a_closed_port_gives_errors_within_the_bound() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        samples = latency.run(port, kind="new", max_samples=100, seconds=30)
    assert len(samples) == 0 and samples.errors == latency.MAX_ERRORS
    assert "ConnectionRefusedError" in samples.last_error


def _answer_from(data: bytes) -> latency.Answer:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        return latency.read_answer(ours)


def test_read_answer_takes_content_length_and_chunked_framing() -> None:
    plain = _answer_from(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert (plain.status, plain.keep_alive) == (200, True)
    chunked = _answer_from(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n")
    assert chunked.status == 404
    closing = _answer_from(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert closing.keep_alive is False


@pytest.mark.parametrize(
    ("data", "exception"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", ConnectionError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\n\r\nno framing", ValueError),
        (b"SSH-2.0-OpenSSH\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabHTTP/1.1 200 OK\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nextra", ValueError),
    ],
)
def test_read_answer_refuses_what_it_cannot_frame(data: bytes, exception: type[Exception]) -> None:
    with pytest.raises(exception):
        _answer_from(data)


def test_summary_gives_medians_and_nearest_rank_p99() -> None:
    samples = latency.Samples(first_ms=[float(n) for n in range(1, 101)], total_ms=[2.0 * n for n in range(1, 101)])
    figures = latency.summary(samples)
    assert figures["first_p50_ms"] == 50.5 and figures["first_p99_ms"] == 99.0
    assert figures["total_p99_ms"] == 198.0 and figures["samples"] == 100
    assert latency.summary(latency.Samples(errors=3)) == {"samples": 0, "errors": 3.0}
