"""Requests pylb refuses itself: the status, and that no backend sees them."""

from __future__ import annotations

import pytest
from e2e_kit import Peer, lb_backend_requests, port_of, proxied

import pylb
from pylb.testing import open_hello

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers

BIG = 17 * 1024

BAD_REQUESTS = {
    "malformed request line": (b"GARBAGE\r\n\r\n", 400),
    "request line with two spaces": (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "no Host on HTTP/1.1": (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", 400),
    "Content-Length with Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "Content-Length +5": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
    "two different Content-Lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    "Transfer-Encoding gzip": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    "header over 16 KiB": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * BIG + b"\r\n\r\n", 431),
    "URL over 8 KiB": (b"GET /" + b"u" * (8 * 1024 + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    "HTTP/2.0 over HTTP/1 framing": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "a path that is not one": (b"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "absolute form for another host": (b"GET http://other.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
}

REASONS = {
    400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large", 505: "HTTP Version Not Supported"
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
async def test_bad_request_is_refused_and_never_reaches_a_backend(name: str) -> None:
    request, status = BAD_REQUESTS[name]
    async with open_hello("h") as hello, pylb.open_balancer([hello.backend]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            assert (await peer.request()).status == 200  # a good request first, on the same connection
            await peer.send(request)
            resp = await peer.read_response()
            assert resp.start_line == f"HTTP/1.1 {status} {REASONS[status]}".encode(), (name, resp.start_line)
            assert resp.header("content-type").startswith("text/html")  # type: ignore[union-attr]
            assert str(status) in resp.body.decode()
            assert resp.header("connection") == "close"
            assert await peer.at_eof()
        assert hello.requests == 1
        assert lb_backend_requests(lb) == 1
        assert lb.statistics()["errors"] == {status: 1}


async def test_header_block_just_under_the_limit_is_forwarded() -> None:
    async with open_hello("h") as hello, proxied([hello.backend]) as (_lb, peer):
        resp = await peer.request("GET", "/", [("X-Big", "a" * (15 * 1024))])
        assert resp.status == 200
        resp = await peer.request("GET", "/" + "u" * (8 * 1024 - 100))
        assert resp.status == 200
    assert hello.requests == 2


async def test_http10_request_without_host_is_forwarded() -> None:
    async with open_hello("h") as hello, proxied([hello.backend]) as (_lb, peer):
        await peer.send(b"GET / HTTP/1.0\r\n\r\n")
        resp = await peer.read_response()
        assert resp.status == 200 and resp.body == b"Hello from h\n"
        assert await peer.at_eof()  # HTTP/1.0 without keep-alive: closed after the answer
    assert hello.requests == 1
