"""TCP mode: one client connection, one backend connection, bytes both ways.

Owns: balancing per connection, connecting with redispatch before any byte
is sent, the PROXY header toward backends that want it, the bidirectional
pump with half-close (zero-copy ``splice`` when both ends are plain sockets,
a bounded user-space copy otherwise), the idle timeout, and the drain
timeout of connections whose backend left the pool. Must not know: HTTP.

Invariants: nothing is buffered beyond one receive (or the splice pipe);
a connection to a removed backend lives at most ``drain`` seconds more; its
bytes are counted per connection and added to the listener's at its end,
when its record (``ConnectionRecord``) goes to the observer, if one is set.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from pylb.core import proxyproto
from pylb.core.errors import ConnectFailed, ConnectTimeout, NoBackend, ProxyError
from pylb.core.health import HealthCheck, observe
from pylb.core.pool import Pool
from pylb.core.record import ConnectionRecord
from pylb.core.state import BackendState
from pylb.core.timeouts import Timeouts
from pylb.net import splice
from pylb.net.relaylane import RelayLane, Resume
from pylb.net.stream import RECEIVE_SIZE, FastStream, close_now
from pylb.net.timers import Watchdog
from pylb.net.tlsconn import TlsStream
from pylb.net.upstream import BackendStream, Upstream
from pylb.observe.events import EventFeed

log = logging.getLogger("pylb")
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
Duplex = trio.abc.Stream | BackendStream


@dataclass(slots=True)
class TcpContext:
    """What every connection of one TCP listener shares."""

    pool: Pool
    upstream: Upstream
    timeouts: Timeouts
    watchdog: Watchdog
    port: int
    service: str | None = None  # None: the snapshot's default service
    send_proxy: str | None = None  # "v1" or "v2"
    drain: float = 30.0
    retries: int = 3
    health: HealthCheck = field(default_factory=HealthCheck)
    lane: RelayLane | None = None  # plain tcp:// listeners: small exchanges are relayed there
    name: str = ""  # the listener, as records name it (tcp:PORT, tls:PORT)
    observer: Callable[[ConnectionRecord], None] | None = None  # gets each connection's record at its end
    events: EventFeed | None = None  # told of a backend marked down by failed connects
    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class TcpConnection:
    __slots__ = (
        "client",
        "address",
        "local",
        "ctx",
        "scope",
        "idle_deadline",
        "drain_deadline",
        "state",
        "finished",
        "bytes_in",
        "bytes_out",
        "retries",
        "t_connect",
        "termination",
    )

    def __init__(
        self, client: trio.abc.Stream, address: tuple[str, int], local: tuple[str, int], ctx: TcpContext
    ) -> None:
        self.client = client
        self.address = address
        self.local = local
        self.ctx = ctx
        self.scope = trio.CancelScope()
        self.idle_deadline = math.inf
        self.drain_deadline = math.inf
        self.state: BackendState | None = None
        self.finished = False  # the backend ended its side: a TLS client gets close_notify
        self.bytes_in = self.bytes_out = 0  # this connection's, added to the listener's at its end
        self.retries = 0
        self.t_connect = -1.0
        self.termination = "--"

    @property
    def deadline(self) -> float:
        """Read by the watchdog: the idle timeout, or the drain timeout once
        the backend has left the pool, whichever comes first."""
        if self.state is not None and self.state.draining and self.drain_deadline == math.inf:
            self.drain_deadline = self.ctx.watchdog.now + self.ctx.drain
        return min(self.idle_deadline, self.drain_deadline)

    @deadline.setter
    def deadline(self, value: float) -> None:
        self.idle_deadline = value

    def touch(self) -> None:
        timeouts = self.ctx.timeouts
        self.idle_deadline = self.ctx.watchdog.now + max(timeouts.client, timeouts.server)

    async def run(self, early: bytes = b"") -> None:
        """Serve the connection until both sides are done; ``early`` is what
        was read from the client before (after a PROXY header)."""
        ctx = self.ctx
        ctx.connections += 1
        ctx.watchdog.watch(self)
        observer = ctx.observer
        start = ctx.watchdog.time() if observer is not None else 0.0
        backend: BackendStream | None = None
        try:
            with self.scope:
                self.touch()
                backend = await self._connect()
                if observer is not None:
                    self.t_connect = ctx.watchdog.time() - start
                if ctx.send_proxy:
                    early = proxyproto.encode(ctx.send_proxy, self.address, self.local) + early
                if early:
                    await backend.send_all(early)
                resume: Resume | None = Resume()
                lane = ctx.lane
                if lane is not None and isinstance(self.client, FastStream) and isinstance(backend, FastStream):
                    timeouts = ctx.timeouts
                    idle = max(timeouts.client, timeouts.server)
                    resume = await lane.relay(self, self, idle, self.client.sock, backend.sock)
                if resume is not None:  # None: both directions ended (or one side reset) in the lane
                    await self._pump_both(backend, resume)
            if self.scope.cancelled_caught:  # the watchdog: idle, or its backend left and the drain passed
                self.termination = "KD" if self.drain_deadline <= self.idle_deadline else "cD"
        except (*_BROKEN, ProxyError) as exc:
            log.debug("tcp connection from %s ended: %s", self.address[0], exc)
            if isinstance(exc, ProxyError):
                self.termination = "sC" if isinstance(exc, ConnectTimeout) else "SC"
        finally:
            ctx.watchdog.unwatch(self)
            ctx.bytes_in += self.bytes_in
            ctx.bytes_out += self.bytes_out
            if observer is not None:
                observer(self._record(start))
            if self.state is not None:
                ctx.pool.release(self.state)
            if backend is not None:
                backend.close()
            if self.finished and isinstance(self.client, TlsStream):
                # close_notify, so that the client can tell this end from a truncation (pinned by
                # tests/test_tcp.py::test_tls_port_ends_with_close_notify_when_the_backend_closes).
                self.client.close()
            if not close_now(self.client):
                await trio.aclose_forcefully(self.client)

    def _record(self, start: float) -> ConnectionRecord:
        ctx = self.ctx
        service = ctx.service or (ctx.pool.snapshot.default if ctx.pool.snapshot else None) or ""
        return ConnectionRecord(
            self.address[0],
            self.address[1],
            ctx.name,
            service,
            self.state.backend if self.state is not None else None,
            self.bytes_in,
            self.bytes_out,
            ctx.watchdog.time() - start,
            self.t_connect,
            self.retries,
            self.termination,
            start,
        )

    async def _connect(self) -> BackendStream:
        ctx = self.ctx
        service = ctx.service or (ctx.pool.snapshot.default if ctx.pool.snapshot else None)
        if service is None:
            raise NoBackend("no service for this TCP listener")
        tried: list[BackendState] = []
        key = self.address[0].encode()
        while True:
            state = ctx.pool.acquire(service, key, tried)
            try:
                conn = await ctx.upstream.dial(state.backend)
            except (ConnectFailed, ConnectTimeout) as exc:
                ctx.pool.release(state, failed=True)
                check = ctx.pool.check_for(state, ctx.health)
                # only checks can bring it back: without them, never mark down
                if check.enabled and observe(state, False, check):
                    text = f"backend {ctx.pool.label(state.backend)} is DOWN ({exc.detail})"
                    if ctx.events is not None:
                        ctx.events.add("health", text, log, logging.WARNING)
                    else:
                        log.warning("%s", text)
                tried.append(state)
                self.retries = len(tried)
                if len(tried) > ctx.retries or not ctx.pool.has_other(service, tried):
                    raise
                log.debug("tcp: %s; trying another backend", exc.detail)
                continue
            self.state = state
            return conn.stream

    async def _pump_both(self, backend: BackendStream, resume: Resume) -> None:
        """Both directions, from where the relay lane left them (if it had them)."""
        async with trio.open_nursery() as nursery:
            if not resume.up_done:
                nursery.start_soon(self._pump, self.client, backend, nursery, True, resume.up, resume.up_bulk)
            if not resume.down_done:
                nursery.start_soon(self._pump, backend, self.client, nursery, False, resume.down, resume.down_bulk)

    async def _pump(
        self, src: Duplex, dst: Duplex, nursery: trio.Nursery, inbound: bool, pending: bytes, bulk: bool
    ) -> None:
        """Copy one direction until EOF, then half-close the other side;
        ``pending`` (received already) goes first, and ``bulk`` says a
        receive filled the buffer already."""
        try:
            spliceable = isinstance(src, FastStream) and isinstance(dst, FastStream) and splice.available()
            moved, ended = 0, False
            if pending:
                await dst.send_all(pending)
                moved = len(pending)
                self.touch()
            if not (bulk and spliceable):
                # Small exchanges are cheaper copied (two syscalls a message, not four); a full
                # receive buffer means bulk, which goes on kernel-side.
                copied, ended = await self._copy(src, dst, until_bulk=spliceable)
                moved += copied
            if not ended:
                assert isinstance(src, FastStream) and isinstance(dst, FastStream)
                moved += await splice.splice(src.sock, dst.sock, None, self.touch)
        except _BROKEN:
            nursery.cancel_scope.cancel()  # a reset on either side ends both
            return
        if inbound:
            self.bytes_in += moved
        else:
            self.bytes_out += moved
        send_eof = getattr(dst, "send_eof", None)
        if send_eof is None:  # TLS: no half-close; the other direction ends with the connection
            self.finished = not inbound
            nursery.cancel_scope.cancel()
            return
        with contextlib.suppress(*_BROKEN):
            await send_eof()

    async def _copy(self, src: Duplex, dst: Duplex, until_bulk: bool = False) -> tuple[int, bool]:
        """Copy until EOF (returns ``moved, True``) or, with ``until_bulk``,
        until a receive fills the buffer (``moved, False``)."""
        moved = 0
        while True:
            data = await src.receive_some(RECEIVE_SIZE)
            if not data:
                return moved, True
            await dst.send_all(data)
            moved += len(data)
            self.touch()
            if until_bulk and len(data) == RECEIVE_SIZE:
                return moved, False
