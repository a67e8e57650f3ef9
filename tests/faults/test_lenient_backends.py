"""Backends that answer as RFC 9112 lets a recipient accept (bare LF line ends, as busybox
httpd's CGI answers have; obs-fold; HTTP/1.2) serve through pylb, and clients get canonical
heads: CRLF line ends, folds undone, HTTP/1.1. Hand-written raw backends on 127.0.0.1, both
drivers; h11 (a strict client) reads what pylb sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import h11
import pytest
import trio

import pylb
from tests.e2e.e2e_kit import Backend, Peer, open_backend, port_of
from tests.faults.faultkit import NO_CHECKS

pytestmark = pytest.mark.timeout(60)
GUARD = 20  # seconds: a hang fails the test, it is not a speed assertion

ANSWERS = {
    "bare LF": b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\nhello",
    "bare LF, CRLF CRLF in the body": b"HTTP/1.1 200 OK\nContent-Length: 9\n\nhe\r\n\r\nllo",
    "mixed line ends": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\nContent-Length: 5\r\n\nhello",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n  b\r\nContent-Length: 5\r\n\r\nhello",
    "HTTP/1.2": b"HTTP/1.2 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "bare LF 103 first": b"HTTP/1.1 103 Early Hints\nLink: </s.css>\n\nHTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
}
CANONICAL_HEADS = {
    "bare LF": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
    "bare LF, CRLF CRLF in the body": b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
    "mixed line ends": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a b\r\nContent-Length: 5\r\n\r\n",
    "HTTP/1.2": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    "bare LF 103 first": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
}
BODIES = {"bare LF, CRLF CRLF in the body": b"he\r\n\r\nllo"}
# busybox httpd answering for a CGI script: its own status line, then the script's LF lines, then
# the body until it closes.
BUSYBOX_CGI = b"HTTP/1.1 200 OK\r\nContent-type: text/html\n\n<p>hello from CGI</p>\n"


@asynccontextmanager
async def balancer(backend: str, lanes: bool) -> AsyncIterator[pylb.Balancer]:
    config = pylb.Config(binds=(pylb.Bind.parse("127.0.0.1:0"),), backends=(pylb.Backend.parse(backend),), lanes=lanes)
    lb = pylb.Balancer(config, health=NO_CHECKS)
    async with trio.open_nursery() as nursery:
        await nursery.start(lb.run)
        try:
            yield lb
        finally:
            nursery.cancel_scope.cancel()


def answering_with(answer: bytes, close: bool = False) -> Callable[[Backend, Peer], Awaitable[None]]:
    """A backend answering every request with ``answer`` (and closing after it, if ``close``)."""

    async def handler(server: Backend, peer: Peer) -> None:
        while await server.next_request(peer) is not None:
            await peer.send(answer)
            if close:
                return

    return handler


def h11_reads(raw: bytes, requests: int) -> list[h11.Event]:
    """Every event a strict client reads from ``raw`` after ``requests`` GETs (raises if it cannot)."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(raw)
    events: list[h11.Event] = []
    for _ in range(requests):
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
        conn.send(h11.EndOfMessage())
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(b"")
                continue
            events.append(event)  # type: ignore[arg-type]
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    return events


async def _exchange(port: int, requests: int) -> bytes:
    """``requests`` GETs on one connection, sent one after another; every byte that came back."""
    raw = b""
    async with await Peer.connect(port) as peer:
        for _ in range(requests):
            await peer.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            resp = await peer.read_response()
            raw += b"".join(i.raw_head for i in resp.interim) + resp.raw_head + resp.raw_body
    return raw


@pytest.mark.parametrize("lanes", [True, False], ids=["lanes", "tasks"])
@pytest.mark.parametrize("name", list(ANSWERS))
async def test_a_lenient_answer_reaches_the_client_canonical(name: str, lanes: bool) -> None:
    with trio.fail_after(GUARD):
        async with open_backend(answering_with(ANSWERS[name])) as backend:
            async with balancer(f"127.0.0.1:{backend.port}", lanes) as lb:
                raw = await _exchange(port_of(lb.url), 2)
    body = BODIES.get(name, b"hello")
    assert raw == (CANONICAL_HEADS[name] + body) * 2
    events = h11_reads(raw, 2)
    assert [e.status_code for e in events if isinstance(e, h11.Response | h11.InformationalResponse)] == (
        [103, 200, 103, 200] if "103" in name else [200, 200]
    )
    assert backend.connections == 1  # framed, so the backend connection was kept and reused


@pytest.mark.parametrize("lanes", [True, False], ids=["lanes", "tasks"])
async def test_a_busybox_cgi_answer_serves_through_pylb(lanes: bool) -> None:
    with trio.fail_after(GUARD):
        async with open_backend(answering_with(BUSYBOX_CGI, close=True)) as backend:
            async with balancer(f"127.0.0.1:{backend.port}", lanes) as lb:
                async with await Peer.connect(port_of(lb.url)) as peer:
                    await peer.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: a\r\n\r\n")
                    resp = await peer.read_response()
                    assert await peer.at_eof()  # delimited by the close, so the client's connection ends
    assert resp.status == 200 and resp.body == b"<p>hello from CGI</p>\n"
    assert resp.raw_head == b"HTTP/1.1 200 OK\r\nContent-type: text/html\r\nConnection: close\r\n\r\n"
