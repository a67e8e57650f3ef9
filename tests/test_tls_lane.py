"""HTTPS in the readiness loop: handshakes, keep-alive, a connection moving to
a task and back with its TLS session, pipelining, close_notify, and the
first answer on a new connection not waiting behind the client's Nagle.

Real sockets on 127.0.0.1, real TLS (trustme); clients are stdlib ``ssl``
objects over plain sockets, so what crosses the wire is what is asserted.
Guards turn a hang into a failure; nothing asserts on speed."""

from __future__ import annotations

import select
import socket
import ssl

import pytest
import trio
import trustme

import pylb
from pylb.testing import open_hello
from tests.e2e.e2e_kit import answering, open_backend, open_echo, request_bytes, response_bytes

GUARD = 20
NO_CHECKS = pylb.HealthCheck(enabled=False)  # connections counted are the requests' own


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class TlsClient:
    """A blocking TLS client on a plain socket (run in a thread)."""

    def __init__(self, ca: trustme.CA, port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
        self.sock = _context(ca).wrap_socket(raw, server_hostname="localhost")
        self.buf = b""

    def request(self, data: bytes) -> tuple[bytes, bytes]:
        self.sock.sendall(data)
        return self.response()

    def response(self) -> tuple[bytes, bytes]:
        """(head, body) of one response framed by Content-Length."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return head, body

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(self.buf[:200])
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def lane(lb: pylb.Balancer) -> dict[str, int]:
    stats = lb.statistics()["fast_lane"]
    assert isinstance(stats, dict)
    return stats


async def test_https_keep_alive_requests_are_served_in_the_loop(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with open_hello("web") as hello, pylb.open_balancer([hello.backend], tls=ca) as lb:
            port = lb.addresses[1].port

            def run() -> list[tuple[bytes, bytes]]:
                client = TlsClient(ca, port)
                try:
                    return [client.request(request_bytes("GET", f"/{i}")) for i in range(5)]
                finally:
                    client.close()

            answers = await trio.to_thread.run_sync(run)
            assert all(head.startswith(b"HTTP/1.1 200 OK") for head, _ in answers)
            assert all(body == b"Hello from web\n" for _, body in answers)
            stats = lane(lb)
            assert stats["handshakes"] == 1 and stats["requests"] == 5 and stats["handoffs"] == 0


async def test_a_tls_connection_goes_to_a_task_for_a_streamed_body_and_comes_back(ca: trustme.CA) -> None:
    body = b"x" * 300_000  # more than the loop reads ahead: the body streams, in a task
    with trio.fail_after(GUARD):
        async with open_echo("e") as echo, pylb.open_balancer([echo.backend], tls=ca, health=NO_CHECKS) as lb:
            port = lb.addresses[1].port

            def run() -> list[bytes]:
                client = TlsClient(ca, port)
                try:
                    first = client.request(request_bytes("GET", "/before"))[1]
                    upload = client.request(request_bytes("POST", "/upload", body=body))[1]
                    after = client.request(request_bytes("GET", "/after"))[1]
                    return [first, upload, after]
                finally:
                    client.close()

            first, upload, after = await trio.to_thread.run_sync(run)
            assert b'"target": "/before"' in first and b'"target": "/after"' in after
            assert b'"body_length": 300000' in upload
            stats = lane(lb)
            # one handshake: the same TLS session went to the task and back
            assert stats["handshakes"] == 1 and stats["handoffs"] == 1 and stats["taken_back"] == 1
            assert echo.connections == 1


async def test_large_answers_over_tls_are_relayed_by_the_loop_with_backpressure(ca: trustme.CA) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: TLS cannot be spliced, the loop relays it

    def respond(req: object) -> bytes:
        return response_bytes(200, "OK", [], big)

    with trio.fail_after(GUARD):
        async with open_backend(answering(respond)) as server, pylb.open_balancer([server.backend], tls=ca) as lb:
            port = lb.addresses[1].port

            def run() -> list[bytes]:
                client = TlsClient(ca, port)
                try:
                    return [client.request(request_bytes("GET", "/"))[1] for _ in range(2)]
                finally:
                    client.close()

            assert await trio.to_thread.run_sync(run) == [big, big]
            assert lane(lb)["handoffs"] == 0


async def test_pipelined_requests_over_tls_are_answered_in_order(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with open_echo("e") as echo, pylb.open_balancer([echo.backend], tls=ca, health=NO_CHECKS) as lb:
            port = lb.addresses[1].port

            def run() -> list[bytes]:
                client = TlsClient(ca, port)
                try:
                    client.sock.sendall(b"".join(request_bytes("GET", f"/{i}") for i in range(4)))
                    return [client.response()[1] for _ in range(4)]
                finally:
                    client.close()

            bodies = await trio.to_thread.run_sync(run)
            assert [f'"target": "/{i}"'.encode() in body for i, body in enumerate(bodies)] == [True] * 4


async def test_session_tickets_follow_the_handshake_at_once(ca: trustme.CA) -> None:
    """After the client's Finished, pylb writes its TLS 1.3 session tickets
    right away, which acknowledges the Finished: a client holding its
    request behind Nagle's algorithm (waiting for that acknowledgement) is
    not left waiting for the server's delayed-ACK timer, 40 ms or more on
    every new connection. Observed on the wire: bytes arrive after the
    handshake although no request was sent."""
    with trio.fail_after(GUARD):
        async with open_hello() as hello, pylb.open_balancer([hello.backend], tls=ca) as lb:
            port = lb.addresses[1].port

            def run() -> tuple[bool, int]:
                raw = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
                ctx = _context(ca)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_3
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
                try:
                    while True:
                        try:
                            tls.do_handshake()
                            break
                        except ssl.SSLWantReadError:
                            raw.sendall(outgoing.read())
                            incoming.write(raw.recv(65536))
                    raw.sendall(outgoing.read())  # the client's Finished
                    ready, _, _ = select.select([raw], [], [], GUARD / 2)
                    return bool(ready), len(raw.recv(65536)) if ready else 0
                finally:
                    raw.close()

            ready, size = await trio.to_thread.run_sync(run)
            assert ready and size > 0  # tickets, unasked


async def test_connection_close_over_tls_ends_with_close_notify(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with open_hello() as hello, pylb.open_balancer([hello.backend], tls=ca) as lb:
            port = lb.addresses[1].port

            def run() -> bytes:
                client = TlsClient(ca, port)
                try:
                    client.request(request_bytes("GET", "/", [("Connection", "close")]))
                    return client.sock.recv(100)  # b"" only after a close_notify (else SSLEOFError)
                finally:
                    client.close()

            assert await trio.to_thread.run_sync(run) == b""
