"""Hop-by-hop headers stripped both ways; X-Forwarded-* set by the proxy."""

from __future__ import annotations

import pytest
from e2e_kit import Backend, Message, Peer, open_backend, open_echo, parse_head, port_of, proxied, response_bytes

import pylb

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers

HOP_BY_HOP_REQUEST = [
    ("Connection", "keep-alive, X-Hop-A, x-hop-b"),
    ("X-Hop-A", "1"),
    ("X-Hop-B", "2"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("TE", "trailers"),
    ("Proxy-Authorization", "Basic c2VjcmV0OnNlY3JldA=="),
    ("Proxy-Connection", "keep-alive"),
    ("Upgrade", "h2c"),
]
END_TO_END_REQUEST = [
    ("Authorization", "Bearer t0ken"),
    ("Trailer", "X-Checksum"),  # end-to-end (RFC 9110 6.6.2; RFC 2616 listed it as hop-by-hop)
    ("X-Custom", "kept"),
    ("Accept", "*/*"),
    ("Cookie", "a=1"),
]


async def _echoed(port: int, headers: list[tuple[str, str]], host: str = "app.example:8080") -> Message:
    async with await Peer.connect(port) as peer:
        resp = await peer.request("GET", "/h", headers, host=host)
        assert resp.status == 200, resp
        return resp


def _seen(resp: Message) -> Message:
    """The request head as the backend received it."""
    raw = resp.json()["head"].encode("latin-1")
    line, headers = parse_head(raw)
    return Message(line, headers, raw)


async def test_hop_by_hop_request_headers_do_not_reach_the_backend() -> None:
    async with open_echo() as echo, pylb.open_balancer([echo.backend]) as lb:
        seen = _seen(await _echoed(port_of(lb.url), HOP_BY_HOP_REQUEST + END_TO_END_REQUEST))
    names = seen.names()
    for name, _ in HOP_BY_HOP_REQUEST:
        assert name.lower() not in names, f"{name} reached the backend: {seen.raw_head!r}"
    for name, value in END_TO_END_REQUEST:
        assert seen.all(name) == [value]
    assert seen.header("host") == "app.example:8080"
    assert seen.start_line == b"GET /h HTTP/1.1"


async def test_a_browsers_connection_keep_alive_does_not_reach_the_backend() -> None:
    browser = [
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Connection", "keep-alive"),
        ("Upgrade-Insecure-Requests", "1"),
    ]
    async with open_echo() as echo, pylb.open_balancer([echo.backend]) as lb:
        for _ in range(2):  # the second identical head may come from a cache of parsed heads
            seen = _seen(await _echoed(port_of(lb.url), browser))
            assert "connection" not in seen.names(), seen.raw_head
            assert b"\r\nAccept-Encoding: gzip, deflate, br\r\nUpgrade-Insecure-Requests: 1\r\n" in seen.raw_head


async def test_forwarding_headers_are_added() -> None:
    async with open_echo() as echo, pylb.open_balancer([echo.backend]) as lb:
        seen = _seen(await _echoed(port_of(lb.url), []))
        assert seen.all("x-forwarded-for") == ["127.0.0.1"]
        assert seen.all("x-forwarded-proto") == ["http"]
        assert seen.all("x-forwarded-port") == [str(port_of(lb.url))]
        assert seen.all("x-forwarded-host") == ["app.example:8080"]


def _xff(seen: Message) -> list[str]:
    return [part.strip() for value in seen.all("x-forwarded-for") for part in value.split(",")]


async def test_x_forwarded_for_appends_to_what_the_client_sent() -> None:
    async with open_echo() as echo, pylb.open_balancer([echo.backend]) as lb:
        one = _seen(await _echoed(port_of(lb.url), [("X-Forwarded-For", "203.0.113.7")]))
        two = _seen(
            await _echoed(
                port_of(lb.url), [("X-Forwarded-For", "203.0.113.7, 10.0.0.1"), ("X-Forwarded-For", "10.0.0.2")]
            )
        )
    assert _xff(one) == ["203.0.113.7", "127.0.0.1"]
    assert _xff(two) == ["203.0.113.7", "10.0.0.1", "10.0.0.2", "127.0.0.1"]


async def test_client_sent_forwarding_headers_are_replaced_not_forwarded() -> None:
    spoof = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "443"),
        ("x-forwarded-proto", "gopher"),
    ]
    async with open_echo() as echo, pylb.open_balancer([echo.backend]) as lb:
        seen = _seen(await _echoed(port_of(lb.url), spoof, host="real.example"))
        assert seen.all("x-forwarded-proto") == ["http"]
        assert seen.all("x-forwarded-host") == ["real.example"]
        assert seen.all("x-forwarded-port") == [str(port_of(lb.url))]
        assert "evil.example" not in seen.raw_head.decode("latin-1")
        assert "gopher" not in seen.raw_head.decode("latin-1")


async def test_forwarding_headers_on_every_request_of_a_keepalive_connection() -> None:
    async with open_echo() as echo, proxied([echo.backend]) as (_lb, peer):
        for i in range(3):
            seen = _seen(await peer.request("GET", f"/{i}", host=f"h{i}.example"))
            assert seen.all("x-forwarded-host") == [f"h{i}.example"]
            assert seen.all("x-forwarded-for") == ["127.0.0.1"]


async def _hoppy_response(server: Backend, peer: Peer) -> None:
    while await server.next_request(peer) is not None:
        await peer.send(
            response_bytes(
                200,
                "OK",
                [
                    ("Connection", "keep-alive, X-Secret"),
                    ("X-Secret", "internal"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Authenticate", "Basic realm=x"),
                    ("Trailer", "X-Checksum"),
                    ("Upgrade", "h2c"),
                    ("Proxy-Connection", "keep-alive"),
                    ("X-Public", "yes"),
                    ("Set-Cookie", "s=1"),
                ],
                b"body",
            )
        )


async def test_hop_by_hop_response_headers_do_not_reach_the_client() -> None:
    async with open_backend(_hoppy_response) as backend, proxied([backend.backend]) as (_lb, peer):
        resp = await peer.request()
        names = resp.names()
        for name in ("x-secret", "keep-alive", "proxy-authenticate", "upgrade", "proxy-connection"):
            assert name not in names, f"{name} reached the client: {resp.raw_head!r}"
        assert resp.header("trailer") == "X-Checksum"  # end-to-end (RFC 9110 6.6.2)
        assert resp.all("connection") in ([], ["keep-alive"])
        assert resp.header("x-public") == "yes" and resp.header("set-cookie") == "s=1"
        assert resp.body == b"body"
        assert (await peer.request()).status == 200  # still keep-alive

