"""TCP mode's relay lane at its edges: real sockets on 127.0.0.1."""

import hashlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import pytest
import trio

import pylb
from pylb import Backend, Timeouts
from pylb.net.server import Balancer
from pylb.testing import open_hello
from tests.test_tcp import NO_CHECKS, backend, echo, read_all

LINGER_RESET = struct.pack("ii", 1, 0)


@asynccontextmanager
async def tcp_balancer(backends: list[Backend], **kwargs: object) -> AsyncIterator[Balancer]:
    async with pylb.open_balancer(backends, bind="tcp://127.0.0.1:0", health=NO_CHECKS, **kwargs) as lb:  # type: ignore[arg-type]
        assert lb.relay is not None
        yield lb


async def connect(lb: Balancer, rcvbuf: int = 0) -> trio.SocketStream:
    if not rcvbuf:
        return await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", lb.addresses[0].port))
    return trio.SocketStream(sock)


def lane(lb: Balancer) -> dict[str, int]:
    stats = lb.statistics()["relay_lane"]
    assert isinstance(stats, dict)
    return stats


async def all_closed(lb: Balancer) -> None:
    """Wait until every connection has ended (the MAXCONN count is back to 0)."""
    with trio.fail_after(10):
        while lb.connections or lb.pool.statistics()["in_flight"]:
            await trio.sleep(0.01)


async def read_line(stream: trio.abc.ReceiveStream, buf: bytearray) -> bytes:
    while b"\n" not in buf:
        data = await stream.receive_some(4096)
        assert data, "closed before a whole line"
        buf += data
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


async def read_response(stream: trio.abc.ReceiveStream, buf: bytearray) -> bytes:
    """One HTTP response framed by Content-Length; returns its body."""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        assert data
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    body = bytearray(rest)
    while len(body) < length:
        data = await stream.receive_some(1 << 20)
        assert data
        body += data
    buf[:] = body[length:]
    return bytes(body[:length])


async def in_pieces(stream: trio.SocketStream) -> None:
    """Answers each line ``ping N`` with ``pong N`` sent in three pieces."""
    async with stream:
        buf = bytearray()
        while True:
            try:
                line = await read_line(stream, buf)
            except AssertionError:
                return
            answer = b"pong" + line[4:] + b"\n"
            for piece in (answer[:2], answer[2:5], answer[5:]):
                await stream.send_all(piece)
                await trio.sleep(0)


async def test_many_small_exchanges_answered_in_pieces() -> None:
    async with backend(in_pieces) as b, tcp_balancer([b]) as lb:
        client = await connect(lb)
        buf = bytearray()
        sent = received = 0
        for i in range(300):
            request = b"ping %d\n" % i
            await client.send_all(request)
            sent += len(request)
            assert await read_line(client, buf) == b"pong %d" % i
            received += len(b"pong %d\n" % i)
        await client.aclose()
        await all_closed(lb)
        stats = lane(lb)
        assert stats["relays"] == 1 and stats["bulk"] == 0 and stats["connections"] == 0
        tcp = lb.statistics()["tcp"]
        assert isinstance(tcp, dict)
        assert (tcp["bytes_in"], tcp["bytes_out"]) == (sent, received)


async def test_client_half_close_mid_stream_still_gets_the_rest() -> None:
    async def talker(stream: trio.SocketStream) -> None:
        async with stream:
            got = await read_all(stream)  # until the client's EOF
            for i in range(50):  # then answer in many small pieces
                await stream.send_all(b"%d:%d;" % (i, len(got)))
                await trio.sleep(0)

    async with backend(talker) as b, tcp_balancer([b]) as lb:
        client = await connect(lb)
        for _ in range(20):
            await client.send_all(b"x" * 100)
        await client.send_eof()
        answer = await read_all(client)
        assert answer == b"".join(b"%d:2000;" % i for i in range(50))
        await client.aclose()
        await all_closed(lb)
        assert lane(lb)["relays"] == 1


async def test_backend_half_close_in_the_lane_lets_the_client_go_on() -> None:
    async def greeter(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"hello")
            await stream.send_eof()
            got = await read_all(stream)
            assert got == b"y" * 3000

    async with backend(greeter) as b, tcp_balancer([b]) as lb:
        client = await connect(lb)
        assert await read_all(client) == b"hello"  # the backend's EOF came through
        for _ in range(30):
            await client.send_all(b"y" * 100)
        await client.send_eof()
        await client.aclose()
        await all_closed(lb)
        tcp = lb.statistics()["tcp"]
        assert isinstance(tcp, dict)
        assert (tcp["bytes_in"], tcp["bytes_out"]) == (3000, 5)


async def test_slow_reader_gets_everything_through_partial_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    from pylb.net import relaylane

    size = 8 * 1024 * 1024
    monkeypatch.setattr(relaylane, "RECEIVE_SIZE", 2 * size)  # no receive fills it: all stays in the lane
    piece = bytes(range(256)) * 16

    async def writer(stream: trio.SocketStream) -> None:
        async with stream:
            for _ in range(size // len(piece)):
                await stream.send_all(piece)

    async with backend(writer) as b, tcp_balancer([b]) as lb:
        client = await connect(lb, rcvbuf=4096)
        with trio.fail_after(10):  # not reading yet: the lane's sends toward the client fill up
            while not lane(lb)["partial"]:
                await trio.sleep(0.01)
        data = await read_all(client)
        assert len(data) == size
        assert hashlib.sha256(data).digest() == hashlib.sha256(piece * (size // len(piece))).digest()
        await client.aclose()
        await all_closed(lb)
        stats = lane(lb)
        assert stats["partial"] > 0 and stats["bulk"] == 0


@pytest.mark.parametrize("spliced", [True, False])
async def test_switching_to_bulk_mid_connection(monkeypatch: pytest.MonkeyPatch, spliced: bool) -> None:
    from pylb.net import splice

    monkeypatch.setattr(splice, "available", lambda: spliced)
    big = 8 * 1024 * 1024
    async with open_hello() as hello, tcp_balancer([hello.backend]) as lb:
        client = await connect(lb)
        buf = bytearray()
        for size in (100, 100, big, 100, big):
            await client.send_all(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
            assert await read_response(client, buf) == b"x" * size
        await client.aclose()
        await all_closed(lb)
        stats = lane(lb)
        assert stats["relays"] == 1 and stats["bulk"] == 1


async def test_a_big_upload_goes_bulk_with_its_first_bytes_kept() -> None:
    size = 4 * 1024 * 1024
    data = bytes(range(251)) * (size // 251)

    async def hasher(stream: trio.SocketStream) -> None:
        async with stream:
            got = await read_all(stream)
            await stream.send_all(hashlib.sha256(got).hexdigest().encode())

    async with backend(hasher) as b, tcp_balancer([b]) as lb:
        client = await connect(lb)
        await client.send_all(b"small first;")
        await trio.sleep(0.05)
        await client.send_all(data)
        await client.send_eof()
        assert await read_all(client) == hashlib.sha256(b"small first;" + data).hexdigest().encode()
        await client.aclose()
        await all_closed(lb)
        assert lane(lb)["bulk"] == 1


async def test_idle_timeout_closes_a_lane_connection() -> None:
    timeouts = Timeouts(client=0.5, server=0.5)
    async with backend(echo) as b, tcp_balancer([b], timeouts=timeouts) as lb:
        client = await connect(lb)
        await client.send_all(b"hi")
        assert await client.receive_some(10) == b"hi"
        assert lane(lb)["connections"] == 1
        with trio.fail_after(10):
            assert await read_all(client) == b""  # closed by pylb after the silence
        await all_closed(lb)
        assert lane(lb)["connections"] == 0


async def test_drain_timeout_closes_a_lane_connection_to_a_removed_backend() -> None:
    async with backend(echo) as a, backend(echo) as b, tcp_balancer([a], tcp_drain=0.5) as lb:
        client = await connect(lb)
        await client.send_all(b"before")
        assert await client.receive_some(100) == b"before"
        lb.set_backends([b])
        await client.send_all(b"after")
        assert await client.receive_some(100) == b"after"  # still relayed
        with trio.fail_after(10):
            assert await read_all(client) == b""  # until the drain timeout
        await all_closed(lb)
        assert lane(lb)["relays"] == 1


async def test_a_backend_reset_closes_both() -> None:
    async def resetter(stream: trio.SocketStream) -> None:
        await stream.receive_some(100)
        await stream.send_all(b"bye")
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        stream.socket.close()

    async with backend(resetter) as b, tcp_balancer([b]) as lb:
        client = await connect(lb)
        await client.send_all(b"hello")
        got = b""
        with trio.fail_after(10):
            with suppress(trio.BrokenResourceError):
                got = await read_all(client)
        assert got in (b"", b"bye")
        await client.aclose()
        await all_closed(lb)


async def test_a_client_reset_closes_the_backend_side() -> None:
    got, ended = trio.Event(), trio.Event()

    async def waiter(stream: trio.SocketStream) -> None:
        async with stream:
            assert await stream.receive_some(10) == b"hello"
            got.set()
            with suppress(trio.BrokenResourceError):
                await read_all(stream)
            ended.set()

    async with backend(waiter) as b, tcp_balancer([b]) as lb:
        client = await connect(lb)
        await client.send_all(b"hello")
        with trio.fail_after(10):
            await got.wait()  # relayed by the lane
        assert lane(lb)["connections"] == 1
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        client.socket.close()
        with trio.fail_after(10):
            await ended.wait()
        await all_closed(lb)
        tcp = lb.statistics()["tcp"]
        assert isinstance(tcp, dict)
        assert tcp["connections"] == 1 and tcp["bytes_in"] == 5


async def test_tls_and_accept_proxy_listeners_stay_on_the_task_path() -> None:
    async with backend(echo) as b:
        async with pylb.open_balancer(
            [b], bind="tcp://127.0.0.1:0", health=NO_CHECKS, accept_proxy=["10.0.0.0/8"]
        ) as lb:
            client = await connect(lb)
            await client.send_all(b"ping")
            assert await client.receive_some(10) == b"ping"
            await client.aclose()
            await all_closed(lb)
            assert lane(lb)["relays"] == 0


async def test_graceful_drain_waits_for_a_lane_connection_to_finish() -> None:
    async with backend(echo) as b, tcp_balancer([b]) as lb:
        client = await connect(lb)
        await client.send_all(b"one")
        assert await client.receive_some(10) == b"one"
        result: list[bool] = []

        async def drain() -> None:
            result.append(await lb.drain(30.0))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await trio.sleep(0.05)
            assert not result  # the connection is left to finish
            await client.send_all(b"two")
            assert await client.receive_some(10) == b"two"  # and still relayed meanwhile
            await client.send_eof()
            assert await read_all(client) == b""
        assert result == [True]
        assert lb.connections == 0


async def test_stopping_the_balancer_ends_open_lane_connections() -> None:
    async with backend(echo) as b:
        with trio.fail_after(10):
            async with tcp_balancer([b]) as lb:
                clients = [await connect(lb) for _ in range(3)]
                for client in clients:
                    await client.send_all(b"x")
                    assert await client.receive_some(10) == b"x"
                assert lane(lb)["connections"] == 3
        for client in clients:
            with trio.fail_after(10):
                assert await read_all(client) == b""
