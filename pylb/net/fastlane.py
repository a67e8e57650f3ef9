"""The readiness-loop driver of the HTTP exchange machine.

Owns: one ``select.epoll`` set with edge-triggered registrations kept for the
life of each socket (client connections of HTTP and HTTPS listeners, the
backend connections they use, dials in progress); the task that waits on
that set through trio, once per batch of events; for each ready socket,
reading and writing with plain calls (``os.read``/``os.write`` by file
descriptor, TLS through a ``TlsSession``), feeding what happened to the
connection's ``Exchange`` and doing what it answers; non-blocking dials to
backends named by an IP address. When the machine asks for what a task does
better (a request body to stream, a bulk body to splice, a tunnel, a dial
that needs a name resolved), the connection goes to a task
(``httptask.ClientConnection``) with its machine as it is, and comes back
between requests.

Must not know: any protocol rule (when to replay, keep alive, time out,
answer an error: the machine's), how backends are chosen, PROXY headers,
TCP mode.

Invariants: a client connection is served either here or by its task, never
both (it leaves the epoll set before it is handed over); a backend
connection is read here only while an exchange of this loop owns it; every
readiness edge is either consumed (read until EAGAIN) or remembered
(``client_ready``/``backend_ready``) until the machine wants those bytes; no
write is pending when a connection is handed over.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import select
import socket as stdsocket
import ssl
from collections.abc import Callable

import trio
from trio.lowlevel import notify_closing, wait_readable

from pylb.core import exchange as ex
from pylb.core.errors import ConnectFailed
from pylb.net.httptask import ClientConnection, Driven
from pylb.net.stream import _LINGER_RESET, RECEIVE_SIZE, FastStream
from pylb.net.timers import Watchdog
from pylb.net.tlsconn import TlsError, TlsSession, TlsStream
from pylb.net.upstream import Upstream, UpstreamConn, closed_by_peer

log = logging.getLogger("pylb")

MAX_PIPELINED = 64 * 1024  # client bytes buffered while a request is in flight; then reading pauses
READ_AHEAD = 64 * 1024  # backend bytes read per round; then the client's write comes first
BATCH = 256  # events taken per epoll call
REPOLL = 4  # batches handled per trio wake-up, at most (other tasks run between)

_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_OUT = _IN | select.EPOLLOUT
_READABLE = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
# The peer has finished (or failed): read until EOF, even after a short read (edge-triggered:
# a FIN that came with the last data raises no event of its own).
_HANGUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR

_READ_CLIENT, _DIAL, _SEND_BACKEND, _READ_BACKEND = ex.READ_CLIENT, ex.DIAL, ex.SEND_BACKEND, ex.READ_BACKEND
_SEND_CLIENT, _CLOSE, _NOTHING = ex.SEND_CLIENT, ex.CLOSE, ex.NOTHING
_HEAD, _FLUSH = ex.HEAD, ex.FLUSH
_EPOLLOUT = select.EPOLLOUT


class _Client(Driven):
    """One client connection served by the loop, with its exchange machine."""

    __slots__ = (
        "backend_ready",
        "bout",
        "client_ready",
        "cout",
        "dialing",
        "fd",
        "gone",
        "lane",
        "sock",
        "tls",
    )

    def __init__(self, lane: FastLane, sock: stdsocket.socket, x: ex.Exchange, tls: TlsSession | None) -> None:
        self.lane = lane
        self.sock = sock
        self.fd = sock.fileno()
        self.x = x
        self.tls = tls
        self.cout = b""  # bytes for the client the socket did not take yet (then EPOLLOUT)
        self.bout = b""  # bytes for the backend, likewise
        self.client_ready = False  # the client may have sent more than was read
        self.backend_ready = False  # the backend may have sent more than was read
        self.dialing: stdsocket.socket | None = None
        self.gone = False

    @property
    def scope(self) -> _Client:
        """What the watchdog cancels when the deadline passes (this)."""
        return self

    def cancel(self) -> None:
        self.lane.expire(self)

    def __repr__(self) -> str:
        return f"<fast-lane client fd={self.fd}{' tls' if self.tls else ''} {self.x!r}>"


class FastLane:
    """The readiness loop shared by a balancer's HTTP and HTTPS listeners.
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
        self._owner: dict[int, _Client] = {}  # backend (or dialing) fd -> the client using it
        self.requests = 0  # answers this loop finished writing
        self.handoffs = 0
        self.taken_back = 0
        self.wakeups = 0
        self.handshakes = 0
        self.dials = 0

    def statistics(self) -> dict[str, int]:
        return {
            "clients": len(self._clients),
            "in_flight": sum(1 for c in self._clients.values() if c.x.state > ex.HEAD),
            "requests": self.requests,
            "handoffs": self.handoffs,
            "taken_back": self.taken_back,
            "wakeups": self.wakeups,
            "handshakes": self.handshakes,
            "dials": self.dials,
        }

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<FastLane clients={s['clients']} handoffs={s['handoffs']} taken_back={s['taken_back']}>"

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
                # Poll again before waiting through trio: under load, answers to what a batch sent
                # are ready by the time it is done, and a trio wake-up costs more than an empty poll
                # (the relay lane does the same). A flood still yields: at most REPOLL batches.
                for _ in range(REPOLL):
                    events = ep.poll(0, BATCH)
                    if not events:
                        break
                    for fd, ev in events:
                        self._dispatch(fd, ev)
        finally:
            self._ep = None
            for client in list(self._clients.values()):
                self._lost(client)
            ep.close()

    def _dispatch(self, fd: int, ev: int) -> None:
        c = self._clients.get(fd)
        try:
            if c is not None:
                if ev & _EPOLLOUT and c.cout:
                    self._flush_client(c)
                if ev & _READABLE and not c.gone:
                    x = c.x
                    if x.state > _HEAD and len(x.buf) >= MAX_PIPELINED:
                        c.client_ready = True  # read again once this request is over (no new event)
                    elif c.tls is None and not ev & _HANGUP:  # the common event: one read, a request
                        try:
                            data = os.read(c.sock.fileno(), RECEIVE_SIZE)
                        except BlockingIOError:
                            return
                        except OSError:
                            data = b""
                        if data and len(data) < RECEIVE_SIZE:
                            self._run(c, x.client_data(data))
                        else:
                            self._run(c, self._read_client(c, False, data, not data))
                    else:
                        self._run(c, self._read_client(c, bool(ev & _HANGUP)))
                return
            c = self._owner.get(fd)
            if c is not None:
                conn = c.x.conn
                if conn is not None and conn is self._backends.get(fd) and c.dialing is None:
                    if ev & _EPOLLOUT and c.bout:
                        self._flush_backend(c, conn, fd)  # type: ignore[arg-type]
                    if ev & _READABLE and not c.gone and c.x.conn is conn:
                        if c.cout:
                            c.backend_ready = True  # the client's write comes first (backpressure)
                        elif not ev & _HANGUP:  # the common event: one read, an answer
                            try:
                                data = os.read(fd, RECEIVE_SIZE)
                            except BlockingIOError:
                                return
                            except OSError:
                                self._run(c, self._read_backend(c, True, b"", _RESET))
                                return
                            if data and len(data) < RECEIVE_SIZE:
                                self._run(c, c.x.backend_data(data))
                            else:
                                self._run(c, self._read_backend(c, False, data, 0 if data else _EOF))
                        else:
                            self._run(c, self._read_backend(c, True))
                    return
                self._backend_event(c, fd)
                return
            idle = self._backends.get(fd)
            if idle is not None:
                self._stray(fd, idle)
        except Exception:
            log.exception("internal error in the fast lane; connection closed")
            if c is not None:
                self._lost(c)

    # ---- client connections -----------------------------------------------------------------

    def adopt(
        self, sock: stdsocket.socket, address: tuple[str, int], site: ex.Site, tls: ssl.SSLContext | None = None
    ) -> None:
        """Serve a newly accepted connection of an HTTP (or, with ``tls``, HTTPS) listener."""
        sock.setblocking(False)
        x = ex.Exchange(site, address)
        c = _Client(self, sock, x, TlsSession(tls) if tls is not None else None)
        if tls is not None:
            x.deadline = site.clock.now + site.timeouts.handshake
        self._attach(c)

    def take_back(self, task: ClientConnection) -> bool:
        """Serve here again a connection handed over earlier, between requests;
        False when the loop cannot (it is stopping)."""
        stream = task.stream
        tls: TlsSession | None = None
        if isinstance(stream, TlsStream):
            tls, stream = stream.session, stream.transport_stream
        if self._ep is None or task.x.site.closing or not isinstance(stream, FastStream):
            return False
        self.taken_back += 1
        self._attach(_Client(self, stream.sock, task.x, tls))  # registering reports what arrived meanwhile
        return True

    def close_idle(self) -> int:
        """Close connections waiting for a request (drain); return how many."""
        idle = [c for c in self._clients.values() if c.x.state == ex.IDLE and not c.x.buf and not c.cout]
        for c in idle:
            self._close(c)
        return len(idle)

    def _attach(self, c: _Client) -> None:
        assert self._ep is not None
        self._ep.register(c.fd, _IN)  # reports at once what has arrived already
        self._clients[c.fd] = c
        self.watchdog.watch(c)

    def _read_client(self, c: _Client, hangup: bool = False, data: bytes = b"", eof: bool = False) -> int:
        """Read what the client sent (up to MAX_PIPELINED; ``data``: read
        already, ``eof``: the end, read already), feed it to the machine; its
        action."""
        c.client_ready = False
        if not eof:
            # c.sock.fileno(): -1 once closed: EBADF, never another connection's socket
            data, end = _read_all(c.sock.fileno(), data, hangup, MAX_PIPELINED)
            eof = end in (_EOF, _RESET)
            c.client_ready = end == _MORE  # more may be waiting: no new event will say so
        x = c.x
        tls = c.tls
        if tls is not None:
            try:
                if tls.handshaken and not tls.outgoing.pending:  # the common case, in short
                    data = tls.decrypt(data) if data else b""
                    if tls.outgoing.pending:  # the session answered something itself (a key update)
                        self._write_client(c, tls.pending())
                else:
                    data = self._decrypt(c, tls, data)
            except TlsError as exc:
                log.debug("connection from %s: %s", x.client_ip.decode(), exc)
                x.client_lost()
                return _CLOSE
            if c.gone:
                return _NOTHING
            eof = eof or tls.eof
        action = x.client_data(data) if data else _NOTHING
        if eof:
            after = x.client_eof()
            if after != _NOTHING:
                action = after
        return action

    def _decrypt(self, c: _Client, tls: TlsSession, data: bytes) -> bytes:
        if not tls.handshaken:
            if not data:
                return b""
            out = tls.handshake(data)
            if out:
                self._write_client(c, out)
            if not tls.handshaken or c.gone:
                return b""
            self.handshakes += 1
            x = c.x
            x.deadline = x.site.clock.now + x.site.timeouts.client
            data = b""  # application data that came with the client's Finished is in the session
        plain = tls.decrypt(data)
        reply = tls.pending()
        if reply:
            self._write_client(c, reply)
        return plain

    def _write_client(self, c: _Client, data: bytes) -> None:
        """Write bytes of the TLS layer itself (handshake, replies), in order
        with whatever waits already."""
        if c.cout:
            c.cout += data
            return
        try:
            sent = os.write(c.sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the next read finds it gone
        if sent < len(data):
            c.cout = data[sent:]
            assert self._ep is not None
            self._ep.modify(c.fd, _OUT)

    def _send_client(self, c: _Client) -> int:
        x = c.x
        out = x.out
        if c.tls is not None:
            try:
                out = c.tls.encrypt(out)
            except TlsError:
                return x.client_lost()
        if c.cout:  # TLS bytes of its own are still waiting: these go after them
            c.cout += out
            return _NOTHING
        try:
            sent = os.write(c.sock.fileno(), out)
        except BlockingIOError:
            sent = 0
        except OSError:
            return x.client_lost()
        if sent < len(out):
            c.cout = out[sent:]
            assert self._ep is not None
            self._ep.modify(c.fd, _OUT)
            return _NOTHING
        if x.state == ex.FLUSH:
            self.requests += 1
        return x.client_sent()

    def _flush_client(self, c: _Client) -> None:
        try:
            sent = os.write(c.sock.fileno(), c.cout)
        except BlockingIOError:
            return
        except OSError:
            c.cout = b""
            self._run(c, c.x.client_lost())
            return
        c.cout = c.cout[sent:]
        c.x.touch()
        if c.cout:
            return
        assert self._ep is not None
        self._ep.modify(c.fd, _IN)
        x = c.x
        if x.out and x.state in (ex.INTERIM, ex.RELAY, ex.FLUSH):
            if x.state == ex.FLUSH:
                self.requests += 1
            self._run(c, x.client_sent())
        elif x.state <= ex.HEAD:
            self._run(c, _READ_CLIENT if c.client_ready else _NOTHING)

    # ---- doing what the machine says --------------------------------------------------------

    def _run(self, c: _Client, action: int) -> None:
        """Do what the machine says, until it says to wait. Writes are made
        here (the common ones) or in ``_send_client`` (TLS, or bytes waiting
        already): the per-request path, written for few calls."""
        x = c.x
        while True:
            if action == _SEND_BACKEND:
                conn = x.conn
                # The loop runs only with real sockets to backends (a balancer with a custom dialer has no loop).
                fd = conn.stream.sock.fileno()  # type: ignore[union-attr]
                if self._backends.get(fd) is not conn:
                    self._register_backend(fd, conn)  # type: ignore[arg-type]
                    c.backend_ready = False
                self._owner[fd] = c
                out = x.out
                try:
                    sent = os.write(fd, out)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    action = x.backend_lost()
                    continue
                if sent < len(out):
                    c.bout = out[sent:]
                    self._ep.modify(fd, _OUT)  # type: ignore[union-attr]
                    return
                action = x.backend_sent()
            elif action == _SEND_CLIENT:
                if c.cout:
                    action = self._send_client(c)
                    continue
                out = x.out
                tls = c.tls
                if tls is not None:
                    try:
                        tls.raw.write(out)  # TlsSession.encrypt, in short
                    except (ssl.SSLError, OSError):
                        action = x.client_lost()
                        continue
                    out = tls.outgoing.read()
                try:
                    sent = os.write(c.sock.fileno(), out)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    action = x.client_lost()
                    continue
                if sent < len(out):
                    c.cout = out[sent:]
                    self._ep.modify(c.fd, _OUT)  # type: ignore[union-attr]
                    return
                if x.state == _FLUSH:
                    self.requests += 1
                action = x.client_sent()
            elif action == _READ_BACKEND:
                if x.streaming or (x.blind and c.tls is None):
                    self._hand_over(c, action)  # a task pumps the body, or splices the answer
                    return
                if not c.backend_ready:
                    return  # the next edge brings it
                action = self._read_backend(c)
            elif action == _READ_CLIENT:
                if not c.client_ready or c.cout:
                    return
                action = self._read_client(c)
            elif action == _NOTHING:
                if c.client_ready and x.state <= _HEAD and not c.cout:
                    action = self._read_client(c)
                    continue
                return
            elif action == _DIAL:
                action = self._dial(c)
            elif action == _CLOSE:
                self._close(c, x.reset)
                return
            else:  # TUNNEL
                self._hand_over(c, action)
                return

    # ---- backend connections ----------------------------------------------------------------

    def _backend_event(self, c: _Client, fd: int) -> None:
        """An event on a socket ``c`` owned but is not using now: its dial
        completing, or a connection its exchange is done with (idle now)."""
        dialing = c.dialing
        if dialing is not None and dialing.fileno() == fd:
            self._dialed(c)
            return
        del self._owner[fd]
        idle = self._backends.get(fd)
        if idle is not None:
            self._stray(fd, idle)

    def _read_backend(self, c: _Client, hangup: bool = False, data: bytes = b"", end: int = 0) -> int:
        """Read what the backend sent (up to READ_AHEAD; ``data``: read already,
        ``end``: its EOF (_EOF) or reset (_RESET), read already), feed it to
        the machine; its action."""
        x = c.x
        conn = x.conn
        c.backend_ready = False
        fd = conn.stream.sock.fileno()  # type: ignore[union-attr]
        if not end:
            data, end = _read_all(fd, data, hangup, READ_AHEAD)
            c.backend_ready = end == _MORE
        eof, reset = end in (_EOF, _RESET), end == _RESET
        action = x.backend_data(data) if data else _NOTHING
        if eof:
            if x.conn is conn:
                after = x.backend_eof(reset)  # (kept by the machine while bytes before it are written)
                if after != _NOTHING:
                    action = after
            else:  # the answer ended with the connection: it went back to the pool closed
                self.upstream.discard_idle(conn)  # type: ignore[arg-type]
                self._backends.pop(fd, None)
                self._owner.pop(fd, None)
        return action

    def _flush_backend(self, c: _Client, conn: UpstreamConn, fd: int) -> None:
        try:
            sent = os.write(fd, c.bout)
        except BlockingIOError:
            return
        except OSError:
            c.bout = b""
            self._run(c, c.x.backend_lost())
            return
        c.bout = c.bout[sent:]
        if c.bout:
            return
        assert self._ep is not None
        self._ep.modify(fd, _IN)
        self._run(c, c.x.backend_sent())

    def _dial(self, c: _Client) -> int:
        """Connect to the chosen backend without waiting (by IP; a name goes
        to a task, which resolves it)."""
        x = c.x
        backend = x.backend
        assert backend is not None
        try:
            family = stdsocket.AF_INET6 if ipaddress.ip_address(backend.host).version == 6 else stdsocket.AF_INET
        except ValueError:
            self._hand_over(c, _DIAL)
            return _NOTHING
        self.dials += 1
        sock = stdsocket.socket(family, stdsocket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((backend.host, backend.port))
        if code == 0:
            return x.connected(self.upstream.adopt(FastStream(sock), backend))
        if code != errno.EINPROGRESS:
            sock.close()
            return x.connect_failed(_connect_failed(backend, code))
        assert self._ep is not None
        fd = sock.fileno()
        self._ep.register(fd, _OUT)
        c.dialing = sock
        self._owner[fd] = c
        return _NOTHING

    def _dialed(self, c: _Client) -> None:
        sock = c.dialing
        assert sock is not None and self._ep is not None
        c.dialing = None
        x = c.x
        backend = x.backend
        assert backend is not None
        fd = sock.fileno()
        code = sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_ERROR)
        if code:
            self._owner.pop(fd, None)
            sock.close()
            self._run(c, x.connect_failed(_connect_failed(backend, code)))
            return
        self._ep.modify(fd, _IN)
        conn = self.upstream.adopt(FastStream(sock), backend)
        self._backends[fd] = conn
        self._run(c, x.connected(conn))

    def _drop_dial(self, c: _Client) -> None:
        sock = c.dialing
        if sock is not None:
            c.dialing = None
            self._owner.pop(sock.fileno(), None)
            sock.close()  # and it leaves the epoll set

    def _register_backend(self, fd: int, conn: UpstreamConn) -> None:
        assert self._ep is not None
        try:
            self._ep.register(fd, _IN)
        except FileExistsError:
            self._ep.modify(fd, _IN)
        self._backends[fd] = conn

    def _forget_backend(self, conn: UpstreamConn) -> None:
        """Stop watching ``conn`` (a task is going to use it)."""
        sock = getattr(conn.stream, "sock", None)
        if sock is None or sock.fileno() == -1:
            return
        fd = sock.fileno()
        self._owner.pop(fd, None)
        if self._backends.pop(fd, None) is not None and self._ep is not None:
            with contextlib.suppress(OSError):
                self._ep.unregister(fd)

    def _stray(self, fd: int, conn: UpstreamConn) -> None:
        """An event on a backend connection no exchange of this loop owns:
        closed (or written to) while idle, or in use by a task."""
        self._backends.pop(fd, None)
        if closed_by_peer(conn.stream) and self.upstream.discard_idle(conn):
            return  # closing it also left the epoll set
        if self._ep is not None:
            with contextlib.suppress(OSError):
                self._ep.unregister(fd)

    # ---- leaving the loop -------------------------------------------------------------------

    def _hand_over(self, c: _Client, action: int) -> None:
        """Give the connection, with its machine as it is, to a task."""
        assert self._nursery is not None and not c.cout and not c.bout
        self.handoffs += 1
        x = c.x
        if isinstance(x.conn, UpstreamConn):
            self._forget_backend(x.conn)
        self._detach(c)
        transport = FastStream(c.sock, nodelay=False)
        stream: trio.abc.Stream = transport if c.tls is None else TlsStream(transport, c.tls)
        task = ClientConnection(stream, x, self.upstream, self.watchdog, lane=self, fresh=False)
        self._nursery.start_soon(self._task, task, action)

    async def _task(self, task: ClientConnection, action: int) -> None:
        try:
            await task.run(action)
        except Exception:
            log.exception("internal error on a connection from %s; connection closed", task.x.client_ip.decode())
        finally:
            if not task.handed_back:
                self._closed()

    def _detach(self, c: _Client) -> None:
        """Take ``c`` out of the loop (its socket stays open)."""
        c.gone = True
        self._clients.pop(c.fd, None)
        self.watchdog.unwatch(c)
        if self._ep is not None:
            with contextlib.suppress(OSError):
                self._ep.unregister(c.fd)

    def _close(self, c: _Client, reset: bool = False) -> None:
        if c.gone:
            return
        c.gone = True
        self._drop_dial(c)
        self._clients.pop(c.fd, None)
        self.watchdog.unwatch(c)
        sock = c.sock
        if reset:
            with contextlib.suppress(OSError):
                sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, _LINGER_RESET)
        elif c.tls is not None and c.tls.handshaken:
            with contextlib.suppress(OSError):
                sock.send(c.cout + c.tls.close_notify())
        notify_closing(sock)  # trio may know this socket from a task it was handed to
        sock.close()  # and it leaves the epoll set
        self._closed()

    def _lost(self, c: _Client) -> None:
        """End ``c`` without an answer (an internal error, the loop stopping)."""
        if c.gone:
            return
        self._drop_dial(c)
        c.x.client_lost()
        self._close(c)

    def expire(self, c: _Client) -> None:
        """The watchdog's verdict: ``c``'s deadline passed; the machine says
        what follows."""
        if c.gone:
            return
        self._drop_dial(c)
        try:
            self._run(c, c.x.expired())
        except Exception:
            log.exception("internal error in the fast lane; connection closed")
            self._lost(c)


# How a read ended (``_read_all``): drained (EAGAIN or a short read), the peer's EOF, its reset,
# or the limit reached with more perhaps waiting (edge-triggered: no new event will say so).
_DRAINED, _EOF, _RESET, _MORE = 0, 1, 2, 3


def _read_all(fd: int, data: bytes, hangup: bool, limit: int) -> tuple[bytes, int]:
    """Read ``fd`` after ``data`` until EAGAIN, a short read (unless the peer
    hung up: then until its EOF, which came with the last data), an EOF, a
    reset or ``limit`` bytes; what was read, and how it ended."""
    while True:
        try:
            chunk = os.read(fd, RECEIVE_SIZE)
        except BlockingIOError:
            return data, _DRAINED
        except OSError:
            return data, _RESET
        if not chunk:
            return data, _EOF
        data = data + chunk if data else chunk
        if len(chunk) < RECEIVE_SIZE and not hangup:
            return data, _DRAINED
        if len(data) >= limit:
            return data, _MORE


def _connect_failed(backend: object, code: int) -> ConnectFailed:
    return ConnectFailed(f"cannot connect to {backend}: {errno.errorcode.get(code, str(code))}")
