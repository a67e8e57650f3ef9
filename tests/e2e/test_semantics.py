"""Message semantics: bodiless responses, 1xx, connection management, invalid responses."""

from __future__ import annotations

import pytest
from e2e_kit import Backend, Message, Peer, open_backend, port_of, proxied, request_bytes, response_bytes, served_by

import pylb
from pylb.testing import open_hello

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers


def _by_path(req: Message) -> bytes:
    path = req.target
    if path == "/204":
        return b"HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n"
    if path == "/304":
        # a 304 may carry the Content-Length of the representation it stands for
        return b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n'
    if path == "/head-length":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"  # answer to HEAD: no body
    return response_bytes(200, "OK", [("X-Path", path)], f"body of {path}".encode())


async def _path_handler(server: Backend, peer: Peer) -> None:
    while (req := await server.next_request(peer)) is not None:
        await peer.send(_by_path(req))


async def test_head_gets_no_body_and_the_connection_stays_in_step() -> None:
    async with open_hello("h") as hello, proxied([hello.backend]) as (_lb, peer):
        head = await peer.request("HEAD", "/")
        assert head.status == 200 and head.body == b""
        assert head.header("content-length") == str(len(b"Hello from h\n"))
        get = await peer.request("GET", "/")
        assert get.status == 200 and get.body == b"Hello from h\n"
        assert peer.buf == b""


async def test_head_with_content_length_from_a_custom_backend() -> None:
    async with open_backend(_path_handler) as backend, proxied([backend.backend]) as (_lb, peer):
        head = await peer.request("HEAD", "/head-length")
        assert head.status == 200 and head.header("content-length") == "5000"
        assert (await peer.request("GET", "/x")).body == b"body of /x"
        assert peer.buf == b""


async def test_204_and_304_have_no_body_and_keep_the_connection_usable() -> None:
    async with open_backend(_path_handler) as backend, proxied([backend.backend]) as (_lb, peer):
        for _ in range(3):
            r204 = await peer.request("GET", "/204")
            assert (r204.status, r204.body, r204.header("x-kind")) == (204, b"", "204")
            r304 = await peer.request("GET", "/304", [("If-None-Match", '"v1"')])
            assert (r304.status, r304.body, r304.header("etag")) == (304, b"", '"v1"')
            ok = await peer.request("GET", "/after")
            assert (ok.status, ok.body) == (200, b"body of /after")
        assert peer.buf == b""
    assert backend.connections == 1 and backend.requests == 9


async def _early_hints(server: Backend, peer: Peer) -> None:
    while (req := await server.next_request(peer)) is not None:
        await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n")
        await peer.send(response_bytes(200, "OK", [("X-Served-By", "hints")], f"final {req.target}".encode()))


async def test_1xx_interim_responses_are_relayed_before_the_final_one() -> None:
    async with open_backend(_early_hints) as backend, proxied([backend.backend]) as (_lb, peer):
        for i in range(2):
            resp = await peer.request("GET", f"/{i}")
            assert [m.status for m in resp.interim] == [103, 103]
            assert [m.header("link") for m in resp.interim] == [
                "</style.css>; rel=preload",
                "</app.js>; rel=preload",
            ]
            assert resp.status == 200 and resp.body == f"final /{i}".encode()
            assert served_by(resp) == "hints"


async def test_1xx_is_not_sent_to_an_http10_client() -> None:
    async with open_backend(_early_hints) as backend, proxied([backend.backend]) as (_lb, peer):
        await peer.send(request_bytes("GET", "/old", version="HTTP/1.0"))
        resp = await peer.read_response()
        assert resp.interim == []
        assert resp.status == 200 and resp.body == b"final /old"


async def test_http10_keepalive_client_gets_keepalive() -> None:
    async with open_hello("h") as hello, proxied([hello.backend]) as (_lb, peer):
        for _ in range(3):
            await peer.send(request_bytes("GET", "/", [("Connection", "keep-alive")], version="HTTP/1.0"))
            resp = await peer.read_response()
            assert resp.status == 200 and resp.body == b"Hello from h\n"
            assert resp.header("connection").lower() == "keep-alive"  # type: ignore[union-attr]
    assert hello.requests == 3


async def test_client_connection_close_is_honoured_and_the_backend_connection_kept() -> None:
    async with open_hello("h") as hello, pylb.open_balancer([hello.backend]) as lb:
        for _ in range(5):
            async with await Peer.connect(port_of(lb.url)) as peer:
                resp = await peer.request("GET", "/", [("Connection", "close")])
                assert resp.status == 200 and resp.header("connection") == "close"
                assert await peer.at_eof()
        assert lb.statistics()["upstream"]["dials"] == 1  # type: ignore[index]
    assert hello.requests == 5


async def _close_after_each(server: Backend, peer: Peer) -> None:
    req = await server.next_request(peer)
    if req is not None:
        await peer.send(response_bytes(200, "OK", [("Connection", "close")], f"once {req.target}".encode()))


async def test_backend_connection_close_does_not_close_the_client_connection() -> None:
    async with open_backend(_close_after_each) as backend, proxied([backend.backend]) as (_lb, peer):
        for i in range(5):
            resp = await peer.request("GET", f"/{i}")
            assert resp.status == 200 and resp.body == f"once /{i}".encode()
            assert resp.all("connection") in ([], ["keep-alive"])
    assert backend.connections == 5


async def _overlong(server: Backend, peer: Peer) -> None:
    while (req := await server.next_request(peer)) is not None:
        # five bytes more than Content-Length says, as a buggy backend might send
        await peer.send(response_bytes(200, "OK", [], f"right {req.target}".encode()) + b"EXTRA")


async def test_bytes_after_a_response_are_not_relayed() -> None:
    async with open_backend(_overlong) as backend, proxied([backend.backend]) as (_lb, peer):
        for i in range(3):
            resp = await peer.request("GET", f"/{i}")
            assert resp.body == f"right /{i}".encode()
        assert peer.buf == b""


BAD_RESPONSES = {
    "both framings": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "bad status line": b"HTTP/1.1 OK\r\n\r\n",
    "head over 16 KiB": b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 17_000 + b"\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_RESPONSES))
async def test_an_invalid_response_head_becomes_502(name: str) -> None:
    async def handler(server: Backend, peer: Peer) -> None:
        if await server.next_request(peer) is not None:
            await peer.send(BAD_RESPONSES[name])

    async with open_backend(handler) as backend, proxied([backend.backend]) as (_lb, peer):
        resp = await peer.request()
        assert resp.start_line == b"HTTP/1.1 502 Bad Gateway"
