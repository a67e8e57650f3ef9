"""Connection limits (issue 7): MAXCONN makes extra connections wait in the
accept queue instead of failing, and running out of file descriptors is
survived (a one-line warning, no traceback, service resumes)."""

from __future__ import annotations

import re

import pytest
import trio

import pylb
from pylb.testing import open_hello
from tests.e2e.e2e_kit import HOST, Peer, port_of
from tests.faults.faultkit import NO_CHECKS, get_status, pylb_process

pytestmark = [pytest.mark.usefixtures("driver"), pytest.mark.timeout(60)]


async def test_maxconn_makes_extra_connections_wait_and_all_are_served() -> None:
    samples: list[int] = []
    statuses: list[int] = []
    with trio.fail_after(20):
        async with (
            open_hello("h", delay=0.3) as hello,
            pylb.open_balancer([hello.backend], maxconn=2, health=NO_CHECKS) as lb,
        ):
            port = port_of(lb.url)

            async def client(i: int) -> None:
                async with await Peer.connect(port) as peer:
                    statuses.append((await peer.request("GET", f"/{i}")).status)

            async def sample(done: trio.Event) -> None:
                while not done.is_set():  # bounded by fail_after
                    samples.append(lb.statistics()["connections"])  # type: ignore[arg-type]
                    await trio.sleep(0.01)

            done = trio.Event()
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample, done)
                async with trio.open_nursery() as clients:
                    for i in range(5):
                        clients.start_soon(client, i)
                done.set()
            elapsed = trio.current_time() - start
            assert statuses == [200] * 5
            assert hello.requests == 5
            assert max(samples) == 2, samples  # never more than MAXCONN, and the limit was reached
            assert elapsed >= 0.85, elapsed  # 5 answers of 0.3 s, 2 at a time: 3 rounds at least
            assert lb.statistics()["errors"] == {}


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
async def test_running_out_of_file_descriptors_is_survived(workers: int) -> None:
    with trio.fail_after(45):
        async with open_hello("h") as hello:
            args = ("--bind", "127.0.0.1:0", "--backend", str(hello.backend), "--workers", str(workers))
            with pylb_process(*args, nofile=64) as (proc, port):
                assert await get_status(port) == 200
                idle = []
                try:
                    for _ in range(100 * workers):  # the kernel completes them (listen backlog); pylb runs out of fds
                        idle.append(await trio.open_tcp_stream(HOST, port))
                    await proc.await_line(r"accept failed")
                    assert proc.proc.poll() is None, "pylb died"
                finally:
                    for stream in idle:
                        await stream.aclose()
                with trio.fail_after(15):  # pylb retries accept every 100 ms; the closed ones go first
                    assert await get_status(port) == 200
                assert proc.proc.poll() is None
                proc.proc.terminate()
                assert await proc.await_exit(15) == 0
            stderr = proc.stderr
    assert "Traceback" not in stderr, stderr
    warnings = [line for line in stderr.splitlines() if "accept failed" in line]
    assert warnings
    for line in warnings:
        assert re.search(r"accept failed: Too many open files; retrying in 100 ms", line), line
    print(f"{len(warnings)} accept warnings; first: {warnings[0]}")
