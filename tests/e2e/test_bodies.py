"""Request and response bodies relayed intact, whatever their framing."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio
import trio.testing
from e2e_kit import (
    Backend,
    Peer,
    chunked,
    open_backend,
    open_echo,
    port_of,
    proxied,
    request_bytes,
    response_bytes,
    served_by,
)

import pylb
from pylb.testing import open_hello

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [1, 1000, 200_000, MiB])
async def test_content_length_upload_reaches_the_backend_byte_exact(size: int) -> None:
    body = os.urandom(size)
    async with open_echo() as echo, proxied([echo.backend]) as (_lb, peer):
        resp = await peer.request("POST", "/upload", body=body)
        assert resp.status == 200
        info = resp.json()
        assert (info["body_length"], info["sha256"]) == (size, sha(body))
        # the connection is still in step for the next request
        assert (await peer.request("GET", "/next")).json()["target"] == "/next"


async def test_content_length_upload_sent_in_pieces() -> None:
    body = os.urandom(30_000)
    async with open_echo() as echo, proxied([echo.backend]) as (_lb, peer):
        await peer.send(request_bytes("PUT", "/p", [("Content-Length", str(len(body)))]))
        for start in range(0, len(body), 7_000):
            await trio.testing.wait_all_tasks_blocked()  # the proxy has read what was sent so far
            await peer.send(body[start : start + 7_000])
        info = (await peer.read_response()).json()
    assert (info["body_length"], info["sha256"]) == (len(body), sha(body))


async def test_chunked_upload_reaches_the_backend_decoded_identically() -> None:
    parts = [os.urandom(n) for n in (1, 100, 70_000, 5, 3)]
    wire = chunked(*parts, trailers=b"X-Checksum: abc\r\n")
    async with open_echo() as echo, proxied([echo.backend]) as (_lb, peer):
        head = request_bytes("POST", "/c", [("Transfer-Encoding", "chunked")])
        await peer.send(head + wire[:50])
        await trio.testing.wait_all_tasks_blocked()
        await peer.send(wire[50:70_010])
        await trio.testing.wait_all_tasks_blocked()
        await peer.send(wire[70_010:])
        resp = await peer.read_response()
        info = resp.json()
        assert (info["body_length"], info["sha256"]) == (sum(map(len, parts)), sha(b"".join(parts)))
        assert ("Transfer-Encoding", "chunked") in [tuple(h) for h in info["headers"]]
        assert (await peer.request("GET", "/next")).json()["target"] == "/next"
    assert echo.seen[0].raw_body == wire  # relayed byte for byte, trailers included


async def test_chunked_upload_to_hello() -> None:
    async with open_hello("h") as hello, proxied([hello.backend]) as (_lb, peer):
        resp = await peer.request("POST", "/", [("Transfer-Encoding", "chunked")], body=chunked(b"abc", b"de"))
        assert resp.status == 200 and served_by(resp) == "h"
        assert (await peer.request()).status == 200
    assert hello.requests == 2


async def test_expect_100_continue_upload() -> None:
    body = os.urandom(50_000)
    async with open_echo(send_continue=True) as echo, proxied([echo.backend]) as (_lb, peer):
        head = request_bytes("POST", "/e", [("Expect", "100-continue"), ("Content-Length", str(len(body)))])
        await peer.send(head)
        interim = await peer.read_head()  # the client waits for this before sending the body
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        await peer.send(body)
        resp = await peer.read_response()
        assert resp.status == 200
        assert (resp.json()["body_length"], resp.json()["sha256"]) == (len(body), sha(body))
        assert (await peer.request("GET", "/next")).status == 200


async def test_expect_100_continue_when_the_client_does_not_wait() -> None:
    # curl sends the body anyway after a short wait; hello never sends 100.
    async with open_hello("h") as hello, proxied([hello.backend]) as (_lb, peer):
        resp = await peer.request("POST", "/", [("Expect", "100-continue")], body=b"x" * 5000)
        assert resp.status == 200 and served_by(resp) == "h"
        assert (await peer.request()).status == 200


def _fixed(response: bytes, close: bool = False):
    async def handler(server: Backend, peer: Peer) -> None:
        while await server.next_request(peer) is not None:
            await peer.send(response)
            if close:
                return

    return handler


async def test_chunked_response_is_relayed_intact() -> None:
    parts = [b"first ", os.urandom(100_000), b"", b" last"]
    wire = chunked(*parts, trailers=b"X-Trailer: yes\r\n")
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Served-By: chunker\r\n\r\n" + wire
    async with open_backend(_fixed(response)) as backend, proxied([backend.backend]) as (_lb, peer):
        for _ in range(3):  # and stays in step across keep-alive requests
            resp = await peer.request()
            assert resp.status == 200
            assert resp.header("transfer-encoding") == "chunked"
            assert resp.body == b"".join(parts)
            assert resp.raw_body == wire
    assert backend.connections == 1


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
async def test_until_close_response_is_relayed_intact(version: str) -> None:
    body = os.urandom(300_000)
    response = f"{version} 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + body
    async with open_backend(_fixed(response, close=True)) as backend, proxied([backend.backend]) as (_lb, peer):
        resp = await peer.request()
        assert resp.status == 200
        assert sha(resp.body) == sha(body) and len(resp.body) == len(body)
        assert resp.header("content-length") is None
        assert await peer.at_eof()


async def test_one_mebibyte_response_is_byte_exact() -> None:
    body = os.urandom(MiB)
    response = response_bytes(200, "OK", [("Content-Type", "application/octet-stream")], body)
    async with open_backend(_fixed(response)) as backend, proxied([backend.backend]) as (_lb, peer):
        for _ in range(2):
            resp = await peer.request()
            assert resp.status == 200 and resp.header("content-length") == str(MiB)
            assert resp.body == body


async def test_one_mebibyte_chunked_response_is_byte_exact() -> None:
    body = os.urandom(MiB)
    wire = chunked(*[body[i : i + 100_000] for i in range(0, MiB, 100_000)])
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
    async with open_backend(_fixed(response)) as backend, proxied([backend.backend]) as (_lb, peer):
        resp = await peer.request()
        assert resp.body == body


async def test_chunked_response_to_an_http10_client_is_not_chunked() -> None:
    # RFC 9112 6.1: Transfer-Encoding must not be sent in a response to an
    # HTTP/1.0 request; an HTTP/1.0 client would take the chunk sizes for data.
    wire = chunked(b"hello ", b"world")
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
    async with open_backend(_fixed(response)) as backend, proxied([backend.backend]) as (_lb, peer):
        await peer.send(b"GET / HTTP/1.0\r\nHost: e2e.test\r\n\r\n")
        raw = await peer.read_to_eof()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower(), head
    assert body == b"hello world"


async def test_a_request_pipelined_after_a_large_body_is_answered_too() -> None:
    body = os.urandom(300_000)
    async with open_echo() as echo, proxied([echo.backend]) as (_lb, peer):
        await peer.send(request_bytes("POST", "/big", body=body) + request_bytes("GET", "/second"))
        first, second = await peer.read_response(), await peer.read_response()
    assert (first.json()["target"], first.json()["sha256"]) == ("/big", sha(body))
    assert (second.json()["target"], second.json()["body_length"]) == ("/second", 0)


async def _reject_expect(server: Backend, peer: Peer) -> None:
    async def refuse(req: object) -> None:
        await peer.send(response_bytes(413, "Content Too Large", [("Connection", "close")], b"too big"))
        raise trio.BrokenResourceError("refused")  # stop: never read the body

    await server.next_request(peer, refuse)


async def test_expect_100_continue_refused_by_the_backend() -> None:
    async with open_backend(_reject_expect) as backend, proxied([backend.backend]) as (_lb, peer):
        await peer.send(request_bytes("POST", "/", [("Expect", "100-continue"), ("Content-Length", "100000")]))
        resp = await peer.read_response()  # the final answer comes without the body being sent
        assert resp.status == 413 and resp.body == b"too big"
        assert resp.header("connection") == "close"


async def test_a_malformed_chunk_later_in_a_streamed_body_gets_400() -> None:
    async with open_echo() as echo, proxied([echo.backend]) as (_lb, peer):
        await peer.send(request_bytes("POST", "/", [("Transfer-Encoding", "chunked")]) + b"5\r\nhello\r\n")
        await trio.testing.wait_all_tasks_blocked()  # the proxy is now streaming the body
        await peer.send(b"zz\r\nbad\r\n0\r\n\r\n")
        resp = await peer.read_response()
        assert resp.start_line == b"HTTP/1.1 400 Bad Request"
    assert echo.requests == 0  # the backend never got a complete request


async def test_a_client_leaving_mid_upload_is_not_an_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    async with open_echo() as echo, pylb.open_balancer([echo.backend]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            await peer.send(request_bytes("POST", "/", [("Content-Length", "100000")]) + b"x" * 1000)
            await trio.testing.wait_all_tasks_blocked()
        await trio.testing.wait_all_tasks_blocked()  # the proxy has seen the client leave
        assert lb.statistics()["connections"] == 0
        # and the balancer still works
        async with await Peer.connect(port_of(lb.url)) as peer:
            assert (await peer.request()).status == 200
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == [], [r.getMessage() for r in errors]
