"""The fast lane: small keep-alive HTTP exchanges driven by one readiness loop.

Owns: one ``select.epoll`` set with edge-triggered registrations kept for the
life of each socket (plain-HTTP client connections, and the backend
connections it has used); the task that waits on that set through trio, once
per batch of events; and the plain callbacks that serve, with no task switch
per event, the common request: a complete head with no body (or a body
already buffered), routed and balanced by the pool as usual, sent on an idle
keep-alive backend connection, answered by a response whose head and
Content-Length body arrive within ``FAST_RESPONSE`` bytes.

Everything else is handed, with the bytes already read, to the
per-connection path (``httpproxy.ClientConnection``) in a task of its own:
heads it does not take (errors included: that path answers them), bodies not
all here or chunked, CONNECT and Upgrade, FORCE_SSL redirects, no backend
(503), no idle backend connection (dial), a stale or busy one, 1xx, responses
not framed by a Content-Length that fits. That path gives the connection
back (``take_back``) after a request that left it open.

Must not know: how backends are chosen (the pool), how the per-connection
path finishes a request, TLS, PROXY headers, TCP mode.

Invariants: a client connection is served either here or by its task, never
both (it leaves the epoll set before it is handed over); a backend connection
is read here only while a request of this lane owns it; counters,
X-Forwarded-* headers, access-log records, timeouts and drain are what the
per-connection path gives the same request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket as stdsocket
from collections.abc import Callable
from typing import TypeVar

import trio
from trio.lowlevel import notify_closing, wait_readable

from pylb.core.errors import BadGateway, GatewayTimeout, ProxyError
from pylb.core.http1 import LENGTH, MAX_HEAD, NO_BODY, Head, find_head_end, parse_request, parse_response
from pylb.core.models import Backend
from pylb.core.policy import error_response, forwarded_suffix, request_head_out, response_head_out
from pylb.core.state import BackendState
from pylb.net.httpproxy import IDEMPOTENT, ClientConnection, Handoff, HttpContext, RequestRecord, RequestTimeout
from pylb.net.stream import _LINGER_RESET, RECEIVE_SIZE, FastStream
from pylb.net.timers import Watchdog
from pylb.net.upstream import Upstream, UpstreamConn, closed_by_peer

log = logging.getLogger("pylb")
_K = TypeVar("_K", bytes, tuple[bytes, bytes])

FAST_RESPONSE = 64 * 1024  # larger responses are relayed (streamed) by the per-connection path
MAX_PIPELINED = 64 * 1024  # client bytes buffered while a request is in flight; then reading pauses
BATCH = 256  # events taken per epoll call
HEAD_CACHE = 512  # parsed heads remembered (per kind); all forgotten when full
HEAD_CACHE_BYTES = 2048  # longer heads are parsed every time (they seldom repeat)

_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_OUT = _IN | select.EPOLLOUT
_READABLE = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
# The peer has finished (or failed): read until EOF, even after a short read (edge-triggered:
# a FIN that came with the last data raises no event of its own).
_HANGUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR

# Where a client connection of the lane is.
IDLE, HEAD, WAIT, SEND, GONE = 0, 1, 2, 3, 4


class _Client:
    """One client connection served by the lane (and, while a request is in
    flight, that request)."""

    __slots__ = (
        "backend",
        "body",
        "buf",
        "conn",
        "ctx",
        "deadline",
        "eof",
        "fd",
        "head",
        "ip",
        "keep",
        "lane",
        "out",
        "out_len",
        "paused",
        "replayable",
        "sent",
        "service",
        "sock",
        "start",
        "state",
        "stage",
        "status",
        "suffix",
    )

    def __init__(self, lane: FastLane, sock: stdsocket.socket, ctx: HttpContext, ip: bytes, suffix: bytes) -> None:
        self.lane = lane
        self.sock = sock
        self.fd = sock.fileno()
        self.ctx = ctx
        self.ip = ip
        self.suffix = suffix
        self.buf = b""
        self.out = b""
        self.out_len = 0
        self.stage = IDLE
        self.deadline = 0.0
        self.eof = False
        self.paused = False
        self.keep = False
        self.sent = 0
        # the request in flight
        self.head: Head | None = None
        self.body = b""
        self.service = ""
        self.state: BackendState | None = None
        self.backend: Backend | None = None
        self.conn: UpstreamConn | None = None
        self.replayable = False
        self.start = 0.0
        self.status = 0

    @property
    def scope(self) -> _Client:
        """What the watchdog cancels when the deadline passes (this)."""
        return self

    def cancel(self) -> None:
        self.lane.expire(self)

    def __repr__(self) -> str:
        return f"<fast-lane client {self.ip.decode()} fd={self.fd} stage={self.stage}>"


class FastLane:
    """The readiness loop shared by a balancer's plain-HTTP listeners.
    ``closed`` is called once for each client connection that ends (here or
    in a task it was handed to)."""

    def __init__(self, upstream: Upstream, watchdog: Watchdog, closed: Callable[[], None]) -> None:
        self.upstream = upstream
        self.watchdog = watchdog
        self._closed = closed
        self._ep: select.epoll | None = None
        self._nursery: trio.Nursery | None = None
        self._clients: dict[int, _Client] = {}
        self._backends: dict[int, UpstreamConn] = {}  # registered backend connections, by fd
        self._waiting: dict[int, _Client] = {}  # backend fd -> the client whose response it carries
        # Heads seen before, parsed: a backend sends the same response head
        # (Date aside) and a client often the same request head, again and again.
        self._request_heads: dict[bytes, Head] = {}
        self._response_heads: dict[tuple[bytes, bytes], Head] = {}
        self.requests = 0
        self.handoffs = 0
        self.taken_back = 0
        self.wakeups = 0

    def statistics(self) -> dict[str, int]:
        return {
            "clients": len(self._clients),
            "in_flight": len(self._waiting),
            "requests": self.requests,
            "handoffs": self.handoffs,
            "taken_back": self.taken_back,
            "wakeups": self.wakeups,
        }

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<FastLane clients={s['clients']} requests={s['requests']} handoffs={s['handoffs']}>"

    # ---- the loop ---------------------------------------------------------------------------

    async def run(
        self, nursery: trio.Nursery, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Wait for readiness, serve every ready socket, repeat; connections
        handed over run as tasks in ``nursery``."""
        self._nursery = nursery
        ep = self._ep = select.epoll()
        try:
            task_status.started()
            while True:
                await wait_readable(ep.fileno())
                self.wakeups += 1
                while True:
                    events = ep.poll(0, BATCH)
                    for fd, ev in events:
                        self._dispatch(fd, ev)
                    if len(events) < BATCH:
                        break
                    await trio.lowlevel.checkpoint()  # a flood must not starve other tasks
        finally:
            self._ep = None
            for client in list(self._clients.values()):
                self._release(client, failed=False)
                self._close(client)
            ep.close()

    def _dispatch(self, fd: int, ev: int) -> None:
        client = self._clients.get(fd)
        try:
            if client is not None:
                if ev & select.EPOLLOUT and client.out:
                    self._flush(client)
                if ev & _READABLE and client.stage != GONE:
                    self._read(client, bool(ev & _HANGUP))
                return
            client = self._waiting.get(fd)
            if client is not None:
                self._response(client, bool(ev & _HANGUP))
                return
            conn = self._backends.get(fd)
            if conn is not None:
                self._stray(fd, conn)
        except Exception:
            log.exception("internal error in the fast lane; connection closed")
            if client is not None:
                self._release(client, failed=False)
                self._close(client)

    # ---- client connections -----------------------------------------------------------------

    def adopt(self, sock: stdsocket.socket, address: tuple[str, int], ctx: HttpContext) -> None:
        """Serve a newly accepted connection of a plain-HTTP listener."""
        sock.setblocking(False)
        ip = address[0]
        self._attach(_Client(self, sock, ctx, ip.encode(), forwarded_suffix(ip, ctx.proto, ctx.port)))

    def take_back(self, client: ClientConnection) -> bool:
        """Serve here again a connection handed over earlier, after a request
        that kept it open; False when the lane cannot (it is stopping)."""
        stream = client.stream
        if self._ep is None or client.ctx.closing or not isinstance(stream, FastStream):
            return False
        self.taken_back += 1
        c = _Client(self, stream.sock, client.ctx, client.client_ip, client.suffix)
        c.buf, c.sent = client.buf, client.sent
        self._attach(c)
        if c.buf:
            try:
                self._serve_buffered(c)
            except Exception:
                log.exception("internal error in the fast lane; connection closed")
                self._release(c, failed=False)
                self._close(c)  # counted closed here, once: the task that gave it back does not
        return True

    def close_idle(self) -> int:
        """Close connections waiting for a request (drain); return how many."""
        idle = [c for c in self._clients.values() if c.stage == IDLE and not c.buf]
        for c in idle:
            self._close(c)
        return len(idle)

    def _attach(self, c: _Client) -> None:
        assert self._ep is not None
        self._ep.register(c.fd, _IN)  # reports at once what has arrived already
        self._clients[c.fd] = c
        c.deadline = self.watchdog.now + c.ctx.timeouts.client
        self.watchdog.watch(c)

    def _read(self, c: _Client, hangup: bool = False) -> None:
        while True:
            limited = self._fill(c, hangup)
            if c.stage <= HEAD:
                self._serve_buffered(c)
            if not limited or c.stage == GONE:
                return
            if c.stage > HEAD:
                c.paused = True  # read again once the response is out (edge-triggered: no new event)
                return

    def _fill(self, c: _Client, hangup: bool = False) -> bool:
        """Read what the client sent, up to MAX_PIPELINED buffered; True when
        it stopped there (more may be waiting: no new event will say so).
        Beyond that, a body is streamed by the per-connection path."""
        fd = c.sock.fileno()  # -1 once closed: EBADF, never another connection's socket
        while len(c.buf) < MAX_PIPELINED:
            try:
                data = os.read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:
                c.eof = True
                return False
            c.buf = c.buf + data if c.buf else data
            if len(data) < RECEIVE_SIZE and not hangup:
                return False
        return True

    def _serve_buffered(self, c: _Client) -> None:
        if c.buf:
            self._request(c)
        if c.stage <= HEAD and c.eof:
            self._close(c)  # closed between requests (or mid-head): nothing to answer

    def _request(self, c: _Client) -> None:
        buf = c.buf
        while buf[:2] == b"\r\n":  # RFC 9112 2.2: ignore leading empty lines
            buf = buf[2:]
        c.buf = buf
        ctx = c.ctx
        if not buf:
            if c.stage == HEAD:  # only empty lines after the last request: still idle
                c.stage, c.deadline = IDLE, self.watchdog.now + ctx.timeouts.client
            return
        if c.stage == IDLE:
            c.stage = HEAD
            c.deadline = min(c.deadline, self.watchdog.now + ctx.timeouts.request_head)
        try:
            end = buf.find(b"\r\n\r\n") + 4  # find_head_end's common case, inline
            if end < 4 or end > MAX_HEAD:
                end = find_head_end(buf)  # more to come, or an error to raise
                if end < 0:
                    return
            raw = buf if end == len(buf) else buf[:end]
            head = self._request_heads.get(raw)
            if head is None:
                head = parse_request(raw)
                _remember(self._request_heads, raw, head)
        except ProxyError:
            self._hand_over(c)  # the per-connection path answers it
            return
        if head.method == b"CONNECT" or head.upgrade is not None or head.framing > LENGTH:
            self._hand_over(c)
            return
        size = head.length if head.framing == LENGTH else 0
        if size > len(buf) - end:
            self._hand_over(c)  # the body is streamed
            return
        pool = ctx.pool
        target = head.target
        try:
            if target[:1] == b"/":  # origin form (authority() and path() in short)
                service = pool.resolve(head.host, target.partition(b"?")[0], ctx.proto, ctx.port)
            else:
                service = pool.resolve(head.authority(), head.path(), ctx.proto, ctx.port)
            if ctx.proto == "http" and (ctx.force_ssl or pool.force_ssl(service)):
                self._hand_over(c)
                return
            state = pool.acquire(service, c.ip)
        except ProxyError:
            self._hand_over(c)
            return
        # From here on the request is this lane's (counted once, here).
        ctx.requests += 1
        self.requests += 1
        c.start = trio.current_time() if ctx.observer is not None else 0.0
        c.head, c.service, c.state, c.backend, c.status = head, service, state, state.backend, 0
        out = request_head_out(head, c.suffix, c.ip)
        rest = buf[end:]
        if size:
            c.body, rest = rest[:size], rest[size:]
            out += c.body
        else:
            c.body = b""
        c.buf = rest
        c.replayable = head.method in IDEMPOTENT
        conn = self.upstream.take_idle(state.backend, check_open=not c.replayable)
        if conn is None:
            self._hand_over_unsent(c)  # that path dials
            return
        if not isinstance(conn.stream, FastStream):
            self._hand_over(c, conn=conn, out=out)
            return
        sock = conn.stream.sock
        fd = sock.fileno()
        if self._backends.get(fd) is not conn:
            self._register_backend(fd, conn)
        c.conn = conn
        try:
            sent = os.write(fd, out)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Closed while idle: replay it elsewhere when that is safe (RFC 9110 9.2.2).
            if c.replayable:
                self._drop_backend(conn)
                self._hand_over_unsent(c)
            else:
                self._hand_over(c, conn=conn, error=BadGateway(f"backend {conn.backend} closed the connection"))
            return
        if sent < len(out):
            self._hand_over(c, conn=conn, out=out[sent:])
            return
        c.stage = WAIT
        c.deadline = self.watchdog.now + ctx.timeouts.server
        self._waiting[fd] = c

    # ---- backend connections ----------------------------------------------------------------

    def _register_backend(self, fd: int, conn: UpstreamConn) -> None:
        assert self._ep is not None
        try:
            self._ep.register(fd, _IN)
        except FileExistsError:
            self._ep.modify(fd, _IN)
        self._backends[fd] = conn

    def _forget_backend(self, conn: UpstreamConn) -> None:
        """Stop watching ``conn`` (another task is going to use it)."""
        sock = getattr(conn.stream, "sock", None)
        if sock is None or sock.fileno() == -1:
            return
        fd = sock.fileno()
        if self._backends.pop(fd, None) is not None and self._ep is not None:
            with contextlib.suppress(OSError):
                self._ep.unregister(fd)
        self._waiting.pop(fd, None)

    def _drop_backend(self, conn: UpstreamConn) -> None:
        sock = getattr(conn.stream, "sock", None)
        if sock is not None and sock.fileno() != -1:
            self._backends.pop(sock.fileno(), None)
            self._waiting.pop(sock.fileno(), None)
        conn.stream.close()  # closing also leaves the epoll set

    def _stray(self, fd: int, conn: UpstreamConn) -> None:
        """An event on a backend connection no request of this lane owns:
        closed (or written to) while idle, or in use by a task."""
        self._backends.pop(fd, None)
        if closed_by_peer(conn.stream) and self.upstream.discard_idle(conn):
            return  # closing it also left the epoll set
        if self._ep is not None:
            with contextlib.suppress(OSError):
                self._ep.unregister(fd)

    def _response(self, c: _Client, hangup: bool = False) -> None:
        conn = c.conn
        head = c.head
        assert conn is not None and head is not None and isinstance(conn.stream, FastStream)
        sock = conn.stream.sock
        rfd = sock.fileno()
        buf = conn.buf
        before = len(buf)
        eof = limited = False
        while True:
            if len(buf) >= FAST_RESPONSE:
                limited = True  # more may be waiting: the per-connection path reads it
                break
            try:
                data = os.read(rfd, RECEIVE_SIZE)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                eof = True
                break
            buf = buf + data if buf else data
            if len(data) < RECEIVE_SIZE and not hangup:
                break
        conn.buf = buf
        if eof and not buf and c.replayable:
            # A reused connection closed before it answered: replay the request
            # on another one, as the per-connection path does.
            self._drop_backend(conn)
            c.conn = None
            self._hand_over_unsent(c)
            return
        try:
            end = buf.find(b"\r\n\r\n") + 4  # find_head_end's common case, inline
            if end < 4 or end > MAX_HEAD:
                end = find_head_end(buf, BadGateway)
                if end < 0:
                    if eof or limited:
                        self._hand_over(c, conn=conn)
                    return
            key = (buf if end == len(buf) else buf[:end], head.method)
            rhead = self._response_heads.get(key)
            if rhead is None:
                rhead = parse_response(key[0], head.method)
                _remember(self._response_heads, key, rhead)
        except ProxyError:
            self._hand_over(c, conn=conn)  # the per-connection path answers it
            return
        if rhead.status < 200:
            self._hand_over(c, conn=conn)  # 1xx, 101
            return
        if rhead.framing == NO_BODY:
            size = 0
        elif rhead.framing == LENGTH and rhead.length <= FAST_RESPONSE:
            size = rhead.length
            if len(buf) - end < size:
                if eof or limited:
                    self._hand_over(c, conn=conn)
                elif len(buf) > before:  # the body moves: the server timeout counts from its last bytes
                    c.deadline = self.watchdog.now + c.ctx.timeouts.server
                return  # the rest of the body is on its way
        else:
            self._hand_over(c, conn=conn)  # chunked, until close, or large: streamed
            return
        ctx = c.ctx
        keep = head.keep_alive and not ctx.closing
        out = response_head_out(rhead, head.minor, keep, ctx.extra_response)
        stop = end + size
        if size:
            out += buf[end:stop]
        conn.buf = buf[stop:]
        fd = sock.fileno()
        del self._waiting[fd]
        c.conn = None
        c.status = rhead.status
        if rhead.keep_alive and not eof:
            self.upstream.give_back(conn)
        else:
            conn.stream.close()
        if sock.fileno() == -1:
            self._backends.pop(fd, None)
        state = c.state
        assert state is not None
        if state.fails_in_row:
            state.fails_in_row = 0
        ctx.pool.release(state)
        c.state = None
        self._send(c, out, keep)

    # ---- answers ------------------------------------------------------------------------------

    def _send(self, c: _Client, out: bytes, keep: bool) -> None:
        try:
            sent = os.write(c.sock.fileno(), out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(c)  # the client went away
            return
        if sent < len(out):
            assert self._ep is not None
            c.out, c.out_len, c.keep = out[sent:], len(out), keep
            c.stage = SEND
            c.deadline = max(c.deadline, self.watchdog.now + c.ctx.timeouts.client)
            self._ep.modify(c.fd, _OUT)
            return
        self._done(c, len(out), keep)

    def _flush(self, c: _Client) -> None:
        try:
            sent = os.write(c.sock.fileno(), c.out)
        except BlockingIOError:
            return
        except OSError:
            self._close(c)
            return
        c.out = c.out[sent:]
        c.deadline = max(c.deadline, self.watchdog.now + c.ctx.timeouts.client)
        if not c.out:
            assert self._ep is not None
            self._ep.modify(c.fd, _IN)
            self._done(c, c.out_len, c.keep)

    def _done(self, c: _Client, size: int, keep: bool) -> None:
        c.sent += size
        ctx = c.ctx
        if ctx.observer is not None:
            self._observe(c)
        c.head = None
        c.body = b""
        if not keep or ctx.closing:
            self._close(c)
            return
        now = self.watchdog.now
        if c.buf:
            c.stage, c.deadline = HEAD, now + ctx.timeouts.request_head
        else:
            c.stage, c.deadline = IDLE, now + ctx.timeouts.client
        if c.paused:
            c.paused = False
            self._read(c)
        else:
            self._serve_buffered(c)

    def _observe(self, c: _Client) -> None:
        head = c.head
        assert c.ctx.observer is not None and head is not None
        c.ctx.observer(RequestRecord.of(c.ip, head, c.backend, c.status, c.sent, c.start))

    # ---- leaving the lane -----------------------------------------------------------------------

    def _hand_over_unsent(self, c: _Client) -> None:
        """Hand over a begun request that still has to be sent (its body goes
        back in front of the client's buffer)."""
        if c.body:
            c.buf = c.body + c.buf
        self._hand_over(c, conn=None)

    def _hand_over(
        self,
        c: _Client,
        conn: UpstreamConn | None = None,
        out: bytes = b"",
        error: ProxyError | None = None,
    ) -> None:
        """Give the connection to a task on the per-connection path, with
        what was read; with the request in flight when one was begun."""
        assert self._nursery is not None and self._ep is not None
        self.handoffs += 1
        handoff: Handoff | None = None
        if c.state is not None:
            assert c.head is not None
            handoff = Handoff(c.head, c.service, c.state, c.start, conn, out, error)
            if conn is not None:
                self._forget_backend(conn)
        self._detach(c)
        client = ClientConnection(FastStream(c.sock, nodelay=False), (c.ip.decode(), 0), c.ctx)
        client.buf, client.sent, client.fresh, client.lane = c.buf, c.sent, False, self
        c.state = c.conn = c.head = None
        self._nursery.start_soon(self._slow, client, handoff)

    async def _slow(self, client: ClientConnection, handoff: Handoff | None) -> None:
        try:
            await client.run(handoff)
        except Exception:
            log.exception("internal error on a connection from %s; connection closed", client.client_ip.decode())
            if isinstance(client.stream, FastStream):
                client.stream.close()
        finally:
            if not client.handed_back:
                self._closed()

    def _detach(self, c: _Client) -> None:
        """Take ``c`` out of the lane (its socket stays open)."""
        c.stage = GONE
        self._clients.pop(c.fd, None)
        self.watchdog.unwatch(c)
        if self._ep is not None:
            with contextlib.suppress(OSError):
                self._ep.unregister(c.fd)

    def _close(self, c: _Client, reset: bool = False) -> None:
        if c.stage == GONE:
            return
        c.stage = GONE
        self._clients.pop(c.fd, None)
        self.watchdog.unwatch(c)
        sock = c.sock
        if reset:
            with contextlib.suppress(OSError):
                sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, _LINGER_RESET)
        notify_closing(sock)  # trio may know this socket from a task it was handed to
        sock.close()  # and it leaves the epoll set
        self._closed()

    def _release(self, c: _Client, failed: bool) -> None:
        """End the request in flight, if any, without an answer."""
        if c.conn is not None:
            self._drop_backend(c.conn)
            c.conn = None
        if c.state is not None:
            c.ctx.pool.release(c.state, failed)
            c.state = None

    def expire(self, c: _Client) -> None:
        """The watchdog's verdict: ``c``'s deadline passed. Says why when the
        client can still hear it, as the per-connection path does."""
        if c.stage == GONE:
            return
        exc: ProxyError | None = None
        if c.stage == HEAD:
            exc = RequestTimeout("the request head did not arrive in time")
        elif c.stage == WAIT:
            self._release(c, failed=True)
            exc = GatewayTimeout("the backend did not answer in time")
        if exc is not None:
            errors = c.ctx.errors
            errors[exc.status] = errors.get(exc.status, 0) + 1
            with contextlib.suppress(OSError):
                c.sock.send(error_response(exc.status, exc.reason, False))
        self._close(c, reset=c.stage == SEND)


def _remember(cache: dict[_K, Head], key: _K, head: Head) -> None:
    """Keep a parsed head for the next identical one (parsing is pure, and
    nothing changes a ``Head`` once parsed)."""
    if len(head.raw) > HEAD_CACHE_BYTES:
        return
    if len(cache) >= HEAD_CACHE:
        cache.clear()
    cache[key] = head
