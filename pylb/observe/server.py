"""The stats port (``STATS_PORT``): the page, ``/stats.json`` and ``/metrics``.

Owns: ``StatsServer``, a small HTTP/1.1 server (h11) on its own listening
socket, apart from the proxy's listeners and loops: ``/`` the page
(``pylb.observe.page``), ``/stats.json`` the statistics, ``/metrics`` their
Prometheus text (``pylb.observe.metrics``); Basic authentication when
``STATS_AUTH`` is set (401 with ``WWW-Authenticate`` otherwise; the password
is compared in constant time and never logged). Must not know: how the
statistics are gathered (``source`` gives them: one balancer's, or the sum
of every worker's).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import socket as stdsocket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import h11
import trio

from pylb.observe.metrics import Metrics
from pylb.observe.page import PAGE

log = logging.getLogger("pylb.stats")
# The classic text format, which every Prometheus reads (newer clients default to 1.0.0).
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
IDLE_SECONDS = 30.0
MAX_REQUESTS = 1000  # per connection

Source = Callable[[], Awaitable[Mapping[str, Any]]]


class StatsServer:
    """Serves the statistics ``source`` gives on ``sock`` (a listening
    socket bound by the caller, so that a port in use is one clear line
    before anything runs). ``auth``: (user, password) for Basic auth."""

    def __init__(self, sock: stdsocket.socket, source: Source, auth: tuple[str, str] | None = None) -> None:
        self.sock = sock
        self.source = source
        self.metrics = Metrics()
        self._expected = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        self.requests = 0
        self.refused = 0

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def __repr__(self) -> str:
        return f"<StatsServer port={self.port} requests={self.requests} auth={self._expected is not None}>"

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._serve, [listener], handler_nursery=nursery)

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            with trio.move_on_after(IDLE_SECONDS):
                for _ in range(MAX_REQUESTS):
                    request = await _next_request(stream, conn)
                    if request is None:
                        break
                    await self._answer(stream, conn, request)
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        break
                    conn.start_next_cycle()
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request) -> None:
        self.requests += 1
        path = request.target.partition(b"?")[0]
        if request.method not in (b"GET", b"HEAD"):
            await _send(stream, conn, request, 405, b"text/plain", b"only GET and HEAD\n", [(b"Allow", b"GET, HEAD")])
            return
        if not self._authorized(request):
            self.refused += 1
            challenge = [(b"WWW-Authenticate", b'Basic realm="pylb stats", charset="UTF-8"')]
            await _send(stream, conn, request, 401, b"text/plain", b"authentication required\n", challenge)
            return
        if path == b"/":
            await _send(stream, conn, request, 200, b"text/html; charset=utf-8", PAGE.encode())
        elif path == b"/stats.json":
            data = await self.source()
            body = json.dumps(data, default=str, separators=(",", ":")).encode()
            await _send(stream, conn, request, 200, b"application/json", body)
        elif path == b"/metrics":
            body = self.metrics.render(await self.source())
            await _send(stream, conn, request, 200, METRICS_TYPE, body)
        else:
            await _send(stream, conn, request, 404, b"text/plain", b"not found: try /, /stats.json or /metrics\n")

    def _authorized(self, request: h11.Request) -> bool:
        if self._expected is None:
            return True
        for name, value in request.headers:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() != "basic":
                    return False
                try:
                    base64.b64decode(given.strip(), validate=True)
                except (binascii.Error, ValueError):
                    return False
                return hmac.compare_digest(given.strip().encode(), self._expected.encode())
        return False


async def _next_request(stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
    """The next request (its body, if any, read and dropped), or None at the end."""
    request: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _send(
    stream: trio.SocketStream,
    conn: h11.Connection,
    request: h11.Request,
    status: int,
    content_type: bytes,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"Content-Type", content_type),
        (b"Content-Length", str(len(body)).encode()),
        (b"Cache-Control", b"no-store"),
        (b"Server", b"pylb"),
        *(extra or []),
    ]
    data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    if request.method != b"HEAD":
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
