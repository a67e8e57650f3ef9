"""A 1 GiB download and a 1 GiB upload through pylb, in bounded memory.

pylb runs as a real process (so its peak RSS is its own); the backend is an
in-process ``pylb hello`` and the client a raw trio stream."""

import pytest
import trio

from pylb.testing import open_hello
from tests.conftest import run_pylb

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers

GIB = 1 << 30
RSS_LIMIT_KIB = 96 * 1024  # an idle pylb is about 30 MiB; buffers must not grow with the body


async def read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        assert data, f"closed before the head ended: {buf!r}"
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


async def test_one_gib_each_way_in_bounded_memory() -> None:
    async with open_hello("big") as hello:
        with run_pylb("--bind", "127.0.0.1:0", "--backend", str(hello.backend)) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.port)
            await stream.send_all(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % GIB)
            head, got = await read_head(stream)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: %d" % GIB in head
            received = len(got)
            while received < GIB:
                data = await stream.receive_some(1 << 20)
                assert data, f"download ended at {received} bytes"
                received += len(data)
            assert received == GIB

            await stream.send_all(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % GIB)
            block = b"u" * (1 << 20)
            for _ in range(GIB // len(block)):
                await stream.send_all(block)
            head, _ = await read_head(stream)
            assert b"X-Request-Bytes: %d" % GIB in head
            await stream.aclose()
            peak = lb.peak_rss_kib()
            assert peak < RSS_LIMIT_KIB, f"peak RSS {peak} KiB while streaming 1 GiB each way"
            print(f"pylb peak RSS streaming 1 GiB each way: {peak / 1024:.1f} MiB")


async def test_large_bodies_are_byte_exact_with_and_without_splice(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The zero-copy path and the user-space copy give the same bytes."""
    import pylb
    from pylb.net import splice

    size = 3 * 1024 * 1024 + 17
    for spliced in (True, False):
        monkeypatch.setattr(splice, "available", lambda spliced=spliced: spliced)
        async with open_hello() as hello, pylb.open_balancer([hello.backend]) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
            await stream.send_all(b"POST /bytes/%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (size, size))
            await stream.send_all(b"p" * size)
            head, body = await read_head(stream)
            assert b"X-Request-Bytes: %d" % size in head
            while len(body) < size:
                data = await stream.receive_some(1 << 20)
                assert data
                body += data
            assert body == b"x" * size
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection is still usable
            head, _ = await read_head(stream)
            assert head.startswith(b"HTTP/1.1 200 OK")
            await stream.aclose()
