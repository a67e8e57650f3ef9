"""Micro-benchmark: requests through pylb's HTTP path over memory streams.

No sockets, no load generator: the figure is pylb's own per-request cost
(parsing, routing, balancing, head rewriting, relaying), so a regression on
the hot path shows up here first. Run it with

    python -m pytest benchmarks/micro --benchmark-only

It is not part of the test suite (CI runs ``tests/``) and asserts nothing
about speed."""

import trio
import trio.testing

from pylb import Backend, Balancer, Config, HealthCheck
from pylb.testing import MemoryNetwork

REQUESTS = 500
BACKEND = Backend("10.0.0.1", 80)
REQUEST = b"GET /index.html HTTP/1.1\r\nHost: example.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n"
    b"Connection: keep-alive\r\n\r\n" + b"x" * 100
)


async def backend(stream: trio.abc.Stream) -> None:
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
        _, _, buf = buf.partition(b"\r\n\r\n")
        await stream.send_all(RESPONSE)


async def requests_through_pylb(n: int) -> None:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.add(BACKEND, backend)
        lb = Balancer(Config(binds=(), backends=(BACKEND,)), dialer=net.dial, health=HealthCheck(enabled=False))
        await nursery.start(lb.run)
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(lb.serve_stream, server, ("192.0.2.1", 5000))
        for _ in range(n):
            await client.send_all(REQUEST)
            got = b""
            while len(got) < len(RESPONSE):
                got += await client.receive_some(65536)
        nursery.cancel_scope.cancel()


def test_keepalive_requests_over_memory_streams(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info["requests_per_round"] = REQUESTS
    benchmark.pedantic(trio.run, args=(requests_through_pylb, REQUESTS), rounds=5, warmup_rounds=1)
