"""SIGTERM under load (issue 7): pylb as a process in front of a backend that
holds every answer until the test lets it go, so requests are provably in
flight when the signal arrives."""

from __future__ import annotations

import signal

import pytest
import trio

from tests.e2e.e2e_kit import Backend, Peer, Truncated, open_backend, response_bytes
from tests.faults.faultkit import Process, connect_refused, pylb_process

pytestmark = [pytest.mark.usefixtures("driver"), pytest.mark.timeout(60)]
GRACE = 5
CLIENTS = 20


class Gate:
    """A backend that answers nothing until ``release`` is set; ``all_in``
    is set once ``expected`` requests have arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived = 0
        self.all_in = trio.Event()
        self.release = trio.Event()

    async def handler(self, server: Backend, peer: Peer) -> None:
        while (req := await server.next_request(peer)) is not None:
            self.arrived += 1
            if self.arrived >= self.expected:
                self.all_in.set()
            await self.release.wait()
            await peer.send(response_bytes(200, "OK", [], f"done {req.target}".encode()))


async def _client(port: int, i: int, results: list[tuple[int, str | None]]) -> None:
    try:
        async with await Peer.connect(port) as peer:
            resp = await peer.request("GET", f"/{i}")
            assert resp.body == f"done /{i}".encode()
            results.append((resp.status, resp.header("connection")))
    except (Truncated, OSError, trio.BrokenResourceError) as exc:
        results.append((0, repr(exc)))


async def _signal(proc: Process, workers: int) -> None:
    """SIGTERM, then wait until every process that serves (the one process,
    or each worker) has logged that it is draining."""
    mark = len(proc.lines)
    proc.proc.send_signal(signal.SIGTERM)
    await proc.await_line(r"received SIGTERM, stopping$", 10, mark, count=workers)


def _pylb(backend: Backend, workers: int, grace: int = GRACE) -> object:
    return pylb_process(
        "--bind", "127.0.0.1:0", "--backend", str(backend.backend), "--grace", f"{grace}", "--workers", f"{workers}"
    )


WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])


@WORKERS
async def test_sigterm_lets_every_request_in_flight_finish_then_exits_0(workers: int) -> None:
    gate = Gate(CLIENTS)
    results: list[tuple[int, str | None]] = []
    with trio.fail_after(40):
        async with open_backend(gate.handler) as backend:
            with _pylb(backend, workers) as (proc, port):  # type: ignore[attr-defined]
                async with trio.open_nursery() as nursery:
                    for i in range(CLIENTS):
                        nursery.start_soon(_client, port, i, results)
                    await gate.all_in.wait()  # 20 requests in flight, none answered
                    start = trio.current_time()
                    await _signal(proc, workers)
                    gate.release.set()
                code = await proc.await_exit(GRACE + 5)
                took = trio.current_time() - start
    failed = [r for r in results if r[0] != 200]
    assert len(results) == CLIENTS and not failed, failed
    assert all(connection == "close" for _, connection in results), results  # draining: no keep-alive
    assert code == 0, proc.stderr
    assert took < GRACE, f"exit took {took:.1f}s"
    assert "Traceback" not in proc.stderr


@WORKERS
async def test_new_connections_after_sigterm_are_refused(workers: int) -> None:
    gate = Gate(1)
    results: list[tuple[int, str | None]] = []
    with trio.fail_after(40):
        async with open_backend(gate.handler) as backend:
            with _pylb(backend, workers) as (proc, port):  # type: ignore[attr-defined]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_client, port, 0, results)
                    await gate.all_in.wait()  # one request in flight keeps pylb in its grace period
                    await _signal(proc, workers)
                    try:
                        assert await connect_refused(port), "a new connection was accepted during the drain"
                    finally:
                        gate.release.set()
                assert await proc.await_exit(GRACE + 5) == 0
    assert results == [(200, "close")]


@WORKERS
async def test_a_new_connection_during_the_drain_is_not_left_hanging_past_the_exit(workers: int) -> None:
    """Whatever happens to a connection made during the grace period (refused,
    or accepted by the kernel), it ends when pylb exits: no hang."""
    gate = Gate(1)
    results: list[tuple[int, str | None]] = []
    with trio.fail_after(40):
        async with open_backend(gate.handler) as backend:
            with _pylb(backend, workers) as (proc, port):  # type: ignore[attr-defined]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_client, port, 0, results)
                    await gate.all_in.wait()
                    await _signal(proc, workers)
                    late: list[tuple[int, str | None]] = []
                    nursery.start_soon(_client, port, 1, late)
                    gate.release.set()
                assert await proc.await_exit(GRACE + 5) == 0
    assert results == [(200, "close")]
    assert len(late) == 1 and late[0][0] != 200, late  # refused or reset, never served after the signal


SECOND_SIGNAL = [
    pytest.param(1, id="one-process"),
    pytest.param(2, id="two-workers"),
]


@pytest.mark.parametrize("workers", SECOND_SIGNAL)
async def test_a_second_sigterm_during_the_grace_period_exits_0_at_once(workers: int) -> None:
    gate = Gate(1)  # never released: the request would hold pylb for the whole grace period
    results: list[tuple[int, str | None]] = []
    with trio.fail_after(40):
        async with open_backend(gate.handler) as backend:
            with _pylb(backend, workers, grace=30) as (proc, port):  # type: ignore[attr-defined]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_client, port, 0, results)
                    await gate.all_in.wait()
                    await _signal(proc, workers)
                    start = trio.current_time()
                    proc.proc.send_signal(signal.SIGTERM)
                    code = await proc.await_exit(10)
                    took = trio.current_time() - start
                gate.release.set()
    assert took < 3.0, f"the second signal took {took:.1f}s to stop pylb (grace 30 s)"
    assert len(results) == 1 and results[0][0] == 0, results  # the held request was cut, not answered
    assert "Traceback" not in proc.stderr
    assert code == 0, f"exit code {code}; stderr:\n{proc.stderr}"
