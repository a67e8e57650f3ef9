"""Backends as coroutines on trio memory streams: proxy tests with no socket.

Owns: ``MemoryNetwork``, a dialer for ``pylb.Balancer`` whose backends are
coroutines given a memory stream per connection, so that a test runs on
trio's ``MockClock`` (nothing waits on the kernel). Must not know: pytest,
sockets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing

from pylb.core.errors import ConnectFailed
from pylb.core.models import Backend

__all__ = ["BackendHandler", "MemoryNetwork", "MemoryStream"]

BackendHandler = Callable[[trio.abc.Stream], Awaitable[None]]
_Stapled = trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]


class MemoryStream:
    """A backend connection over a trio memory stream (a ``BackendStream``)."""

    def __init__(
        self, stream: trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]
    ) -> None:
        self._stream = stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def aclose(self) -> None:
        await self._stream.aclose()

    def close(self) -> None:
        self._stream.send_stream.close()
        self._stream.receive_stream.close()


class MemoryNetwork:
    """Backends as coroutines on memory streams: a dialer for ``Balancer``
    that needs no socket, so proxy tests run on trio's MockClock.

    ``add(backend, handler)`` makes ``handler(stream)`` serve every connection
    to ``backend``; dialing any other backend is refused (502)."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._handlers: dict[tuple[str, int], BackendHandler] = {}
        self.dials: list[Backend] = []

    def add(self, backend: Backend, handler: BackendHandler) -> None:
        self._handlers[backend.key] = handler

    async def dial(self, backend: Backend, timeout: float) -> MemoryStream:
        await trio.lowlevel.checkpoint()
        handler = self._handlers.get(backend.key)
        if handler is None:
            raise ConnectFailed(f"cannot connect to {backend}: ECONNREFUSED")
        self.dials.append(backend)
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(handler, server)
        return MemoryStream(client)
