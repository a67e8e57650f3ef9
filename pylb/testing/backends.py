"""Programmable HTTP backends on port 0, for tests of what sits in front of them.

Owns: ``HttpBackend``, a real HTTP/1.1 server (h11) that says who it is
(``X-Served-By: NAME`` and ``Hello from NAME``, as ``pylb hello`` does),
logs every request it receives and answers what the test asked for
(``respond()``: a status, headers, a body, a delay, a connection closed or
reset mid-body; for every request or the next N); ``open_backend`` and
``open_backends`` run them for an ``async with`` block. Must not know: the
balancer, pytest.

Invariants: ``respond()`` and the request log are safe to use from any
thread (the fixtures call them from the test's thread while the server runs
in a trio thread of its own); answers are taken in order: the next-N answers
first, oldest first, then the standing one.
"""

from __future__ import annotations

import socket as stdsocket
import struct
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import h11
import trio

from pylb.api import require_trio
from pylb.core.models import Backend

__all__ = ["Answer", "HttpBackend", "ReceivedRequest", "open_backend", "open_backends"]

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the backend received it (after the balancer)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)


@dataclass(frozen=True)
class Answer:
    """What a backend answers: see ``HttpBackend.respond``."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None  # None: "Hello from NAME\\n"
    delay_ms: float = 0.0
    close_after: int | None = None
    reset_after: int | None = None


@dataclass
class _Pending:
    answer: Answer
    left: int


@dataclass
class _Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[ReceivedRequest] = field(default_factory=list)
    standing: Answer = field(default_factory=Answer)
    pending: list[_Pending] = field(default_factory=list)


class HttpBackend:
    """A running backend: give ``backend`` to a balancer, call ``url``
    directly, read ``requests``, program answers with ``respond()``."""

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.connections = 0  # accepted so far (health checks count too)
        self._log = _Log()

    @property
    def backend(self) -> Backend:
        return Backend(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The requests received so far, oldest first (a copy)."""
        with self._log.lock:
            return list(self._log.requests)

    def __repr__(self) -> str:
        return f"<HttpBackend {self.name} {self.backend} requests={len(self._log.requests)}>"

    def respond(
        self,
        status: int = 200,
        headers: Headers = (),
        body: bytes | str | None = None,
        *,
        delay_ms: float = 0.0,
        close_after: int | None = None,
        reset_after: int | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with ``headers`` (added to ``X-Served-By`` and
        a ``Content-Length`` of the whole body) and ``body`` (default: ``Hello
        from NAME``), ``delay_ms`` after the request arrived. ``close_after=K``
        sends the head and K bytes of the body, then closes the connection;
        ``reset_after=K`` resets it there (RST). ``times=N``: for the next N
        requests only, then the answer before comes back; without it, for
        every request from now on. ``respond()`` alone restores the default."""
        if close_after is not None and reset_after is not None:
            raise ValueError("respond: give close_after or reset_after, not both")
        if times is not None and times < 1:
            raise ValueError(f"respond: times={times} must be at least 1 (or None: every request)")
        pairs = tuple(headers.items()) if isinstance(headers, Mapping) else tuple(headers)
        answer = Answer(
            status,
            tuple((str(k), str(v)) for k, v in pairs),
            body.encode() if isinstance(body, str) else body,
            delay_ms,
            close_after,
            reset_after,
        )
        with self._log.lock:
            if times is None:
                self._log.standing = answer
                self._log.pending.clear()
            else:
                self._log.pending.append(_Pending(answer, times))

    def _take(self, request: ReceivedRequest) -> Answer:
        with self._log.lock:
            self._log.requests.append(request)
            if not self._log.pending:
                return self._log.standing
            first = self._log.pending[0]
            first.left -= 1
            if not first.left:
                self._log.pending.pop(0)
            return first.answer

    async def serve(self, stream: trio.SocketStream) -> None:
        """Serve one connection until it ends (keep-alive)."""
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while await self._exchange(stream, conn):
                    conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _exchange(self, stream: trio.SocketStream, conn: h11.Connection) -> bool:
        """One request and its answer; False when the connection is done."""
        try:
            request = await self._receive(stream, conn)
        except h11.RemoteProtocolError:
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        if request is None:
            return False
        answer = self._take(request)
        if answer.delay_ms:
            await trio.sleep(answer.delay_ms / 1000)
        if not await self._send(stream, conn, request, answer):
            return False
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _receive(self, stream: trio.SocketStream, conn: h11.Connection) -> ReceivedRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return ReceivedRequest(
                    head.method.decode("latin-1"),
                    head.target.decode("latin-1"),
                    tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers.raw_items()),
                    bytes(body),
                )
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _send(
        self, stream: trio.SocketStream, conn: h11.Connection, request: ReceivedRequest, answer: Answer
    ) -> bool:
        body = answer.body if answer.body is not None else f"Hello from {self.name}\n".encode()
        bodiless = request.method == "HEAD" or answer.status in (204, 304) or answer.status < 200
        names = {k.lower() for k, _ in answer.headers}
        headers = [("X-Served-By", self.name), *answer.headers]
        if "content-length" not in names and "transfer-encoding" not in names and answer.status not in (204, 304):
            headers.append(("Content-Length", str(len(body))))
        if "content-type" not in names and answer.body is None:
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        out = conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
        cut = answer.close_after if answer.close_after is not None else answer.reset_after
        if cut is not None:
            await stream.send_all(out + (b"" if bodiless else (conn.send(h11.Data(data=body[:cut])) or b"")))
            if answer.reset_after is not None:
                stream.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if body and not bodiless:
            out += conn.send(h11.Data(data=body)) or b""
        await stream.send_all(out + (conn.send(h11.EndOfMessage()) or b""))
        return True


@asynccontextmanager
async def open_backend(name: str | None = None, host: str = "127.0.0.1") -> AsyncIterator[HttpBackend]:
    """Run one ``HttpBackend`` on ``host``, port 0, for the ``async with`` block
    (named ``backend-PORT`` unless ``name`` is given)."""
    require_trio("pylb.testing.open_backends", "run_backends")
    listeners = await trio.open_tcp_listeners(0, host=host)
    port = listeners[0].socket.getsockname()[1]
    backend = HttpBackend(name or f"backend-{port}", host, port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, backend.serve, listeners)
        try:
            yield backend
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_backends(
    count: int = 1, *, names: Sequence[str] | None = None, prefix: str = "backend-"
) -> AsyncIterator[list[HttpBackend]]:
    """Run ``count`` backends named ``backend-1``, ``backend-2``... (or
    ``names``) for the ``async with`` block."""
    if names is not None:
        if count not in (1, len(names)):
            raise ValueError(f"open_backends: {count} backends but {len(names)} names")
        count = len(names)
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_backend(names[i] if names is not None else f"{prefix}{i + 1}"))
            for i in range(count)
        ]
