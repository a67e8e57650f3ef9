"""The test-harness kit: backends that say who they are, for your tests.

Owns: ``open_hello`` and ``open_hellos``, in-process ``pylb hello`` backends
on port 0, and ``MemoryNetwork``, a dialer whose backends are coroutines on
memory streams (for proxy tests on a mock clock). Must not know: pytest
(usable from any trio program).

Example::

    async with pylb.testing.open_hellos(2) as hellos, \\
            pylb.open_balancer([h.backend for h in hellos]) as lb:
        ...  # requests to lb.url alternate between hellos[0] and hellos[1]
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import trio
import trio.testing

from pylb.core.errors import ConnectFailed
from pylb.core.models import Backend
from pylb.net.hello import HelloServer

__all__ = ["HelloBackend", "MemoryNetwork", "MemoryStream", "open_hello", "open_hellos"]


class HelloBackend:
    """A running hello backend: ``backend`` to give to a balancer,
    ``url`` to call it directly, ``requests`` served so far."""

    def __init__(self, server: HelloServer) -> None:
        self._server = server

    @property
    def name(self) -> str:
        return str(self._server.name)

    @property
    def backend(self) -> Backend:
        return Backend(self._server.host, self._server.port)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    @property
    def requests(self) -> int:
        return self._server.requests

    def __repr__(self) -> str:
        return f"<HelloBackend {self.name} {self.backend} requests={self.requests}>"


@asynccontextmanager
async def open_hello(
    name: str | None = None, delay: float = 0.0, host: str = "127.0.0.1"
) -> AsyncIterator[HelloBackend]:
    """Run one hello backend on ``host``, port 0, for the ``async with`` block."""
    server = HelloServer(name, delay)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, host, 0)
        try:
            yield HelloBackend(server)
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_hellos(count: int, prefix: str = "hello-", delay: float = 0.0) -> AsyncIterator[list[HelloBackend]]:
    """Run ``count`` hello backends named ``hello-1``, ``hello-2``..."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_hello(f"{prefix}{i + 1}", delay)) for i in range(count)]


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
