"""TCP mode end to end: real sockets on 127.0.0.1."""

import hashlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trustme

import pylb
from pylb import Backend, HealthCheck
from pylb.core import proxyproto
from pylb.testing import open_hello
from tests.conftest import run_pylb

NO_CHECKS = HealthCheck(enabled=False)
Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def backend(handler: Handler) -> AsyncIterator[Backend]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield Backend("127.0.0.1", listeners[0].socket.getsockname()[1])
        nursery.cancel_scope.cancel()


async def echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


def named(name: bytes) -> Handler:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(name)
            async for _ in stream:
                pass

    return handler


async def proxy_reporter(stream: trio.SocketStream) -> None:
    """Answers with the client address its PROXY header names."""
    async with stream:
        buf = b""
        header = None
        while header is None:
            buf += await stream.receive_some(1024)
            header = proxyproto.parse(buf)
        rest = buf[header.length :] + await read_all(stream)  # until the client's EOF
        await stream.send_all(repr(header.source).encode() + b"|" + rest)


async def read_all(stream: trio.abc.Stream, size: int | None = None) -> bytes:
    out = b""
    while size is None or len(out) < size:
        data = await stream.receive_some(65536)
        if not data:
            break
        out += data
    return out


async def test_connections_are_balanced_one_by_one() -> None:
    async with backend(named(b"a")) as a, backend(named(b"b")) as b:
        async with pylb.open_balancer([a, b], bind="tcp://127.0.0.1:0", health=NO_CHECKS) as lb:
            port = lb.addresses[0].port
            seen = []
            for _ in range(4):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                seen.append(await stream.receive_some(10))
                await stream.aclose()
            assert seen == [b"a", b"b", b"a", b"b"]


async def test_source_balancing_sticks_a_client_to_one_backend() -> None:
    async with backend(named(b"a")) as a, backend(named(b"b")) as b:
        async with pylb.open_balancer([a, b], bind="tcp://127.0.0.1:0", balance="source", health=NO_CHECKS) as lb:
            seen = set()
            for _ in range(6):
                stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
                seen.add(await stream.receive_some(10))
                await stream.aclose()
            assert len(seen) == 1


async def test_client_half_close_still_gets_the_whole_answer() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with backend(echo) as b, pylb.open_balancer([b], bind="tcp://127.0.0.1:0", health=NO_CHECKS) as lb:
        stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                await stream.send_all(payload)
                await stream.send_eof()  # the client is done talking, still listening

            nursery.start_soon(send)
            got = await read_all(stream)
        assert got == payload
        await stream.aclose()


async def test_backend_half_close_lets_the_client_go_on_sending() -> None:
    async def speaks_then_listens(stream: trio.SocketStream) -> None:
        await stream.send_all(b"hello, then silence")
        await stream.send_eof()
        heard = await read_all(stream)
        # the answer goes nowhere (write side shut); record it in the name of a new connection
        received.append(heard)
        await stream.aclose()

    received: list[bytes] = []
    async with (
        backend(speaks_then_listens) as b,
        pylb.open_balancer([b], bind="tcp://127.0.0.1:0", health=NO_CHECKS) as lb,
    ):
        stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
        assert await read_all(stream) == b"hello, then silence"  # EOF passed on
        await stream.send_all(b"still talking")
        await stream.send_eof()
        with trio.fail_after(10):
            while not received:
                await trio.sleep(0.01)
        assert received == [b"still talking"]
        await stream.aclose()


async def test_connect_failure_goes_to_another_backend() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = Backend("127.0.0.1", s.getsockname()[1])  # bound, not listening: refused
        async with backend(named(b"live")) as live:
            async with pylb.open_balancer([dead, live], bind="tcp://127.0.0.1:0", health=NO_CHECKS) as lb:
                for _ in range(4):
                    stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
                    assert await stream.receive_some(10) == b"live"
                    await stream.aclose()


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_send_proxy_tells_the_backend_who_the_client_is(version: str) -> None:
    async with backend(proxy_reporter) as b:
        async with pylb.open_balancer(
            [b], bind="tcp://127.0.0.1:0", health=NO_CHECKS, send_proxy=version
        ) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
            local_port = stream.socket.getsockname()[1]
            await stream.send_all(b"payload")
            await stream.send_eof()
            assert await read_all(stream) == repr(("127.0.0.1", local_port)).encode() + b"|payload"


async def test_accept_proxy_from_a_trusted_source_names_the_real_client() -> None:
    async with backend(proxy_reporter) as b:
        async with pylb.open_balancer(
            [b], bind="tcp://127.0.0.1:0", health=NO_CHECKS, send_proxy="v1", accept_proxy=["127.0.0.0/8"]
        ) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
            await stream.send_all(proxyproto.encode("v2", ("203.0.113.9", 4242), ("127.0.0.1", 1)) + b"after")
            await stream.send_eof()
            assert await read_all(stream) == b"('203.0.113.9', 4242)|after"


async def test_accept_proxy_ignores_untrusted_sources_and_http_gets_the_real_client_too() -> None:
    async with open_hello() as hello:
        async with pylb.open_balancer([hello.backend], health=NO_CHECKS, accept_proxy=["127.0.0.0/8"]) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
            header = proxyproto.encode("v1", ("203.0.113.9", 4242), ("127.0.0.1", 80))
            await stream.send_all(header + b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert b"X-Forwarded-For: 203.0.113.9\r\n" in await read_all(stream)
        async with pylb.open_balancer([hello.backend], health=NO_CHECKS, accept_proxy=["10.0.0.0/8"]) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
            await stream.send_all(b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert b"X-Forwarded-For: 127.0.0.1\r\n" in await read_all(stream)


async def test_tls_port_terminates_and_forwards_plain_tcp() -> None:
    ca = trustme.CA()
    async with backend(echo) as b:
        async with pylb.open_balancer([b], bind="tls://127.0.0.1:0", tls=ca, health=NO_CHECKS) as lb:
            port = next(a.port for a in lb.addresses if a.scheme == "tls")
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(raw, ctx, server_hostname="localhost")
            await tls.send_all(b"over tls")
            assert await tls.receive_some(100) == b"over tls"
            await tls.aclose()


async def test_tls_port_ends_with_close_notify_when_the_backend_closes() -> None:
    async def says_and_closes(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"x" * 100_000)

    ca = trustme.CA()
    async with backend(says_and_closes) as b:
        async with pylb.open_balancer([b], bind="tls://127.0.0.1:0", tls=ca, health=NO_CHECKS) as lb:
            port = next(a.port for a in lb.addresses if a.scheme == "tls")
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
            tls = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_hostname="localhost")
            with trio.fail_after(5):
                # All of it, then a clean end: read_all would raise BrokenResourceError on a bare TCP close.
                assert await read_all(tls) == b"x" * 100_000
            await tls.aclose()


async def test_hot_swap_keeps_open_connections_until_the_drain_timeout() -> None:
    async with backend(echo) as a, backend(named(b"b")) as b:
        async with pylb.open_balancer([a], bind="tcp://127.0.0.1:0", health=NO_CHECKS, tcp_drain=1.0) as lb:
            port = lb.addresses[0].port
            old = await trio.open_tcp_stream("127.0.0.1", port)
            await old.send_all(b"before")
            assert await old.receive_some(100) == b"before"
            lb.set_backends([b])
            new = await trio.open_tcp_stream("127.0.0.1", port)
            assert await new.receive_some(10) == b"b"  # new connections never go to the removed one
            await old.send_all(b"after")
            assert await old.receive_some(100) == b"after"  # the old one still works
            with trio.fail_after(5):
                assert await read_all(old) == b""  # ...until the drain timeout closes it
            await new.aclose()


@pytest.mark.parametrize("spliced", [True, False])
async def test_bulk_bytes_are_exact_with_and_without_splice(monkeypatch, spliced: bool) -> None:  # type: ignore[no-untyped-def]
    from pylb.net import splice

    monkeypatch.setattr(splice, "available", lambda: spliced)
    size = 8 * 1024 * 1024
    async with open_hello() as hello:
        async with pylb.open_balancer([hello.backend], bind="tcp://127.0.0.1:0", health=NO_CHECKS) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
            await stream.send_all(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % size)
            data = await read_all(stream)
            _, _, body = data.partition(b"\r\n\r\n")
            assert hashlib.sha256(body).digest() == hashlib.sha256(b"x" * size).digest()


async def test_one_gib_through_tcp_mode_in_bounded_memory() -> None:
    gib = 1 << 30
    async with open_hello() as hello:
        with run_pylb("--bind", "tcp://127.0.0.1:0", "--backend", str(hello.backend)) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.port)
            await stream.send_all(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % gib)
            total = 0
            while True:
                data = await stream.receive_some(1 << 20)
                if not data:
                    break
                total += len(data)
            assert total > gib
            peak = lb.peak_rss_kib()
            assert peak < 96 * 1024, f"peak RSS {peak} KiB"
            print(f"pylb TCP mode peak RSS moving 1 GiB: {peak / 1024:.1f} MiB")
