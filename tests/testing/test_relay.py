"""The fault relay as a TCP proxy of its own: bytes in, bytes out, on a clock.

These faults act below HTTP (pieces, rates, the moment a connection closes),
so they are shown on raw TCP through a relay to an echo server, some on
trio's MockClock, where a 30-second latency passes instantly.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from pylb.core.models import Backend
from pylb.testing.faults import Bandwidth, Latency, Slicer, SlowClose, Timeout
from pylb.testing.relay import FaultRelay

EPS = 1e-9  # delays added up in floating point


async def echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def one_answer_then_close(stream: trio.SocketStream) -> None:
    async with stream:
        await stream.receive_some()
        await stream.send_all(b"bye")


@asynccontextmanager
async def relayed(handler: object, seed: object = 1) -> AsyncIterator[FaultRelay]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        relay = FaultRelay(Backend("127.0.0.1", port), random.Random(seed))
        await nursery.start(relay.run)
        yield relay
        nursery.cancel_scope.cancel()


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some()
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


async def test_latency_on_a_mock_clock_passes_instantly_and_is_exact(autojump_clock: trio.testing.MockClock) -> None:
    async with relayed(echo) as relay:
        relay.apply(Latency(30_000), "upstream")
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        start = trio.current_time()
        await stream.send_all(b"ping")
        assert await receive_exactly(stream, 4) == b"ping"
        assert trio.current_time() - start >= 30.0
        await stream.aclose()


async def test_removing_a_fault_ends_its_wait_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with relayed(echo) as relay:
        applied = relay.apply(Latency(3_600_000), "downstream")
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await stream.send_all(b"ping")
        with trio.move_on_after(10):
            await stream.receive_some()
        start = trio.current_time()
        relay.remove(applied)
        assert await receive_exactly(stream, 4) == b"ping"
        assert trio.current_time() - start < 3600  # not the hour the fault asked
        await stream.aclose()


async def test_slicer_sends_pieces_apart(autojump_clock: trio.testing.MockClock) -> None:
    async with relayed(echo) as relay:
        relay.apply(Slicer(10, delay_ms=50), "downstream")
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        start = trio.current_time()
        await stream.send_all(bytes(range(100)))
        assert await receive_exactly(stream, 100) == bytes(range(100))
        assert trio.current_time() - start >= 9 * 0.05 - EPS  # ten pieces, nine gaps
        await stream.aclose()


async def test_bandwidth_limits_the_rate(autojump_clock: trio.testing.MockClock) -> None:
    async with relayed(echo) as relay:
        relay.apply(Bandwidth(kib_per_s=64), "downstream")
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        start = trio.current_time()
        payload = b"y" * 32 * 1024
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, payload)
            assert await receive_exactly(stream, len(payload)) == payload
        assert trio.current_time() - start >= 0.5 - EPS  # 32 KiB at 64 KiB/s
        await stream.aclose()


async def test_slow_close_holds_the_end_of_the_connection_back(autojump_clock: trio.testing.MockClock) -> None:
    async with relayed(one_answer_then_close) as relay:
        relay.apply(SlowClose(5000), "downstream")
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await stream.send_all(b"hi")
        assert await receive_exactly(stream, 3) == b"bye"
        start = trio.current_time()
        assert await stream.receive_some() == b""  # the end comes, five seconds late
        assert trio.current_time() - start >= 5.0
        await stream.aclose()


async def test_timeout_with_a_duration_closes_an_idle_connection(autojump_clock: trio.testing.MockClock) -> None:
    async with relayed(echo) as relay:
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await stream.send_all(b"a")
        assert await receive_exactly(stream, 1) == b"a"
        start = trio.current_time()
        relay.apply(Timeout(2000), "upstream")  # meets a connection that is already open
        assert await stream.receive_some() == b""
        assert trio.current_time() - start >= 2.0
        await stream.aclose()


async def outcomes(seed: object) -> list[bool]:
    """Which of 12 connections a half-toxic Timeout(0) silences, by seed."""
    answered = []
    async with relayed(echo, seed) as relay:
        relay.apply(Timeout(), "upstream", toxicity=0.5)
        for _ in range(12):
            stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
            await stream.send_all(b"?")
            with trio.move_on_after(1):  # mock seconds
                await stream.receive_some()
                answered.append(True)
                await stream.aclose()
                continue
            answered.append(False)
            await stream.aclose()
    return answered


async def test_toxicity_is_repeatable_with_a_seed(autojump_clock: trio.testing.MockClock) -> None:
    first = await outcomes("seed-7")
    assert first == await outcomes("seed-7")
    assert True in first and False in first  # half of them, roughly: some of each
