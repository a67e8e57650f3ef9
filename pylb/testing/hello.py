"""In-process ``pylb hello`` backends on port 0, for trio programs and tests.

Owns: ``open_hello`` and ``open_hellos`` (the fixed-answer backend the CLI
runs as ``pylb hello``; ``pylb.testing.backends`` has the programmable one).
Must not know: pytest, threads, the balancer.

Example::

    async with pylb.testing.open_hellos(2) as hellos, \\
            pylb.open_balancer([h.backend for h in hellos]) as lb:
        ...  # requests to lb.url alternate between hellos[0] and hellos[1]
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from pylb.api import require_trio
from pylb.core.models import Backend
from pylb.net.hello import HelloServer

__all__ = ["HelloBackend", "open_hello", "open_hellos"]


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
    require_trio("pylb.testing.open_hello", "run_backends")
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
