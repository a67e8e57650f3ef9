"""Slow clients beside a normal one (issue 7): a slowloris (a head one byte
every 0.2 s) and a slow reader (50 MiB asked, nothing read) must neither
block a normal client nor grow pylb's memory. pylb runs as a process (alone, or
a supervisor and two workers), so its RSS (summed over its processes) is its
own; the backend is an in-process ``pylb hello``."""

from __future__ import annotations

import pytest
import trio

from pylb.testing import open_hello
from tests.conftest import run_pylb
from tests.e2e.e2e_kit import Peer, Truncated, parse_head
from tests.faults.faultkit import tree_kib

pytestmark = [pytest.mark.usefixtures("driver"), pytest.mark.timeout(90)]

FIFTY_MIB = 50 * 1024 * 1024
RSS_GROWTH_LIMIT_KIB = 20 * 1024
NORMAL_REQUESTS = 200
LATENCY_BOUND = 2.0  # generous: this checks the normal client is not blocked, it is not a benchmark


async def _slowloris(port: int, result: dict[str, object]) -> None:
    """Sends a head one byte every 0.2 s (at most 300 bytes: 60 s) until pylb answers."""
    head = b"GET / HTTP/1.1\r\nHost: loris\r\nX-Pad: " + b"p" * 250
    async with await Peer.connect(port) as peer:
        start = trio.current_time()

        async def drip() -> None:
            for byte in head:
                try:
                    await peer.send(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                await trio.sleep(0.2)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drip)
            try:
                resp = await peer.read_response()
                result["status"] = resp.status
                result["connection"] = resp.header("connection")
            except Truncated as exc:
                result["status"] = repr(exc)
            result["after"] = trio.current_time() - start
            nursery.cancel_scope.cancel()


async def _normal_client(port: int) -> list[float]:
    latencies = []
    async with await Peer.connect(port) as peer:
        for i in range(NORMAL_REQUESTS):
            start = trio.current_time()
            resp = await peer.request("GET", f"/n/{i}")
            latencies.append(trio.current_time() - start)
            assert resp.status == 200, (i, resp.status)
            assert resp.body.startswith(b"Hello from h")
    return latencies


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
async def test_slowloris_and_slow_reader_neither_block_a_normal_client_nor_grow_memory(workers: int) -> None:
    with trio.fail_after(60):
        async with open_hello("h") as hello:
            args = ("--bind", "127.0.0.1:0", "--backend", str(hello.backend), "--timeout", "http-request 1s")
            with run_pylb(*args, "--workers", str(workers)) as lb:
                async with await Peer.connect(lb.port) as warm:
                    assert (await warm.request()).status == 200
                rss_before = tree_kib(lb.proc.pid)
                hwm_before = tree_kib(lb.proc.pid, "VmHWM")

                loris: dict[str, object] = {}
                async with await Peer.connect(lb.port) as slow_reader:
                    async with trio.open_nursery() as nursery:
                        await slow_reader.send(b"GET /bytes/%d HTTP/1.1\r\nHost: slow\r\n\r\n" % FIFTY_MIB)
                        nursery.start_soon(_slowloris, lb.port, loris)
                        latencies = await _normal_client(lb.port)
                        # the slowloris ends the nursery (408 after about 1 s); the
                        # slow reader has read nothing all along
                    rss_after = tree_kib(lb.proc.pid)
                    hwm_after = tree_kib(lb.proc.pid, "VmHWM")
                    assert lb.proc.poll() is None
                    # the 50 MiB were on their way all along: the slow reader's answer has begun
                    line, headers = parse_head(await slow_reader.read_head())
                    assert line == b"HTTP/1.1 200 OK" and ("Content-Length", str(FIFTY_MIB)) in headers

        assert len(latencies) == NORMAL_REQUESTS
        assert max(latencies) < LATENCY_BOUND, f"slowest normal request took {max(latencies):.2f}s"
        assert loris["status"] == 408, loris
        assert loris["connection"] == "close"
        assert 0.7 <= loris["after"] < 3.0, loris  # type: ignore[operator]  # request_head 1 s, on a 0.25 s tick
        growth = rss_after - rss_before
        assert growth < RSS_GROWTH_LIMIT_KIB, f"pylb RSS grew {growth} KiB with a slow reader of 50 MiB"
        peak_growth = hwm_after - hwm_before
        assert peak_growth < RSS_GROWTH_LIMIT_KIB, f"pylb peak RSS grew {peak_growth} KiB"
        latencies.sort()
        print(
            f"normal client: p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; "
            f"pylb RSS {rss_before} -> {rss_after} KiB (peak {hwm_before} -> {hwm_after}); slowloris {loris}"
        )
