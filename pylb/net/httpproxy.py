"""The HTTP/1.1 proxy loop: one client connection, many requests.

Owns: reading request heads, forwarding each request to a backend chosen
for it alone, relaying the response (streamed, with backpressure), the
per-phase timeouts, and turning pylb errors into responses, once, here.
Must not know: how backends are discovered or how the pool picks them.

Per request on the fast path: one receive from the client, one send to the
backend (head and buffered body coalesced), one receive from the backend,
one send to the client (head and buffered body coalesced); no task spawned
unless a request body has to be streamed while the response is read.

Invariants: a backend connection goes back to the upstream pool only after
a response that ended cleanly with no stray bytes; a response cut short is
never made to look complete to the client (the connection is reset).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from pylb.core.errors import (
    BadGateway,
    BadRequest,
    ConnectFailed,
    ConnectTimeout,
    GatewayTimeout,
    NoBackend,
    ProxyError,
)
from pylb.core.framing import ChunkedScanner
from pylb.core.health import HealthCheck, observe
from pylb.core.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, Head, find_head_end, parse_request, parse_response
from pylb.core.models import Backend
from pylb.core.policy import (
    error_response,
    forwarded_suffix,
    https_redirect,
    request_head_out,
    response_head_out,
)
from pylb.core.pool import Pool
from pylb.core.state import BackendState
from pylb.core.timeouts import Timeouts
from pylb.net import splice
from pylb.net.stream import RECEIVE_SIZE, FastStream, close_now
from pylb.net.timers import Watchdog
from pylb.net.upstream import BackendStream, Upstream, UpstreamConn

log = logging.getLogger("pylb")
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
SPLICE_MIN = 256 * 1024  # bodies this large skip user space (when both ends are plain TCP)


class Phase(enum.IntEnum):
    IDLE = 0
    REQUEST_HEAD = 1
    FORWARD = 2
    RESPONSE_HEAD = 3
    RESPONSE_BODY = 4
    TUNNEL = 5


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What the access log and statistics get about one request."""

    client: str
    method: str
    target: str
    backend: Backend | None
    status: int
    bytes_sent: int
    seconds: float

    @classmethod
    def of(
        cls, client_ip: bytes, head: Head, backend: Backend | None, status: int, sent: int, start: float
    ) -> RequestRecord:
        """The record of a request whose ``head`` began at ``start`` (trio's clock)."""
        return cls(
            client=client_ip.decode(),
            method=head.method.decode("latin-1"),
            target=head.target.decode("latin-1"),
            backend=backend,
            status=status,
            bytes_sent=sent,
            seconds=trio.current_time() - start,
        )


Observer = Callable[[RequestRecord], None]


@dataclass(slots=True)
class HttpContext:
    """What every client connection of one listener shares."""

    pool: Pool
    upstream: Upstream
    timeouts: Timeouts
    watchdog: Watchdog
    proto: str = "http"
    port: int = 80
    observer: Observer | None = None
    force_ssl: bool = False  # redirect every plain-HTTP request (not only FORCE_SSL services)
    retries: int = 3  # other backends tried when connecting fails (redispatch)
    health: HealthCheck = field(default_factory=HealthCheck)  # passive checks count toward its fall
    https_port: int = 443  # where redirects to https point
    extra_response: bytes = b""  # header lines added to every response (HSTS on https)
    closing: bool = False
    requests: int = 0
    errors: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class Handoff:
    """A request the fast lane (``pylb.net.fastlane``) began and this path
    finishes: counted (``HttpContext.requests``), routed and balanced
    (``state`` is acquired). ``conn`` is the backend connection it went on,
    with ``out`` still to send and any response bytes in ``conn.buf``; None
    when the request still has to be sent (its body is back in the client
    buffer). ``error``: what sending it met."""

    head: Head
    service: str
    state: BackendState
    start: float = 0.0
    conn: UpstreamConn | None = None
    out: bytes = b""
    error: ProxyError | None = None


class Lane(Protocol):
    """Where a connection the fast lane handed over goes back after a
    request that kept it open (see ``pylb.net.fastlane``)."""

    def take_back(self, client: ClientConnection) -> bool: ...


class _StaleConnection(Exception):
    """A reused backend connection was closed before it answered."""


class _NoAnswer(BadGateway):
    """A new backend connection closed before the first byte of an answer to
    a request with no body that may be replayed: a backend going away (its
    listener closed after the kernel had accepted the connection). Another
    backend may take the request (redispatch), as after a failed connect."""


class _ClientGone(Exception):
    """The client went away; nothing more can be sent to it."""


class ClientConnection:
    __slots__ = (
        "backend",
        "buf",
        "client_ip",
        "ctx",
        "phase",
        "response_started",
        "scope",
        "deadline",
        "fresh",
        "handed_back",
        "lane",
        "sent",
        "status",
        "stream",
        "suffix",
    )

    def __init__(self, stream: trio.abc.Stream, client: tuple[str, int], ctx: HttpContext) -> None:
        self.stream = stream
        self.ctx = ctx
        self.buf = b""
        self.scope = trio.CancelScope()
        self.deadline = math.inf
        self.fresh = True
        self.phase = Phase.IDLE
        self.client_ip = client[0].encode()
        self.suffix = forwarded_suffix(client[0], ctx.proto, ctx.port)
        self.response_started = False
        self.status = 0
        self.sent = 0
        self.backend: Backend | None = None
        self.lane: Lane | None = None  # set by the fast lane, which takes the connection back
        self.handed_back = False

    async def run(self, handoff: Handoff | None = None) -> None:
        """Serve requests until the client leaves, an error ends the
        connection, or a timeout fires (or the fast lane takes it back);
        ``handoff``: a request begun by the fast lane, finished first."""
        watchdog = self.ctx.watchdog
        watchdog.watch(self)
        try:
            with self.scope:
                await self._serve(handoff)
            if self.scope.cancelled_caught:
                await self._timed_out()
        except (*_BROKEN, _ClientGone):
            pass
        finally:
            watchdog.unwatch(self)
            if not self.handed_back and not close_now(self.stream):
                await trio.aclose_forcefully(self.stream)

    async def _serve(self, handoff: Handoff | None) -> None:
        ctx = self.ctx
        while True:
            if handoff is not None:
                head, start = handoff.head, handoff.start
            else:
                try:
                    read = await self._read_request()
                except ProxyError as exc:
                    await self._answer_error(exc, keep_alive=False)
                    return
                if read is None:
                    return
                head = read
                ctx.requests += 1
                start = trio.current_time() if ctx.observer else 0.0
            self.response_started = False
            self.status = 0
            self.backend = None
            begun, handoff = handoff, None
            try:
                keep = await self._exchange(head, begun)
            except ProxyError as exc:
                if self.response_started:
                    _abort(self.stream)
                    raise _ClientGone() from None
                keep = isinstance(exc, NoBackend) and head.framing == NO_BODY and head.keep_alive
                await self._answer_error(exc, keep_alive=keep and not ctx.closing)
            if ctx.observer is not None:
                self._observe(head, start)
            if not keep or ctx.closing:
                return
            if self.lane is not None and self.lane.take_back(self):
                self.handed_back = True
                return

    async def _read_request(self) -> Head | None:
        """The next request head, or None when the client closed cleanly."""
        timeouts = self.ctx.timeouts
        buf = self.buf
        while buf[:2] == b"\r\n":  # RFC 9112 2.2: ignore leading empty lines
            buf = buf[2:]
        self.phase = Phase.REQUEST_HEAD if buf else Phase.IDLE
        now = self.ctx.watchdog.now
        self.deadline = now + (timeouts.request_head if buf else timeouts.client)
        while True:
            if buf:
                end = find_head_end(buf)
                if end >= 0:
                    self.buf = buf[end:]
                    self.phase = Phase.FORWARD
                    return parse_request(buf if end == len(buf) else buf[:end])
            data = None
            if self.fresh:  # a new connection's request is often here already
                self.fresh = False
                if isinstance(self.stream, FastStream):
                    data = self.stream.receive_nowait()
            if data is None:
                data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
            if not data:
                self.buf = b""
                return None
            if not buf:
                self.phase = Phase.REQUEST_HEAD
                self.deadline = min(self.deadline, self.ctx.watchdog.now + timeouts.request_head)
                buf = data.lstrip(b"\r\n") if data[:2] == b"\r\n" else data
            else:
                buf += data

    async def _exchange(self, head: Head, handoff: Handoff | None = None) -> bool:
        """Forward one request and relay its response; True to keep the
        client connection for the next request."""
        ctx = self.ctx
        pool = ctx.pool
        if handoff is None:
            if head.method == b"CONNECT":
                raise BadRequest("CONNECT is not supported: pylb is a reverse proxy")
            service = pool.resolve(head.authority(), head.path(), ctx.proto, ctx.port)
            if ctx.proto == "http" and (ctx.force_ssl or pool.force_ssl(service)):
                return await self._redirect(head, ctx.https_port)
        else:
            service = handoff.service
        tried: list[BackendState] = []
        while True:
            state = pool.acquire(service, self.client_ip, tried) if handoff is None else handoff.state
            self.backend = state.backend
            failed = True
            try:
                if handoff is not None:
                    begun, handoff = handoff, None
                    keep = await self._resume(head, begun)
                else:
                    keep = await self._forward(head, state.backend)
                failed = False
                if state.fails_in_row:
                    state.fails_in_row = 0
                return keep
            except (ConnectFailed, ConnectTimeout, _NoAnswer) as exc:
                # Nothing was sent, or nothing was answered to a request that may
                # be replayed: another backend may take it (redispatch), and the
                # failure counts toward marking this one down.
                check = pool.check_for(state, ctx.health)
                if check.enabled and observe(state, False, check):
                    log.warning("backend %s is DOWN (%s)", state.backend, exc.detail)
                tried.append(state)
                if len(tried) > ctx.retries or not pool.has_other(service, tried):
                    raise
            except (BadRequest, _ClientGone):
                failed = False
                raise
            finally:
                pool.release(state, failed)

    async def _redirect(self, head: Head, port: int) -> bool:
        keep = head.keep_alive and head.framing == NO_BODY and not self.ctx.closing
        answer = https_redirect(head, port, keep)
        if answer is None:
            raise BadRequest("no Host to redirect to https")
        self.status = int(answer[9:12])
        await self._to_client(answer)
        return keep

    async def _forward(self, head: Head, backend: Backend) -> bool:
        # How much of the body is here already (nothing is consumed before
        # the backend connection exists, so a failed connect can redispatch).
        body_now = body_left = 0
        scanner: ChunkedScanner | None = None
        if head.framing == LENGTH:
            body_now = min(head.length, len(self.buf))
            body_left = head.length - body_now
        elif head.framing == CHUNKED:
            scanner = ChunkedScanner(BadRequest)
            body_now = scanner.feed(self.buf)
            body_left = 0 if scanner.done else -1
        upstream = self.ctx.upstream
        # A request that may not be replayed goes only on a connection seen open.
        replayable = body_left == 0 and head.method in IDEMPOTENT
        conn = upstream.take_idle(backend, check_open=not replayable)
        reused = conn is not None
        if conn is None:
            conn = await upstream.dial(backend)
        out = request_head_out(head, self.suffix, self.client_ip, _upgrading(head))
        if body_now:
            out += self.buf[:body_now]
            self.buf = self.buf[body_now:]
        try:
            if body_left == 0:
                conn = await self._send_replayable(conn, reused and replayable, replayable and not body_now, out)
                return await self._relay_response(head, conn, request_done=True)
            await self._send(conn, out)
            return await self._stream_request(head, conn, body_left, scanner)
        except BaseException:
            conn.stream.close()
            raise

    async def _resume(self, head: Head, begun: Handoff) -> bool:
        """Finish a request the fast lane began."""
        self.phase = Phase.FORWARD
        conn = begun.conn
        if conn is None:
            return await self._forward(head, begun.state.backend)
        try:
            if begun.error is not None:
                raise begun.error
            if begun.out:
                await self._send(conn, begun.out)
            return await self._relay_response(head, conn, request_done=True)
        except BaseException:
            conn.stream.close()
            raise

    async def _stream_request(self, head: Head, conn: UpstreamConn, left: int, scanner: ChunkedScanner | None) -> bool:
        """Pump the rest of the body while the response is read; errors of
        either task come out as themselves, not wrapped in a group."""
        keep = False
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            pump = _RequestBodyPump(self, conn, left, scanner, nursery.cancel_scope)
            nursery.start_soon(pump.run)
            try:
                keep = await self._relay_response(head, conn, request_done=False, pump=pump)
            except (ProxyError, _ClientGone) as exc:
                error = exc
            nursery.cancel_scope.cancel()
        if pump.error is not None and (error is None or isinstance(error, _ClientGone)):
            error = pump.error
        if error is not None:
            raise error
        return keep and pump.done

    async def _send(self, conn: UpstreamConn, data: bytes) -> None:
        timeouts = self.ctx.timeouts
        self.deadline = self.ctx.watchdog.now + timeouts.server
        try:
            await conn.stream.send_all(data)
        except _BROKEN:
            raise BadGateway(f"backend {conn.backend} closed the connection") from None

    async def _send_replayable(self, conn: UpstreamConn, retry: bool, redispatch: bool, data: bytes) -> UpstreamConn:
        """Send a whole request. With ``retry`` (an idempotent request on a
        reused connection: RFC 9110 9.2.2), a connection that turns out stale
        is replaced by a fresh one and the request sent again. With
        ``redispatch`` (an idempotent request with no body), a fresh
        connection that closes before the first byte of the answer raises
        ``_NoAnswer``: another backend may take the request."""
        try:
            await self._send(conn, data)
            if retry or redispatch:
                await self._peek_response(conn)
            return conn
        except (BadGateway, _StaleConnection):
            if not retry:
                if redispatch:
                    raise _NoAnswer(f"backend {conn.backend} closed the connection without answering") from None
                raise
        conn.stream.close()
        conn = await self.ctx.upstream.dial(conn.backend)
        try:
            await self._send(conn, data)
            if redispatch:
                await self._peek_response(conn)
        except (BadGateway, _StaleConnection):
            if redispatch:
                raise _NoAnswer(f"backend {conn.backend} closed the connection without answering") from None
            raise
        return conn

    async def _peek_response(self, conn: UpstreamConn) -> None:
        """Read the first bytes of the answer on a reused connection, so a
        connection the backend closed while idle shows up as stale."""
        self.phase = Phase.RESPONSE_HEAD
        try:
            data = await conn.stream.receive_some(RECEIVE_SIZE)
        except _BROKEN:
            raise _StaleConnection() from None
        if not data:
            raise _StaleConnection()
        conn.buf = data

    async def _read_response_head(self, conn: UpstreamConn, method: bytes) -> Head:
        self.phase = Phase.RESPONSE_HEAD
        self.deadline = self.ctx.watchdog.now + self.ctx.timeouts.server
        buf = conn.buf
        while True:
            if buf:
                end = find_head_end(buf, BadGateway)
                if end >= 0:
                    conn.buf = buf[end:]
                    return parse_response(buf if end == len(buf) else buf[:end], method)
            try:
                data = await conn.stream.receive_some(RECEIVE_SIZE)
            except _BROKEN:
                data = b""
            if not data:
                raise BadGateway(f"backend {conn.backend} closed the connection without a complete response")
            buf = buf + data if buf else data

    async def _relay_response(
        self, head: Head, conn: UpstreamConn, request_done: bool, pump: _RequestBodyPump | None = None
    ) -> bool:
        while True:
            rhead = await self._read_response_head(conn, head.method)
            if rhead.status >= 200:
                break
            if rhead.status == 101:
                if not _upgrading(head) or pump is not None:
                    raise BadGateway("backend switched protocols without an Upgrade request")
                return await self._tunnel(head, conn, rhead)
            if head.minor == 1:
                await self._to_client(response_head_out(rhead, 1, True))
        ctx = self.ctx
        framing = rhead.framing
        dechunk = framing == CHUNKED and head.minor == 0  # HTTP/1.0 knows no chunked coding
        keep_client = head.keep_alive and framing != UNTIL_CLOSE and not ctx.closing and not dechunk
        if not request_done and pump is not None and not pump.done:
            keep_client = False
        self.status = rhead.status
        out = response_head_out(rhead, head.minor, keep_client, ctx.extra_response, dechunk)
        self.phase = Phase.RESPONSE_BODY
        self.response_started = True
        if framing == NO_BODY:
            await self._to_client(out)
        elif framing == LENGTH:
            await self._relay_length(conn, out, rhead.length)
        elif framing == CHUNKED:
            await self._relay_chunked(conn, out, dechunk)
        else:
            await self._relay_until_close(conn, out)
            return False
        if pump is not None and not pump.done:
            conn.stream.close()  # the backend answered before reading the whole body
            return False
        if rhead.keep_alive:
            ctx.upstream.give_back(conn)
        else:
            conn.stream.close()
        return keep_client

    async def _tunnel(self, head: Head, conn: UpstreamConn, rhead: Head) -> bool:
        """After a 101: pump bytes both ways until both sides are done, each
        read resetting the tunnel idle timeout (WebSocket and other Upgrades)."""
        self.status = 101
        self.response_started = True
        await self._to_client(response_head_out(rhead, head.minor, True) + conn.buf)
        conn.buf, early = b"", self.buf
        self.buf = b""
        self.phase = Phase.TUNNEL
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, self.stream, conn.stream, early, nursery)
                nursery.start_soon(self._pump, conn.stream, self.stream, b"", nursery)
        finally:
            conn.stream.close()
        return False

    async def _pump(self, src: trio.abc.Stream | BackendStream, dst: trio.abc.Stream | BackendStream,
                    first: bytes, nursery: trio.Nursery) -> None:
        watchdog, idle = self.ctx.watchdog, self.ctx.timeouts.tunnel
        data = first
        try:
            while True:
                self.deadline = watchdog.now + idle
                if data:
                    await dst.send_all(data)
                data = bytes(await src.receive_some(RECEIVE_SIZE))
                if not data:
                    break
        except _BROKEN:
            nursery.cancel_scope.cancel()
            return
        send_eof = getattr(dst, "send_eof", None)
        if send_eof is None:
            nursery.cancel_scope.cancel()
            return
        with contextlib.suppress(*_BROKEN):
            await send_eof()

    async def _relay_length(self, conn: UpstreamConn, out: bytes, length: int) -> None:
        buf = conn.buf
        if len(buf) <= length:
            await self._to_client(out + buf if buf else out)
            left = length - len(buf)
            conn.buf = b""
        else:
            await self._to_client(out + buf[:length])
            conn.buf = buf[length:]
            left = 0
        if left >= SPLICE_MIN and splice.available():
            left -= await self._splice_to_client(conn, left)
            if left:
                raise BadGateway(f"backend {conn.backend} closed the connection mid-response")
        while left:
            data = await self._from_backend(conn, min(left, RECEIVE_SIZE))
            left -= len(data)
            await self._to_client(data)

    async def _splice_to_client(self, conn: UpstreamConn, count: int | None) -> int:
        """Move the body kernel-side when both ends are plain sockets; returns
        how many bytes moved (0 when it cannot splice: the caller copies)."""
        src, dst = conn.stream, self.stream
        if not isinstance(src, FastStream) or not isinstance(dst, FastStream):
            return 0
        timeouts, watchdog = self.ctx.timeouts, self.ctx.watchdog

        def touch() -> None:
            self.deadline = watchdog.now + max(timeouts.server, timeouts.client)

        touch()
        try:
            moved = await splice.splice(src.sock, dst.sock, count, touch)
        except splice.SourceBroken:
            raise BadGateway(f"backend {conn.backend} reset the connection mid-response") from None
        except splice.SinkBroken:
            raise _ClientGone() from None
        self.sent += moved
        return moved

    async def _relay_chunked(self, conn: UpstreamConn, out: bytes, dechunk: bool = False) -> None:
        """Forward a chunked body as it is (or decoded, for HTTP/1.0)."""
        scanner = ChunkedScanner(BadGateway)
        payload: list[bytes] | None = [] if dechunk else None
        data = conn.buf
        conn.buf = b""
        while True:
            used = scanner.feed(data, payload)
            if payload is not None:
                piece, payload[:] = b"".join(payload), []
            else:
                piece = data[:used]
            if scanner.done:
                conn.buf = data[used:]
                await self._to_client(out + piece)
                return
            if out or piece:
                await self._to_client(out + piece)
            out = b""
            data = await self._from_backend(conn, RECEIVE_SIZE)

    async def _relay_until_close(self, conn: UpstreamConn, out: bytes) -> None:
        await self._to_client(out + conn.buf if conn.buf else out)
        conn.buf = b""
        if splice.available() and await self._splice_to_client(conn, None):
            conn.stream.close()
            return
        while True:
            self.deadline = self.ctx.watchdog.now + self.ctx.timeouts.server
            try:
                data = await conn.stream.receive_some(RECEIVE_SIZE)
            except _BROKEN:
                raise BadGateway(f"backend {conn.backend} reset the connection mid-response") from None
            if not data:
                conn.stream.close()
                return
            await self._to_client(data)

    async def _from_backend(self, conn: UpstreamConn, size: int) -> bytes:
        self.deadline = self.ctx.watchdog.now + self.ctx.timeouts.server
        try:
            data = await conn.stream.receive_some(size)
        except _BROKEN:
            data = b""
        if not data:
            raise BadGateway(f"backend {conn.backend} closed the connection mid-response")
        return data

    async def _to_client(self, data: bytes) -> None:
        self.deadline = max(self.deadline, self.ctx.watchdog.now + self.ctx.timeouts.client)
        try:
            await self.stream.send_all(data)
        except _BROKEN:
            raise _ClientGone() from None
        self.sent += len(data)

    async def _answer_error(self, exc: ProxyError, keep_alive: bool) -> None:
        self.status = exc.status
        errors = self.ctx.errors
        errors[exc.status] = errors.get(exc.status, 0) + 1
        self.deadline = self.ctx.watchdog.now + self.ctx.timeouts.client
        try:
            await self.stream.send_all(error_response(exc.status, exc.reason, keep_alive))
        except _BROKEN:
            raise _ClientGone() from None

    async def _timed_out(self) -> None:
        """Say why the connection ends, when the client can still hear it."""
        if self.phase == Phase.REQUEST_HEAD:
            exc: ProxyError = RequestTimeout("the request head did not arrive in time")
        elif self.phase in (Phase.FORWARD, Phase.RESPONSE_HEAD) and not self.response_started:
            exc = GatewayTimeout("the backend did not answer in time")
        else:
            if self.phase == Phase.RESPONSE_BODY:
                _abort(self.stream)
            return
        with trio.move_on_after(1.0):
            self.scope = trio.CancelScope()
            await self._answer_error(exc, keep_alive=False)

    def _observe(self, head: Head, start: float) -> None:
        assert self.ctx.observer is not None
        self.ctx.observer(RequestRecord.of(self.client_ip, head, self.backend, self.status, self.sent, start))


def _upgrading(head: Head) -> bool:
    """Whether pylb passes this request's Upgrade on (never h2c: pylb speaks
    HTTP/1.1 to both sides), and so may relay a 101."""
    return head.upgrade is not None and head.upgrade.lower() != b"h2c"


class RequestTimeout(BadRequest):
    status = 408
    reason = "Request Timeout"


class _RequestBodyPump:
    """Streams the rest of a request body to the backend while the response
    is read (so 100-continue and early answers work)."""

    def __init__(
        self,
        client: ClientConnection,
        conn: UpstreamConn,
        left: int,
        scanner: ChunkedScanner | None,
        scope: trio.CancelScope,
    ) -> None:
        self.client = client
        self.conn = conn
        self.left = left
        self.scanner = scanner
        self.scope = scope
        self.done = False
        self.error: ProxyError | _ClientGone | None = None

    def touch(self) -> None:
        """The upload moves: the backend's answer may take ``server`` more
        seconds from now (a slow upload is no slow backend)."""
        client = self.client
        client.deadline = max(client.deadline, client.ctx.watchdog.now + client.ctx.timeouts.server)

    async def run(self) -> None:
        """Pump; on failure keep the error for the caller and stop the exchange."""
        try:
            await self._run()
        except (ProxyError, _ClientGone) as exc:
            self.error = exc
            self.scope.cancel()

    async def _run(self) -> None:
        client = self.client
        timeouts = client.ctx.timeouts
        if await self._splice():
            return
        while True:
            data = b""
            with trio.move_on_after(timeouts.client):
                data = bytes(await client.stream.receive_some(RECEIVE_SIZE))
            if not data:
                raise _ClientGone()
            if self.scanner is not None:
                used = self.scanner.feed(data)
                client.buf, data = data[used:], data[:used]
                finished = self.scanner.done
            else:
                if len(data) > self.left:
                    client.buf, data = data[self.left :], data[: self.left]
                self.left -= len(data)
                finished = self.left == 0
            try:
                await self.conn.stream.send_all(data)
                self.touch()
            except _BROKEN:
                return  # the backend stopped reading; its answer tells the rest
            if finished:
                self.done = True
                return

    async def _splice(self) -> bool:
        """Move a large Content-Length body kernel-side; True when done."""
        src, dst = self.client.stream, self.conn.stream
        if self.scanner is not None or self.left < SPLICE_MIN or not splice.available():
            return False
        if not isinstance(src, FastStream) or not isinstance(dst, FastStream):
            return False
        try:
            moved = await splice.splice(src.sock, dst.sock, self.left, self.touch)
        except splice.SourceBroken:
            raise _ClientGone() from None
        except splice.SinkBroken:
            return True  # the backend stopped reading; its answer tells the rest
        if moved < self.left:
            raise _ClientGone()
        self.left = 0
        self.done = True
        return True


def _abort(stream: trio.abc.Stream) -> None:
    inner = stream if isinstance(stream, FastStream) else getattr(stream, "transport_stream", None)
    if isinstance(inner, FastStream):
        inner.abort()
