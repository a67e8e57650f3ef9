"""Joining at once: pylb's own probes of backends whose HEALTHCHECK still says
``starting``. Real listeners on 127.0.0.1 (the joiner connects to them), and
a fake dialer on trio's mock clock for the probing rhythm."""

from __future__ import annotations

import itertools
import socket

import trio
import trio.testing

from pylb.core.errors import ConnectFailed
from pylb.core.models import Backend
from pylb.discovery.assembly import Pending, Probe
from pylb.discovery.joining import Joiner
from pylb.net.upstream import BackendStream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Admitted:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.event = trio.Event()

    def __call__(self, key: str) -> None:
        self.keys.append(key)
        self.event.set()


async def serve_http(listener: trio.SocketListener, answers: list[bytes], seen: list[bytes]) -> None:
    """Answer one request per connection with the next status line of ``answers`` (the last one repeats)."""
    while True:
        stream = await listener.accept()
        async with stream:
            seen.append(await stream.receive_some(4096))
            status = answers.pop(0) if len(answers) > 1 else answers[0]
            await stream.send_all(status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


async def test_a_backend_joins_when_it_starts_listening() -> None:
    port = free_port()
    admitted = Admitted()
    joiner = Joiner(admitted)
    async with trio.open_nursery() as nursery:
        await nursery.start(joiner.run)
        joiner.update([Pending("c1@t0", "web-1", (Probe(Backend("127.0.0.1", port), None, True),))])
        while joiner.probes < 2:  # refused: nothing listens yet
            await trio.sleep(0.01)
        assert admitted.keys == [] and joiner.pending == {"c1@t0"}
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", port))
        sock.listen()
        listener = trio.SocketListener(sock)
        with trio.fail_after(5):
            await admitted.event.wait()
        assert admitted.keys == ["c1@t0"] and joiner.pending == set()
        assert joiner.statistics()["admitted"] == 1
        await listener.aclose()
        nursery.cancel_scope.cancel()


async def test_the_http_check_must_pass_and_a_service_without_one_gets_the_balancers() -> None:
    own_seen: list[bytes] = []
    inherited_seen: list[bytes] = []
    admitted = Admitted()
    joiner = Joiner(admitted, http=("GET", "/balancer-check"))
    async with trio.open_nursery() as nursery:
        own = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        inherited = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        nursery.start_soon(serve_http, own, [b"HTTP/1.1 503 Starting", b"HTTP/1.1 200 OK"], own_seen)
        nursery.start_soon(serve_http, inherited, [b"HTTP/1.1 204 No Content"], inherited_seen)
        await nursery.start(joiner.run)
        own_backend = Backend("127.0.0.1", own.socket.getsockname()[1])
        inherited_backend = Backend("127.0.0.1", inherited.socket.getsockname()[1])
        joiner.update(
            [
                Pending("own", "web-1", (Probe(own_backend, ("GET", "/ready")),)),
                Pending("inherited", "web-2", (Probe(inherited_backend, None, True),)),
            ]
        )
        with trio.fail_after(5):
            while len(admitted.keys) < 2:
                await admitted.event.wait()
                admitted.event = trio.Event()
        nursery.cancel_scope.cancel()
    assert admitted.keys == ["inherited", "own"]  # the first 503 made "own" wait one more round
    assert len(own_seen) == 2 and all(s.startswith(b"GET /ready HTTP/1.1\r\n") for s in own_seen)
    assert inherited_seen[0].startswith(b"GET /balancer-check HTTP/1.1\r\n")


async def test_what_is_no_longer_pending_is_not_probed_nor_admitted() -> None:
    admitted = Admitted()
    dials: list[Backend] = []

    async def refuse(backend: Backend, timeout: float) -> BackendStream:
        await trio.lowlevel.checkpoint()  # as a real connect (getaddrinfo) does: a cancelled probe stops here
        dials.append(backend)
        raise ConnectFailed(f"cannot connect to {backend}: ECONNREFUSED")

    joiner = Joiner(admitted, dialer=refuse, first=0.01, cap=0.01)
    gone = Pending("gone", "web-1", (Probe(Backend("10.0.0.1", 80)),))
    async with trio.open_nursery() as nursery:
        await nursery.start(joiner.run)
        joiner.update([gone])
        while len(dials) < 2:
            await trio.sleep(0.01)
        joiner.update([])  # it became healthy, unhealthy, or went away
        count = len(dials)
        await trio.sleep(0.1)
        assert len(dials) == count and joiner.pending == set()
        moved = Pending("gone", "web-1", (Probe(Backend("10.0.0.2", 80)),))
        joiner.update([moved])  # the same key with a new address starts over
        while dials[-1] != Backend("10.0.0.2", 80):
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert admitted.keys == []


async def test_probes_every_quarter_second_backing_off_to_one_a_second(autojump_clock: trio.testing.MockClock) -> None:
    stamps: list[float] = []

    async def refuse(backend: Backend, timeout: float) -> BackendStream:
        stamps.append(trio.current_time())
        raise ConnectFailed(f"cannot connect to {backend}: ECONNREFUSED")

    joiner = Joiner(lambda key: None, dialer=refuse)
    async with trio.open_nursery() as nursery:
        await nursery.start(joiner.run)
        started = trio.current_time()
        joiner.update([Pending("k", "web-1", (Probe(Backend("10.0.0.1", 80)),))])
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert stamps[0] == started  # the first probe goes at once
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(stamps)]
    assert gaps[:4] == [0.25, 0.3, 0.36, 0.432]
    assert max(gaps) == 1.0 and gaps[-1] == 1.0
