"""Keep-alive connections to backends, reused across client connections.

Owns: idle backend connections, per backend, and when to close them. It
decides synchronously (take an idle one, keep or drop a returned one) and
leaves the awaiting (dialing) to ``connect``. Must not know: HTTP, routing.

Invariants: a connection is either idle here or owned by exactly one
request; connections to a backend that left the pool are never kept; at
most ``max_idle`` idle connections per backend.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import trio

from pylb.core.models import Backend
from pylb.net.stream import dial


class BackendStream(Protocol):
    """What the proxy needs of a backend connection: a trio stream that
    can also be closed synchronously (``FastStream``; memory streams in tests)."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes: ...
    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...
    async def aclose(self) -> None: ...
    def close(self) -> None: ...


Dialer = Callable[[Backend, float], Awaitable[BackendStream]]


class UpstreamConn:
    """One connection to a backend, with the bytes read but not yet used."""

    __slots__ = ("backend", "buf", "idle_since", "requests", "stream")

    def __init__(self, stream: BackendStream, backend: Backend) -> None:
        self.stream = stream
        self.backend = backend
        self.buf = b""
        self.requests = 0
        self.idle_since = 0.0

    def close(self) -> None:
        self.stream.close()

    def __repr__(self) -> str:
        return f"<UpstreamConn {self.backend} requests={self.requests}>"


def closed_by_peer(stream: BackendStream) -> bool:
    """Whether an idle connection has been closed (or written to) by the
    backend; streams that cannot tell are assumed open."""
    sock = getattr(stream, "sock", None)
    if sock is None:
        return False
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False  # nothing to read: open and quiet, as an idle connection should be
    except OSError:
        return True
    return True  # end of stream, or bytes nobody asked for: not reusable


class Upstream:
    """The backend connection pool. ``is_live`` tells whether a backend is
    still in the balancer's pool (connections to others are closed)."""

    def __init__(
        self,
        is_live: Callable[[Backend], bool],
        connect_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_idle: int = 256,
        dialer: Dialer = dial,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._idle: dict[tuple[str, int], list[UpstreamConn]] = {}
        self._is_live = is_live
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle
        self._dialer = dialer
        self._clock = clock  # for idle times: a coarse clock will do
        self.dials = 0
        self.reuses = 0

    def take_idle(self, backend: Backend, check_open: bool = False) -> UpstreamConn | None:
        """An idle connection to ``backend`` (most recently used first), or
        None. ``check_open`` skips connections the backend has closed (one
        syscall each: for requests that must not be replayed)."""
        idle = self._idle.get(backend.key)
        if not idle:
            return None
        now = self._clock()
        while idle:
            conn = idle.pop()
            if check_open and closed_by_peer(conn.stream):
                conn.stream.close()
                continue
            if now - conn.idle_since < self._idle_timeout:
                self.reuses += 1
                return conn
            conn.stream.close()
        return None

    async def dial(self, backend: Backend) -> UpstreamConn:
        """A fresh connection; raises BadGateway or GatewayTimeout."""
        self.dials += 1
        return UpstreamConn(await self._dialer(backend, self._connect_timeout), backend)

    def adopt(self, stream: BackendStream, backend: Backend) -> UpstreamConn:
        """A connection dialed elsewhere (the readiness loop dials by itself)."""
        self.dials += 1
        return UpstreamConn(stream, backend)

    def give_back(self, conn: UpstreamConn) -> None:
        """Return a connection whose last response ended cleanly."""
        conn.requests += 1
        idle = self._idle.setdefault(conn.backend.key, [])
        if conn.buf or len(idle) >= self._max_idle or not self._is_live(conn.backend):
            conn.stream.close()
            return
        conn.idle_since = self._clock()
        idle.append(conn)

    def discard_idle(self, conn: UpstreamConn) -> bool:
        """Close ``conn`` if it is idle here (its backend closed it, or wrote
        to it unasked); False when it is not idle (a request owns it)."""
        idle = self._idle.get(conn.backend.key)
        if not idle or conn not in idle:
            return False
        idle.remove(conn)
        conn.stream.close()
        return True

    def close_idle(self, backends: Iterable[Backend] | None = None) -> int:
        """Close idle connections to ``backends`` (all when None); return how many."""
        keys = list(self._idle) if backends is None else [b.key for b in backends]
        closed = 0
        for key in keys:
            for conn in self._idle.pop(key, []):
                conn.stream.close()
                closed += 1
        return closed

    def statistics(self) -> dict[str, int]:
        return {
            "idle": sum(len(v) for v in self._idle.values()),
            "dials": self.dials,
            "reuses": self.reuses,
        }

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Upstream idle={s['idle']} dials={s['dials']} reuses={s['reuses']}>"
