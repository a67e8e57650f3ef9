"""Smuggling and malformed input (issue 7), over real sockets: pylb answers
400 (431/414 for limits) and closes, the backend sees nothing, and the
backend connection pool is not poisoned; malformed responses from a backend
are 502 and their connection is never reused."""

from __future__ import annotations

import json

import pytest
import trio

import pylb
from tests.e2e.e2e_kit import Backend, Peer, Truncated, open_backend, parse_head, port_of, response_bytes
from tests.faults.faultkit import NO_CHECKS, garbled, recording, start_lines

pytestmark = [pytest.mark.usefixtures("driver"), pytest.mark.timeout(60)]
GUARD = 20

SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
H = b"POST / HTTP/1.1\r\nHost: a\r\n"  # a request head, open for more header lines


def many_headers(n: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(n - 1)) + b"\r\n"


MALFORMED: dict[str, tuple[bytes, int]] = {
    # framing: the smuggling classics
    "CL+TE": (H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "TE+CL": (H + b"Transfer-Encoding: chunked\r\nContent-Length: 37\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "two different CLs": (H + b"Content-Length: 0\r\nContent-Length: 32\r\n\r\n" + SMUGGLED, 400),
    "CL list of different values": (H + b"Content-Length: 0, 32\r\n\r\n" + SMUGGLED, 400),
    "CL +5": (H + b"Content-Length: +5\r\n\r\nhello", 400),
    "CL -1": (H + b"Content-Length: -1\r\n\r\n", 400),
    "CL 1_0": (H + b"Content-Length: 1_0\r\n\r\nhellohello", 400),
    "CL arabic-indic 3": (H + "Content-Length: \u0663\r\n\r\nabc".encode(), 400),
    "CL hex": (H + b"Content-Length: 0x5\r\n\r\nhello", 400),
    "CL with inner space": (H + b"Content-Length: 1 0\r\n\r\nhellohello", 400),
    "CL empty": (H + b"Content-Length:\r\n\r\n", 400),
    "TE gzip": (H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    "TE chunked, gzip": (H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    "TE chunked then gzip line": (H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400),
    "TE chunked twice": (H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    "TE xchunked": (H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    "TE vertical tab": (H + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400),
    "chunk size 0x5": (H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size +5": (H + b"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size -0": (H + b"Transfer-Encoding: chunked\r\n\r\n-0\r\n\r\n" + SMUGGLED, 400),
    "chunk size with space": (H + b"Transfer-Encoding: chunked\r\n\r\n5 5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size overflow": (H + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 20 + b"\r\nhello\r\n0\r\n\r\n", 400),
    "chunk size bare LF": (H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
    "chunk data too long": (H + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", 400),
    # the head's syntax
    "bare LF line ends": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "bare LF inside a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\nX-B: 2\r\n\r\n", 400),
    "bare CR inside a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n", 400),
    "bare CR line end": (b"GET / HTTP/1.1\r\nHost: a\rX-A: 1\r\n\r\n", 400),
    "NUL in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
    "SOH in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n", 400),
    "ESC in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x1bb\r\n\r\n", 400),
    "DEL in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n", 400),
    "form feed in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x0cb\r\n\r\n", 400),
    "NUL in the target": (b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "obs-fold with space": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 400),
    "obs-fold with tab": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n", 400),
    "obs-fold of Content-Length": (H + b"Content-Length: 0\r\n 32\r\n\r\n" + SMUGGLED, 400),
    "first header line folded": (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    "space before the colon": (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    "tab before the colon": (H + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400),
    "space before the colon of CL": (H + b"Content-Length : 32\r\n\r\n" + SMUGGLED, 400),
    "header name with (": (b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", 400),
    "header name with @": (b"GET / HTTP/1.1\r\nHost: a\r\nX@A: 1\r\n\r\n", 400),
    "header name with /": (b"GET / HTTP/1.1\r\nHost: a\r\nX/A: 1\r\n\r\n", 400),
    "header name with a quote": (b'GET / HTTP/1.1\r\nHost: a\r\nX"A: 1\r\n\r\n', 400),
    "header name non-ASCII": ("GET / HTTP/1.1\r\nHost: a\r\nX-\u00c4: 1\r\n\r\n".encode(), 400),
    "empty header name": (b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 400),
    "header line without colon": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A 1\r\n\r\n", 400),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "HTTP/1.1 without Host": (b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    "HTTP/1.2": (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
    "lowercase version": (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    "two spaces in the request line": (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400),
    # limits
    "101 header lines": (many_headers(101), 431),
    "17 KiB head": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * (17 * 1024) + b"\r\n\r\n", 431),
    "9 KiB URL": (b"GET /" + b"u" * (9 * 1024) + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
}


async def _refused(lb: pylb.Balancer, raw: bytes) -> tuple[int, bytes]:
    async with await Peer.connect(port_of(lb.url)) as peer:
        await peer.send(raw)
        resp = await peer.read_response()
        assert resp.header("connection") == "close", resp.raw_head
        assert await peer.at_eof(), "the connection stays open after a refused request"
        return resp.status, resp.body


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_request_is_refused_and_never_reaches_the_backend(name: str) -> None:
    raw, status = MALFORMED[name]
    with trio.fail_after(GUARD):
        async with (
            open_backend(recording(), "echo") as backend,
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:  # leaves an idle pooled backend connection
                assert (await peer.request("GET", "/warm")).status == 200
            got, body = await _refused(lb, raw)
            assert got == status, (name, got, body)
            assert str(status).encode() in body
            assert lb.statistics()["errors"] == {status: 1}
            # a good request on a new connection: answered by the pooled backend
            # connection, which saw nothing of the refused request
            async with await Peer.connect(port_of(lb.url)) as peer:
                resp = await peer.request("GET", "/after")
                assert resp.status == 200
                assert json.loads(resp.body)["start"] == "GET /after HTTP/1.1"
            assert start_lines(backend) == ["GET /warm HTTP/1.1", "GET /after HTTP/1.1"]
            assert garbled(backend) == []
            assert backend.connections == 1, "the pooled backend connection was dropped or a new one opened"


async def test_exactly_100_header_lines_are_accepted() -> None:
    with trio.fail_after(GUARD):
        async with (
            open_backend(recording(), "echo") as backend,
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:
                await peer.send(many_headers(100))
                assert (await peer.read_response()).status == 200
            assert backend.requests == 1


# Framing headers named in Connection: stripping them as "hop-by-hop" while
# still forwarding the body by them turns the body into the next request.
CONNECTION_NAMES_FRAMING = {
    "Connection: content-length": (
        H + b"Connection: content-length\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
    ),
    "Connection: transfer-encoding": (
        H
        + b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(SMUGGLED)
        + SMUGGLED
        + b"\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", list(CONNECTION_NAMES_FRAMING))
async def test_a_framing_header_named_in_connection_cannot_smuggle_a_request(name: str) -> None:
    raw = CONNECTION_NAMES_FRAMING[name]
    with trio.fail_after(GUARD):
        async with (
            open_backend(recording(), "echo") as backend,
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:
                await peer.send(raw)
                status = (await peer.read_response()).status
            async with await Peer.connect(port_of(lb.url)) as peer:
                assert (await peer.request("GET", "/after")).status == 200
            seen = start_lines(backend)
            assert not any("/admin" in line for line in seen), seen
            assert garbled(backend) == []
            if status == 200:  # forwarded: then as one request, with its whole body
                assert seen == ["POST / HTTP/1.1", "GET /after HTTP/1.1"], seen
                assert backend.seen[0].body == SMUGGLED
            else:
                assert status == 400
                assert seen == ["GET /after HTTP/1.1"], seen


# --------------------------------------------------------------------------- responses


BAD_RESPONSES: dict[str, bytes] = {
    "CL+TE": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two different CLs": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    "CL +2": b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nab",
    "TE gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
    "status line without code": b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
    "four-digit status": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "two-digit status": b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "HTTP/2 status line": b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "ICY status line": b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n",
    "NUL in a header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "space before the colon": b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    "bare CR inside a value": b"HTTP/1.1 200 OK\nX-A: 1\rX-B: 2\nContent-Length: 0\n\n",
    "folded first line": b"HTTP/1.1 200 OK\r\n X-A: 1\r\nContent-Length: 0\r\n\r\n",
}
# Status codes outside 100-999 (RFC 9110 15: 100-599; h11: 100-999).
BAD_STATUS_CODES = {
    "status 099": b"HTTP/1.1 099 Weird\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "status 000": b"HTTP/1.1 000 Zero\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


BAD_CHUNKED_BODIES = {
    "bad first chunk size": b"0x2\r\nab\r\n0\r\n\r\n",
    "bad second chunk size": b"2\r\nab\r\n+2\r\ncd\r\n0\r\n\r\n",
    "chunk longer than its size": b"2\r\nabcd\r\n0\r\n\r\n",
}


def _bad_answer_to(path: str, bad: bytes, closed: trio.Event) -> object:
    """Answers ``path`` with ``bad`` (and keeps the connection open, as if it
    were fine); anything else with a good 200. Sets ``closed`` when a
    connection that sent ``bad`` is closed by pylb."""

    async def handler(server: Backend, peer: Peer) -> None:
        sent_bad = False
        while (req := await server.next_request(peer)) is not None:
            if req.target == path:
                await peer.send(bad)
                sent_bad = True
            else:
                await peer.send(response_bytes(200, "OK", [], b"good:" + req.target.encode()))
        if sent_bad:
            closed.set()

    return handler


async def _check_bad_response(bad: bytes) -> None:
    closed = trio.Event()
    with trio.fail_after(GUARD):
        async with (
            open_backend(_bad_answer_to("/bad", bad, closed)) as backend,  # type: ignore[arg-type]
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:
                await peer.send(b"GET /bad HTTP/1.1\r\nHost: a\r\n\r\n")
                line, _ = parse_head(await peer.read_head())
                assert line == b"HTTP/1.1 502 Bad Gateway", line
            await closed.wait()  # pylb closed the backend connection that answered badly
            async with await Peer.connect(port_of(lb.url)) as peer:
                resp = await peer.request("GET", "/ok")
                assert (resp.status, resp.body) == (200, b"good:/ok")
            assert backend.connections == 2  # the bad connection was never reused
            assert lb.statistics()["errors"] == {502: 1}


@pytest.mark.parametrize("name", list(BAD_RESPONSES))
async def test_a_malformed_response_is_502_and_its_connection_never_reused(name: str) -> None:
    await _check_bad_response(BAD_RESPONSES[name])


@pytest.mark.parametrize("name", list(BAD_STATUS_CODES))
async def test_a_status_code_below_100_is_502(name: str) -> None:
    await _check_bad_response(BAD_STATUS_CODES[name])


async def test_a_response_naming_content_length_in_connection_stays_framed() -> None:
    bad = b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"
    with trio.fail_after(GUARD):
        async with (
            open_backend(_bad_answer_to("/x", bad, trio.Event())) as backend,  # type: ignore[arg-type]
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:
                await peer.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                line, headers = parse_head(await peer.read_head())
                names = {n.lower(): v for n, v in headers}
                if line.startswith(b"HTTP/1.1 200"):
                    # delimited somehow: by its length, by chunks, or by close
                    assert (
                        names.get("content-length") == "5"
                        or "transfer-encoding" in names
                        or names.get("connection", "").lower() == "close"
                    ), headers
                else:
                    assert line == b"HTTP/1.1 502 Bad Gateway", line


@pytest.mark.parametrize("name", list(BAD_CHUNKED_BODIES))
async def test_a_malformed_chunked_response_body_never_looks_complete(name: str) -> None:
    """pylb may already have sent the head: then the client sees a reset,
    never a clean end; and the backend connection is not reused."""
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + BAD_CHUNKED_BODIES[name]
    closed = trio.Event()
    with trio.fail_after(GUARD):
        async with (
            open_backend(_bad_answer_to("/bad", bad, closed)) as backend,  # type: ignore[arg-type]
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:
                await peer.send(b"GET /bad HTTP/1.1\r\nHost: a\r\n\r\n")
                try:
                    resp = await peer.read_response()
                except Truncated:
                    pass  # reset (or EOF) before the last chunk: the client knows it is incomplete
                else:
                    assert resp.status == 502, (resp.raw_head, resp.raw_body)
            await closed.wait()
            async with await Peer.connect(port_of(lb.url)) as peer:
                resp = await peer.request("GET", "/ok")
                assert (resp.status, resp.body) == (200, b"good:/ok")
            assert backend.connections == 2


H2C = (
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)


async def test_an_h2c_upgrade_is_not_forwarded() -> None:
    with trio.fail_after(GUARD):
        async with (
            open_backend(recording(), "echo") as backend,
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:
                await peer.send(H2C)
                resp = await peer.read_response()
                assert resp.status == 200  # served as plain HTTP/1.1, as RFC 9110 7.8 allows
                assert resp.header("upgrade") is None
            (seen,) = backend.seen
            assert seen.header("upgrade") is None and seen.header("http2-settings") is None


async def _switches_anyway(server: Backend, peer: Peer) -> None:
    if await server.next_request(peer) is not None:
        await peer.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        await peer.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # and talks h2 from here on
        await trio.sleep_forever()


async def test_a_backend_switching_to_h2c_anyway_is_not_tunnelled() -> None:
    with trio.fail_after(GUARD):
        async with (
            open_backend(_switches_anyway) as backend,
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:
                await peer.send(H2C)
                line, _ = parse_head(await peer.read_head())
                assert line == b"HTTP/1.1 502 Bad Gateway", line


async def test_transfer_encoding_in_an_http10_request_is_refused() -> None:
    raw = b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(SMUGGLED) + SMUGGLED
    raw += b"\r\n0\r\n\r\n"
    with trio.fail_after(GUARD):
        async with (
            open_backend(recording(), "echo") as backend,
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            status, _ = await _refused(lb, raw)
            assert status == 400
            assert start_lines(backend) == []
