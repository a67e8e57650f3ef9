"""The fault relay: a small TCP proxy in front of one backend, as toxiproxy is.

Owns: a listening socket on 127.0.0.1 that the test balancer dials instead of
the backend, one ``Link`` per accepted connection (a second connection to the
real backend, and a pipe each way through the faults applied now), and the
list of applied faults, which every link reads at every chunk: a fault
applied or removed changes the connections already open too. Must not know:
HTTP, the balancer (this is the test kit, not pylb's data plane).

Invariants: bytes go through in order; a fault's waits end early when it is
removed; a link that ends closes both of its sockets (with RST when reset).
``Down`` takes the listener out of ``listen`` (connects are refused) but
keeps its port bound, so the backend comes back at the same address.
"""

from __future__ import annotations

import contextlib
import errno
import math
import random
import socket as stdsocket
import struct
from collections.abc import Awaitable, Callable

import trio

from pylb.core.models import Backend
from pylb.testing.faults import Direction, Down, Fault, Timeout

__all__ = ["Applied", "FaultRelay"]

_CHUNK = 65536
_BACKLOG = 128
_LINGER_RESET = struct.pack("ii", 1, 0)


class Applied:
    """One fault applied to one relay, until ``removed`` is set."""

    def __init__(self, fault: Fault, direction: Direction, toxicity: float) -> None:
        self.fault = fault
        self.direction = direction
        self.toxicity = toxicity
        self.started = trio.current_time()
        self.removed = trio.Event()

    def __repr__(self) -> str:
        share = "" if self.toxicity >= 1 else f" toxicity={self.toxicity}"
        return f"<Applied {self.fault} {self.direction}{share}{' removed' if self.removed.is_set() else ''}>"


def _listen_socket(host: str) -> stdsocket.socket:
    """A listening socket on a free port bound explicitly, so that taking it
    out of ``listen`` (``shutdown``) keeps the port for the relay."""
    for _ in range(50):
        with stdsocket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        sock = stdsocket.socket()
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        sock.listen(_BACKLOG)
        sock.setblocking(False)
        return sock
    raise OSError(errno.EADDRINUSE, "no free port for a fault relay")


class FaultRelay:
    """Relays connections to ``target``; ``backend`` is what to give the balancer."""

    def __init__(self, target: Backend, rng: random.Random, on_event: Callable[[], None] = lambda: None) -> None:
        self.target = target
        self.rng = rng
        self.applied: list[Applied] = []
        self.links: set[Link] = set()
        self.accepted = 0
        self._on_event = on_event
        self._changed = trio.Event()
        self._sock = _listen_socket("127.0.0.1")
        self.port: int = self._sock.getsockname()[1]
        self._nursery: trio.Nursery | None = None
        self._accepting: trio.CancelScope | None = None

    @property
    def backend(self) -> Backend:
        return Backend("127.0.0.1", self.port, self.target.weight)

    @property
    def down(self) -> bool:
        return any(isinstance(a.fault, Down) for a in self.applied)

    def __repr__(self) -> str:
        return f"<FaultRelay :{self.port} -> {self.target} links={len(self.links)} faults={self.applied}>"

    def statistics(self) -> dict[str, object]:
        return {
            "relay": str(self.backend),
            "accepted": self.accepted,
            "open": len(self.links),
            "faults": [repr(a) for a in self.applied],
            "down": self.down,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._accept_loop)
                task_status.started()
                await trio.sleep_forever()  # links and accept loops come and go (Down)
        finally:
            self._sock.close()

    def apply(self, fault: Fault, direction: Direction, toxicity: float = 1.0) -> Applied:
        """Apply ``fault`` to every connection, open or to come; synchronous."""
        applied = Applied(fault, direction, toxicity)
        was_down = self.down
        self.applied.append(applied)
        if self.down and not was_down:
            if self._accepting is not None:
                self._accepting.cancel()
            self._sock.shutdown(stdsocket.SHUT_RD)  # refuse new connections, keep the port
        self._changed_now()
        return applied

    def remove(self, applied: Applied) -> None:
        """Remove a fault applied with ``apply`` (a second removal does nothing)."""
        if applied not in self.applied:
            return
        self.applied.remove(applied)
        applied.removed.set()
        if not self.down and isinstance(applied.fault, Down):
            self._sock.listen(_BACKLOG)
            if self._nursery is not None:
                self._nursery.start_soon(self._accept_loop)
        self._changed_now()

    def _changed_now(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        self._on_event()

    async def _accept_loop(self) -> None:
        sock = trio.socket.from_stdlib_socket(self._sock.dup())
        try:
            with trio.CancelScope() as self._accepting:
                while True:
                    conn, _ = await sock.accept()
                    self.accepted += 1
                    assert self._nursery is not None
                    self._nursery.start_soon(Link(self, trio.SocketStream(conn)).run)
                    self._on_event()
        except OSError:
            pass  # the listener was shut down under us (Down): the next Up starts a new loop
        finally:
            sock.close()


class Link:
    """One relayed connection: the balancer's side, the backend's side, and a
    pipe each way through the faults of that direction."""

    def __init__(self, relay: FaultRelay, client: trio.SocketStream) -> None:
        self.relay = relay
        self.client = client
        self.backend: trio.SocketStream | None = None
        self.started = trio.current_time()
        self._scope = trio.CancelScope()
        self._reset = False
        self._eofs = 0
        self._toxic: dict[Applied, bool] = {}
        self._counters: dict[tuple[Applied, Direction], list[int]] = {}

    def close(self) -> None:
        self._scope.cancel()

    def reset(self) -> None:
        self._reset = True
        self._scope.cancel()

    def affected(self, applied: Applied) -> bool:
        """Whether ``applied`` acts on this link (toxicity: decided once per link)."""
        toxic = self._toxic.get(applied)
        if toxic is None:
            toxic = self._toxic[applied] = applied.toxicity >= 1 or self.relay.rng.random() < applied.toxicity
        return toxic

    def counter(self, applied: Applied, direction: Direction) -> list[int]:
        return self._counters.setdefault((applied, direction), [0])

    async def run(self) -> None:
        relay = self.relay
        relay.links.add(self)
        try:
            with self._scope:
                try:
                    self.backend = await trio.open_tcp_stream(relay.target.host, relay.target.port)
                except OSError:
                    self._reset = True  # the backend refused: the balancer sees its connection reset
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, self.client, self.backend, "upstream")
                    nursery.start_soon(self._pipe, self.backend, self.client, "downstream")
                    nursery.start_soon(self._supervise)
        finally:
            relay.links.discard(self)
            for stream in (self.client, self.backend):
                if stream is not None:
                    if self._reset:
                        with contextlib.suppress(OSError):
                            stream.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, _LINGER_RESET)
                    stream.socket.close()
            relay._on_event()

    async def _supervise(self) -> None:
        """Close the link when the relay goes down or a ``Timeout`` expires."""
        relay = self.relay
        while True:
            changed = relay._changed
            if relay.down:
                self.close()
                return
            deadline = math.inf
            for applied in relay.applied:
                fault = applied.fault
                if isinstance(fault, Timeout) and fault.ms > 0 and self.affected(applied):
                    deadline = min(deadline, max(applied.started, self.started) + fault.ms / 1000)
            with trio.move_on_at(deadline) as scope:
                await changed.wait()
            if scope.cancelled_caught:
                self.close()
                return

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream, direction: Direction) -> None:
        send, receive = trio.open_memory_channel[tuple[bytes, float]](16)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, src, send)
            async with receive:
                async for data, arrived in receive:
                    chain = self._chain(direction)
                    if not data:
                        for applied in chain:
                            await applied.fault.closing(_Carrier(self, applied, direction, arrived, _nowhere))
                        break
                    await self._through(data, chain, 0, direction, arrived, dst)
        try:
            await dst.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close()
            return
        self._eofs += 1
        if self._eofs == 2:
            self.close()

    async def _read(self, src: trio.SocketStream, send: trio.MemorySendChannel[tuple[bytes, float]]) -> None:
        async with send:
            while True:
                try:
                    data = await src.receive_some(_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.reset()  # reset by its peer: reset the other side too
                    return
                await send.send((bytes(data), trio.current_time()))
                if not data:
                    return

    def _chain(self, direction: Direction) -> list[Applied]:
        return [a for a in self.relay.applied if a.direction == direction and self.affected(a)]

    async def _through(
        self, data: bytes, chain: list[Applied], i: int, direction: Direction, arrived: float, dst: trio.SocketStream
    ) -> None:
        while i < len(chain) and chain[i].removed.is_set():
            i += 1
        if i == len(chain):
            try:
                await dst.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.reset()
                await trio.lowlevel.checkpoint()
            return

        async def forward(piece: bytes) -> None:
            await self._through(piece, chain, i + 1, direction, arrived, dst)

        await chain[i].fault.carry(data, _Carrier(self, chain[i], direction, arrived, forward))


async def _nowhere(data: bytes) -> None:
    await trio.lowlevel.checkpoint()


class _Carrier:
    """A ``pylb.testing.faults.Carrier`` for one chunk, one fault, one link."""

    def __init__(
        self,
        link: Link,
        applied: Applied,
        direction: Direction,
        arrived: float,
        forward: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._link = link
        self._applied = applied
        self._direction = direction
        self.arrived = arrived
        self.rng = link.relay.rng
        self._forward = forward

    async def forward(self, data: bytes) -> None:
        await self._forward(data)

    async def sleep_until(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._applied.removed.wait()

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(trio.current_time() + seconds)

    def counter(self) -> list[int]:
        return self._link.counter(self._applied, self._direction)

    def close(self) -> None:
        self._link.close()

    def reset(self) -> None:
        self._link.reset()
