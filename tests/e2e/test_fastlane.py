"""The fast lane (``pylb.net.fastlane``) and its edges with the per-connection
path: what it serves itself, what it hands over mid-stream (and takes back),
pipelining, backends closing keep-alive connections, and client timeouts.
Real sockets on 127.0.0.1; each test is bounded by a guard, none asserts on
time."""

from __future__ import annotations

import socket

import pytest
import trio

import pylb
from pylb import config as cfg
from pylb.core.record import RequestRecord
from tests.e2e.e2e_kit import (
    Backend,
    Message,
    Peer,
    answering,
    chunked,
    echo_response,
    open_backend,
    open_echo,
    port_of,
    proxied,
    request_bytes,
    response_bytes,
)

pytestmark = pytest.mark.timeout(60)
GUARD = 20  # seconds: a hang fails the test, it is not a speed assertion


def lane(lb: pylb.Balancer) -> dict[str, int]:
    stats = lb.statistics()["fast_lane"]
    assert isinstance(stats, dict)
    return stats


async def test_plain_http_keep_alive_requests_go_through_the_lane_with_the_same_heads() -> None:
    records: list[RequestRecord] = []
    with trio.fail_after(GUARD):
        async with open_echo("e") as echo, proxied([echo.backend], observer=records.append) as (lb, peer):
            spoofed = [("X-Forwarded-For", "10.0.0.1"), ("Connection", "keep-alive")]
            first = await peer.request("GET", "/a?x=1", spoofed)
            second = await peer.request("GET", "/a?x=1", spoofed)
            third = await peer.request("GET", "/b")
            assert first.status == second.status == third.status == 200
            # The lane served all three, the first one's dial included, the
            # second with the very same head.
            stats = lane(lb)
            assert stats["handoffs"] == 0 and stats["taken_back"] == 0 and stats["dials"] == 1
            assert stats["requests"] == 3
            assert first.json()["head"] == second.json()["head"]
            assert "X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n" in second.json()["head"]
            assert "X-Forwarded-Proto: http\r\nX-Forwarded-Port: " in third.json()["head"]
            assert first.raw_head == second.raw_head
            assert lb.statistics()["requests"] == 3
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]
            assert echo.connections == 1
    assert [(r.method, r.target, r.status, r.backend) for r in records] == [
        ("GET", "/a?x=1", 200, echo.backend),
        ("GET", "/a?x=1", 200, echo.backend),
        ("GET", "/b", 200, echo.backend),
    ]
    # bytes_sent: what each answer took on the wire (head and body)
    assert records[1].bytes_sent == records[0].bytes_sent == len(first.raw_head) + len(first.body)


async def test_a_body_still_arriving_is_handed_over_mid_stream_and_the_connection_comes_back() -> None:
    with trio.fail_after(GUARD):
        async with open_echo("e") as echo, proxied([echo.backend]) as (lb, peer):
            assert (await peer.request()).status == 200
            body = b"x" * 5000
            raw = request_bytes("POST", "/upload", body=body)
            await peer.send(raw[:-4000])  # the head and part of the body
            await trio.sleep(0.05)
            await peer.send(raw[-4000:])
            resp = await peer.read_response()
            assert resp.status == 200 and resp.json()["body_length"] == 5000
            before = lane(lb)
            assert (await peer.request("GET", "/after")).status == 200
            after = lane(lb)
            assert after["requests"] == before["requests"] + 1  # back in the lane
            assert after["handoffs"] == before["handoffs"] == 1 and after["taken_back"] == 1
            assert echo.requests == 3


async def test_chunked_and_large_responses_are_relayed_by_the_lane_and_bulk_ones_spliced_by_a_task() -> None:
    large = bytes(range(256)) * 400  # 100 KiB: more than one read, relayed with backpressure
    bulk = bytes(range(256)) * 4096  # 1 MiB: moved blind (splice), in a task

    def respond(req: Message) -> bytes:
        if req.target == "/chunked":
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            return head + chunked(b"hello ", b"world")
        if req.target == "/large":
            return response_bytes(200, "OK", [], large)
        if req.target == "/bulk":
            return response_bytes(200, "OK", [], bulk)
        return response_bytes(200, "OK", [], b"small")

    with trio.fail_after(GUARD):
        async with open_backend(answering(respond)) as server, proxied([server.backend]) as (lb, peer):
            cases = [("/", b"small"), ("/chunked", b"hello world"), ("/large", large), ("/", b"small")]
            for target, expected in cases:
                resp = await peer.request("GET", target)
                assert (resp.status, resp.body) == (200, expected), target
            assert lane(lb)["handoffs"] == 0 and lane(lb)["requests"] == 4
            resp = await peer.request("GET", "/bulk")
            assert (resp.status, resp.body) == (200, bulk)
            assert (await peer.request("GET", "/")).body == b"small"
            assert lane(lb)["handoffs"] == 1 and lane(lb)["taken_back"] == 1
            assert server.connections == 1  # the backend connection went back to the pool each time
            assert lb.statistics()["errors"] == {}


async def test_pipelined_requests_are_answered_in_order_across_both_paths() -> None:
    with trio.fail_after(GUARD):
        async with open_echo("e") as echo, proxied([echo.backend]) as (lb, peer):
            assert (await peer.request()).status == 200  # warm: an idle backend connection
            burst = (
                request_bytes("GET", "/1")
                + request_bytes("POST", "/2", body=b"abc")
                + request_bytes("PUT", "/3", [("Transfer-Encoding", "chunked")], chunked(b"ch", b"unk"))
                + request_bytes("GET", "/4")
                + request_bytes("GET", "/5", [("Connection", "close")])
            )
            await peer.send(burst)
            answers = [await peer.read_response() for _ in range(5)]
            assert [a.json()["target"] for a in answers] == ["/1", "/2", "/3", "/4", "/5"]
            assert [a.json()["body_length"] for a in answers] == [0, 3, 5, 0, 0]
            assert answers[-1].header("connection") == "close"
            assert await peer.at_eof()
            assert lane(lb)["requests"] == 6 and lane(lb)["handoffs"] == 0  # every body was here
            assert lb.statistics()["requests"] == 6


async def test_a_backend_closing_its_keep_alive_connections_is_no_error() -> None:
    def respond(req: Message) -> bytes:
        return response_bytes(200, "OK", [], b"bye")

    async def answer_once_then_close(server: Backend, peer: Peer) -> None:
        req = await server.next_request(peer)
        if req is not None:
            await peer.send(respond(req))  # no Connection: close, and then it closes

    with trio.fail_after(GUARD):
        async with open_backend(answer_once_then_close) as server, proxied([server.backend]) as (lb, peer):
            for _ in range(6):
                resp = await peer.request()
                assert (resp.status, resp.body) == (200, b"bye")
            assert lb.statistics()["errors"] == {}
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


async def test_a_reused_connection_closed_before_answering_replays_an_idempotent_request_only() -> None:
    async def close_on_second_request(server: Backend, peer: Peer) -> None:
        served = 0
        while (req := await server.next_request(peer)) is not None:
            if served == 1:
                return  # closes without an answer: the reused connection was stale
            served += 1
            await peer.send(echo_response("s")(req))

    with trio.fail_after(GUARD):
        async with open_backend(close_on_second_request) as server, proxied([server.backend]) as (lb, peer):
            assert (await peer.request()).status == 200
            resp = await peer.request("GET", "/again")
            assert resp.status == 200 and resp.json()["target"] == "/again"  # replayed on a fresh connection
            assert lb.statistics()["errors"] == {}
            resp = await peer.request("POST", "/once", body=b"pay")
            assert resp.status == 502  # not replayed: it may have been acted on
            assert lb.statistics()["errors"] == {502: 1}
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


async def test_client_timeouts_hold_in_the_lane() -> None:
    timeouts = pylb.Timeouts(client=0.5, request_head=0.5, server=0.5)

    async def never_answers(server: Backend, peer: Peer) -> None:
        while await server.next_request(peer) is not None:
            await trio.sleep_forever()

    with trio.fail_after(GUARD):
        async with open_echo("e") as echo, proxied([echo.backend], timeouts=timeouts) as (lb, peer):
            assert (await peer.request()).status == 200
            assert (await peer.request()).status == 200  # served by the lane
            assert await peer.at_eof()  # idle past the client timeout: closed, nothing said
            async with await Peer.connect(port_of(lb.url)) as slow:
                await slow.send(b"GET / HTTP/1.1\r\nHost: e2e.test\r\n")  # a head that never ends
                resp = await slow.read_response()
                assert resp.status == 408
                assert await slow.at_eof()
            assert lb.statistics()["errors"] == {408: 1}
        async with open_backend(never_answers) as server, proxied([server.backend], timeouts=timeouts) as (lb, peer):
            assert (await peer.request()).status == 504  # per-connection path (it dialed)
            async with await Peer.connect(port_of(lb.url)) as other:
                assert (await other.request()).status == 504  # the lane, on the idle connection
            assert lb.statistics()["errors"] == {504: 2}
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


async def test_drain_closes_idle_lane_connections_and_ends() -> None:
    with trio.fail_after(GUARD):
        async with open_echo("e") as echo, proxied([echo.backend]) as (lb, peer):
            assert (await peer.request()).status == 200
            assert (await peer.request()).status == 200
            assert lane(lb)["clients"] == 1
            assert await lb.drain(5.0)
            assert await peer.at_eof()
            assert lb.statistics()["connections"] == 0


async def test_remembered_heads_are_told_apart_by_method() -> None:
    """The same response head answers a GET (with a body) and a HEAD (none):
    the lane's memory of parsed heads must not mix them up."""

    def respond(req: Message) -> bytes:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        return head if req.method == "HEAD" else head + b"hello"

    with trio.fail_after(GUARD):
        async with open_backend(answering(respond)) as server, proxied([server.backend]) as (lb, peer):
            for method in ["GET", "GET", "HEAD", "GET", "HEAD", "HEAD", "GET"]:
                resp = await peer.request(method)
                assert (resp.status, resp.body) == (200, b"" if method == "HEAD" else b"hello"), method
                assert resp.header("content-length") == "5"
            assert lane(lb)["requests"] == 7
            assert lane(lb)["handoffs"] == 0
            assert lb.statistics()["errors"] == {}


async def test_responses_arriving_in_pieces_and_interim_responses() -> None:
    async def slow_pieces(server: Backend, peer: Peer) -> None:
        while (req := await server.next_request(peer)) is not None:
            if req.target == "/continue":
                await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                await trio.sleep(0.02)
            full = response_bytes(200, "OK", [("X-Target", req.target)], b"0123456789" * 10)
            for piece in (full[:10], full[10:60], full[60:-30], full[-30:]):
                await peer.send(piece)
                await trio.sleep(0.01)

    with trio.fail_after(GUARD):
        async with open_backend(slow_pieces) as server, proxied([server.backend]) as (lb, peer):
            for target in ["/a", "/b", "/continue", "/c"]:
                headers = [("Expect", "100-continue")] if target == "/continue" else []
                resp = await peer.request("POST", target, headers, body=b"payload")
                assert (resp.status, resp.header("x-target"), resp.body) == (200, target, b"0123456789" * 10)
                if target == "/continue":
                    assert [m.status for m in resp.interim] == [100]
            assert lane(lb)["requests"] == 4
            assert lane(lb)["handoffs"] == 0
            assert server.connections == 1
            assert lb.statistics()["errors"] == {}


# -- found by review: the lane and the per-connection path must agree on these ------------------

REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def _raw_backend(nursery: trio.Nursery, slow_body: bool = False) -> str:
    """A keep-alive backend answering "ok" (or, for /slow, 300 bytes in three pieces 1.3 s apart)."""

    async def handler(stream: trio.SocketStream) -> None:
        buf = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(v) for k, _, v in (x.partition(b":") for x in head.split(b"\r\n"))
                               if k.lower() == b"content-length"), 0)  # fmt: skip
                while len(buf) < length:
                    buf += await stream.receive_some(65536)
                buf = buf[length:]
                if b"/slow" in head:
                    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n" + b"a" * 100)
                    for piece in (b"b", b"c"):
                        await trio.sleep(1.3)
                        await stream.send_all(piece * 100)
                else:
                    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def _response(stream: trio.SocketStream, buf: bytes = b"") -> tuple[bytes, bytes]:
    """One response with a Content-Length: (the whole response, what follows it)."""
    while b"\r\n\r\n" not in buf:
        buf += await stream.receive_some(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += await stream.receive_some(65536)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


async def _until_eof(stream: trio.SocketStream) -> bytes:
    out = b""
    while data := await stream.receive_some(65536):
        out += data
    return out


async def test_a_client_that_half_closes_after_its_request_gets_the_answer_and_the_close() -> None:
    timeouts = pylb.Timeouts(client=60, request_head=60)  # the guard fires long before these would
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            backend = await _raw_backend(nursery)
            async with pylb.open_balancer([backend], timeouts=timeouts, health=pylb.HealthCheck(enabled=False)) as lb:
                port = port_of(lb.url)
                for warm in (False, True):
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    if warm:  # the lane serves it from the second request on
                        await stream.send_all(REQ)
                        assert (await _response(stream))[0].endswith(b"ok")
                    # `printf 'GET ...' | nc`: corked, the FIN leaves in the request's own segment,
                    # so that no readiness event of its own announces it.
                    stream.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                    await stream.send_all(REQ)
                    await stream.send_eof()
                    assert (await _until_eof(stream)).endswith(b"\r\n\r\nok")  # answered, then closed
                    await stream.aclose()
                while lb.connections:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()


async def test_an_empty_line_after_a_request_leaves_the_connection_idle() -> None:
    """RFC 9112 2.2: a CRLF after a body (some clients send one) is ignored:
    no 408 for a request that never began, and drain closes the connection
    as idle."""
    timeouts = pylb.Timeouts(client=60, request_head=0.5)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            backend = await _raw_backend(nursery)
            async with pylb.open_balancer([backend], timeouts=timeouts, health=pylb.HealthCheck(enabled=False)) as lb:
                stream = await trio.open_tcp_stream("127.0.0.1", port_of(lb.url))
                await stream.send_all(REQ)
                await _response(stream)
                await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\n")
                answer, rest = await _response(stream)
                assert answer.startswith(b"HTTP/1.1 200") and rest == b""
                await trio.sleep(1.0)  # twice the request-head timeout: no request began
                assert await lb.drain(5.0)  # idle: closed at once
                assert await _until_eof(stream) == b""  # closed without a 408
                assert 408 not in lb.statistics()["errors"]  # type: ignore[operator]
            nursery.cancel_scope.cancel()


async def test_the_server_timeout_counts_from_the_last_body_bytes() -> None:
    timeouts = pylb.Timeouts(server=2.0)  # the body's pieces come 1.3 s apart: 2.6 s in all
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            backend = await _raw_backend(nursery)
            async with pylb.open_balancer([backend], timeouts=timeouts, health=pylb.HealthCheck(enabled=False)) as lb:
                stream = await trio.open_tcp_stream("127.0.0.1", port_of(lb.url))
                await stream.send_all(REQ)
                await _response(stream)  # the backend connection is idle now: the lane takes /slow
                await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
                answer, _ = await _response(stream)
                assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"a" * 100 + b"b" * 100 + b"c" * 100)
                assert lane(lb)["requests"] == 2
                await stream.aclose()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("lanes", [True, False])
async def test_lanes_false_gives_every_connection_a_task_and_serves_the_same(lanes: bool) -> None:
    """--lanes false (PYLB_LANES): the kill switch for both lanes."""
    config = cfg.from_sources({}, {"PYLB_LANES": str(lanes).lower()})
    assert config.lanes is lanes
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            backend = await _raw_backend(nursery)
            binds = (pylb.Bind.parse("127.0.0.1:0"), pylb.Bind.parse("tcp://127.0.0.1:0"))
            lb = pylb.Balancer(config.with_changes(binds=binds, backends=(pylb.Backend.parse(backend),)))
            await nursery.start(lb.run)
            http, tcp = (a.port for a in lb.addresses)
            for port in (http, tcp):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                for _ in range(3):
                    await stream.send_all(REQ)
                    answer, rest = await _response(stream)
                    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok") and not rest
                await stream.aclose()
            stats = lb.statistics()
            assert (stats["fast_lane"] is not None) is lanes and (stats["relay_lane"] is not None) is lanes
            if lanes:
                assert lane(lb)["requests"] == 3
            nursery.cancel_scope.cancel()
