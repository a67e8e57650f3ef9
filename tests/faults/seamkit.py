"""Kit for the seam tests (issue 14): raw-socket backends that die in a chosen
way at a chosen moment, pylb on either driver (the fast lane on or off) with
plain HTTP and HTTPS listeners, clients over TCP or TLS, and a bounded
keep-alive load that counts failures.

Owns: ``Scripted`` (a backend whose every request and every way of ending a
connection is logged), ``open_lb`` (a ``pylb.Balancer`` built from the same
``Config`` the CLI builds: ``lanes`` is ``--lanes``, ``retries`` is
``--retries``), ``connect`` and ``Load``. Must not know: pylb's internals; it
reads only what pylb shows (answers on the wire, ``lb.statistics()``).

Everything talks to 127.0.0.1 only; every wait is bounded by the test's guard.
"""

from __future__ import annotations

import socket as stdsocket
import ssl
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trustme

import pylb
from pylb.tls import parse_pem_bundle
from tests.e2e.e2e_kit import HOST, Message, Peer, Truncated, port_of, request_bytes

NO_CHECKS = pylb.HealthCheck(enabled=False)
# Shorter than the defaults (50 s), so that a request pylb lost shows up as a failure within the
# test's guard; the tests never leave a connection idle this long.
TIMEOUTS = pylb.Timeouts(client=5.0, server=10.0)
DRIVERS = {"lanes": True, "tasks": False}  # --lanes true: the readiness loop first; false: a task per connection
SCHEMES = ("http", "https")
LINGER_RESET = struct.pack("ii", 1, 0)

# (method, body): requests that may be replayed (idempotent, body small enough to be held whole)
REPLAYABLE: tuple[tuple[str, bytes], ...] = (
    ("GET", b""),
    ("HEAD", b""),
    ("DELETE", b""),
    ("PUT", b""),
    ("PUT", b"k=v&" * 75),  # 300 bytes, sent with its head in one write: held whole by pylb
)
NOT_REPLAYABLE: tuple[tuple[str, bytes], ...] = (("POST", b"amount=1"),)
ALL_METHODS = REPLAYABLE + NOT_REPLAYABLE


def label(method: str, body: bytes) -> str:
    return f"{method}+body" if body else method


# --------------------------------------------------------------------------- backends


@dataclass
class Seen:
    """One request as a backend read it."""

    conn: int  # which accepted connection (1, 2, ...)
    method: str
    target: str
    body: bytes
    complete: bool  # head and whole body arrived (or the body was not read on purpose)
    answered: bool = False


class Conn:
    """One accepted connection of a ``Scripted`` backend."""

    def __init__(self, backend: Scripted, sock: trio.socket.SocketType, number: int) -> None:
        self.backend = backend
        self.sock = sock
        self.number = number
        self.buf = b""
        self.idle = True
        self.closed = False
        self.ending: str | None = None  # how the next request on it ends (``Scripted.die``)

    async def more(self, size: int = 65536) -> bool:
        try:
            data = await self.sock.recv(size)
        except (OSError, trio.ClosedResourceError):
            return False
        self.buf += data
        return bool(data)

    async def read_bytes(self, count: int) -> None:
        """Read until ``buf`` holds ``count`` bytes (or the peer stops)."""
        while len(self.buf) < count and await self.more(count - len(self.buf)):
            pass

    async def read_request(self, body: bool = True) -> Seen | None:
        """Read (and log) the next request; its body too unless ``body`` is
        False. None when the connection ended before a whole head."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if not await self.more():
                if self.buf:
                    self.backend.partial.append(self.buf)
                return None
        head, self.buf = self.buf[: end + 4], self.buf[end + 4 :]
        line, _, rest = head.partition(b"\r\n")
        method, target, _ = line.decode("latin-1").split(" ", 2)
        length = 0
        for header in rest.split(b"\r\n"):
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        complete = True
        data = b""
        if body:
            await self.read_bytes(length)
            complete = len(self.buf) >= length
            data, self.buf = self.buf[:length], self.buf[length:]
        seen = Seen(self.number, method, target, data, complete)
        self.backend.seen.append(seen)
        return seen

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[await self.sock.send(view) :]

    def fin(self) -> None:
        """close(): a FIN (a reset if bytes were left unread, as the kernel does)."""
        if not self.closed:
            self.closed = True
            self.sock.close()

    def rst(self) -> None:
        """Close with a reset (SO_LINGER 0), like a process that crashed."""
        if not self.closed:
            self.closed = True
            self.sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, LINGER_RESET)
            self.sock.close()

    def shut_wr(self) -> None:
        """Half-close: a FIN goes out, the connection still reads."""
        if not self.closed:
            self.sock.shutdown(stdsocket.SHUT_WR)


# How a dying backend ends the keep-alive connections it holds idle (``Scripted.die``):
#   fin, rst      close (FIN) or reset each one now
#   linger        half-close each one now (FIN) and keep reading, as servers doing a lingering
#                 close: a request that still comes is read (logged), never answered
#   read-fin, read-rst        keep them open; the next request on one is read (logged), then the
#                 connection is closed or reset, unanswered
#   partial-rst, partial-fin  keep them open; of the next request only the first ``partial_size``
#                 bytes are read, then a reset, or a half-close leaving the rest unread
IDLE_ENDINGS = ("fin", "rst", "linger", "read-fin", "read-rst", "partial-rst", "partial-fin")
PARTIAL_ENDINGS = ("partial-rst", "partial-fin")

# What a backend does on each new connection (``Scripted(on_accept=...)``):
#   serve            answer every request (keep-alive)
#   accept-fin, accept-rst    close or reset at once, reading nothing
#   read-fin, read-rst        read the request (logged), then close or reset, unanswered
#   partial-rst, partial-fin  as for ``die``, on the connection's first request
#   answer-fin       answer (keep-alive framing), then close at once
#   answer-shut-wr   answer, then half-close (FIN) and keep reading: later requests are logged, never answered
#   shut-rd-answer   read the request, shut the read side (SHUT_RD), answer, close
#   early-answer     read only the head, answer with Connection: close before reading the
#                    body, then reset right behind the answer
ON_ACCEPT = (
    "serve",
    "accept-fin",
    "accept-rst",
    "read-fin",
    "read-rst",
    "partial-rst",
    "partial-fin",
    "answer-fin",
    "answer-shut-wr",
    "shut-rd-answer",
    "early-answer",
)


class Scripted:
    """A backend on 127.0.0.1 (port 0) that logs every request it reads
    (``seen``), every connection it accepts (``accepted``), and ends
    connections as told. ``accepting=False``: it never accepts (see
    ``reset_queued``). Run it with ``async with scripted(...)``."""

    def __init__(
        self,
        name: str,
        on_accept: str = "serve",
        *,
        rcvbuf: int | None = None,
        accepting: bool = True,
        partial_size: int = 1024,
    ) -> None:
        assert on_accept in ON_ACCEPT, on_accept
        self.name = name
        self.on_accept = on_accept
        self.rcvbuf = rcvbuf
        self.accepting = accepting
        self.partial_size = partial_size
        self.seen: list[Seen] = []
        self.partial: list[bytes] = []  # what it read of requests it ended before reading them whole
        self.accepted = 0
        self.queued = 0  # connections reset in the accept queue (``reset_queued``)
        self.dying: str | None = None
        self.port = 0
        self.conns: list[Conn] = []
        self.listener = trio.socket.socket()

    @property
    def backend(self) -> pylb.Backend:
        return pylb.Backend(HOST, self.port)

    def answer(self, req: Seen, close: bool = False) -> bytes:
        body = f"{self.name} {req.method} {req.target} {len(req.body)}\n".encode()
        lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", f"X-Served-By: {self.name}"]
        lines += ["Connection: close"] if close else []
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return head if req.method == "HEAD" else head + body

    def copies(self, target: str) -> list[Seen]:
        """The copies of the request for ``target`` this backend read."""
        return [s for s in self.seen if s.target == target]

    def partial_copies(self, target: str) -> int:
        """Requests for ``target`` it read only the beginning of."""
        return sum(1 for p in self.partial if p.split(b" ", 2)[1:2] == [target.encode()])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = self.listener
        listener.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        if self.rcvbuf is not None:  # accepted connections inherit it (a small receive window)
            listener.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, self.rcvbuf)
        if not self.accepting:  # a connection enters the accept queue once its first bytes came
            listener.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_DEFER_ACCEPT, 10)
        await listener.bind((HOST, 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            if not self.accepting:
                return
            while True:
                try:
                    sock, _ = await listener.accept()
                except (OSError, trio.ClosedResourceError):
                    return  # the listener was closed: connects are refused from now on
                self.accepted += 1
                conn = Conn(self, sock, self.accepted)
                self.conns.append(conn)
                nursery.start_soon(self._serve, conn)

    async def reset_queued(self) -> None:
        """(``accepting=False``) Wait until a connection sits in the accept
        queue with the request in it (TCP_DEFER_ACCEPT queues it once bytes
        came), then close the listener: the kernel resets what was queued
        (the listener of a stopping container closing under its clients)."""
        await trio.lowlevel.wait_readable(self.listener)
        self.queued += 1
        self.close_listener()

    def close_listener(self) -> None:
        if self.listener.fileno() != -1:
            self.listener.close()

    def die(self, how: str) -> None:
        """Stop like a backend going away: connects are refused from now on,
        and the idle keep-alive connections end as ``how`` says (IDLE_ENDINGS)."""
        assert how in IDLE_ENDINGS, how
        self.dying = how
        self.close_listener()
        for conn in self.conns:
            if not conn.idle or conn.closed:
                continue
            if how == "fin":
                conn.fin()
            elif how == "rst":
                conn.rst()
            elif how == "linger":
                conn.shut_wr()
                conn.ending = "linger"
            else:
                conn.ending = how

    async def _serve(self, conn: Conn) -> None:
        try:
            await self._script(conn)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            conn.idle = False
            if conn.ending != "partial-fin":  # that one stays half-open, its rest unread, until the end
                conn.fin()

    async def _script(self, conn: Conn) -> None:
        how = self.on_accept
        if how in ("accept-fin", "accept-rst"):
            conn.fin() if how == "accept-fin" else conn.rst()
            return
        if how in PARTIAL_ENDINGS:
            conn.ending = how
        while True:
            conn.idle = True
            if not conn.buf and not await conn.more():
                return
            conn.idle = False
            ending = conn.ending or (how if how in ("read-fin", "read-rst") else None)
            if ending in PARTIAL_ENDINGS:
                await conn.read_bytes(self.partial_size)
                self.partial.append(conn.buf)
                if ending == "partial-rst":
                    conn.rst()
                else:
                    conn.shut_wr()
                return
            early = how == "early-answer"
            req = await conn.read_request(body=not early)
            if req is None:
                return
            if ending in ("linger", "read-fin"):
                conn.fin()
                return
            if ending == "read-rst":
                conn.rst()
                return
            if how == "shut-rd-answer":
                conn.sock.shutdown(stdsocket.SHUT_RD)
            await conn.send(self.answer(req, close=early))
            req.answered = True
            if how == "early-answer":
                conn.rst()  # right behind the answer: the body is not read
                return
            if how in ("answer-fin", "shut-rd-answer"):
                conn.fin()
                return
            if how == "answer-shut-wr":
                conn.shut_wr()
                conn.ending = "linger"

    async def aclose(self) -> None:
        self.close_listener()
        for conn in self.conns:
            conn.fin()


@asynccontextmanager
async def scripted(*backends: Scripted) -> AsyncIterator[None]:
    """Run ``backends`` for the block."""
    async with trio.open_nursery() as nursery:
        for backend in backends:
            await nursery.start(backend.run)
        try:
            yield
        finally:
            for backend in backends:
                await backend.aclose()
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- pylb


class Tls:
    """A test CA, a certificate for localhost and 127.0.0.1, and a client
    context that trusts only that CA."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        leaf = self.ca.issue_cert("localhost", "127.0.0.1")
        self.pem = leaf.private_key_and_cert_chain_pem.bytes().decode()
        self.client = ssl.create_default_context()
        self.ca.configure_trust(self.client)


_TLS: Tls | None = None


def tls() -> Tls:
    """One CA for the whole session (making keys costs CPU)."""
    global _TLS
    if _TLS is None:
        _TLS = Tls()
    return _TLS


@asynccontextmanager
async def open_lb(
    backends: Sequence[pylb.Backend],
    *,
    driver: str,
    retries: int = 3,
    timeouts: pylb.Timeouts | None = None,
) -> AsyncIterator[pylb.Balancer]:
    """pylb with an http and an https listener on 127.0.0.1, on the driver
    named (``DRIVERS``), active health checks off (the tests count
    connections); ``backends`` form the default service."""
    config = pylb.Config(
        binds=(pylb.Bind.parse("127.0.0.1:0"), pylb.Bind.parse("https://127.0.0.1:0")),
        backends=tuple(backends),
        ssl_cert=parse_pem_bundle(tls().pem, "test certificate"),
        timeouts=timeouts or TIMEOUTS,
        retries=retries,
        lanes=DRIVERS[driver],
        health_check=NO_CHECKS,
    )
    lb = pylb.Balancer(config, health=NO_CHECKS)
    async with trio.open_nursery() as nursery:
        await nursery.start(lb.run)
        try:
            yield lb
        finally:
            nursery.cancel_scope.cancel()


def url_of(lb: pylb.Balancer, scheme: str) -> str:
    return lb.https_url if scheme == "https" else lb.url


async def connect(lb: pylb.Balancer, scheme: str) -> Peer:
    """A client connection to pylb's ``scheme`` listener (TLS handshake done)."""
    return await connect_port(port_of(url_of(lb, scheme)), scheme)


async def connect_port(port: int, scheme: str, context: ssl.SSLContext | None = None) -> Peer:
    """A client connection to 127.0.0.1:``port``; over TLS (SNI localhost,
    trusting only ``context``'s CAs, default the test CA) when ``scheme`` is https."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(HOST, port)
    if scheme == "https":
        tls_stream = trio.SSLStream(stream, context or tls().client, server_hostname="localhost")
        try:
            await tls_stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        stream = tls_stream
    return Peer(stream)


def backend_stats(lb: pylb.Balancer, backend: pylb.Backend) -> dict[str, object]:
    """pylb's counters for ``backend`` (live or draining); zeros once forgotten."""
    pool = lb.statistics()["pool"]
    assert isinstance(pool, dict)
    for state in (*pool["backends"], *pool["draining"]):
        if state["backend"] == str(backend):
            return dict(state)
    return {"requests": 0, "in_flight": 0, "failures": 0}


def picks(lb: pylb.Balancer, backend: pylb.Backend) -> int:
    """How many times pylb chose ``backend`` for a request (it was tried)."""
    value = backend_stats(lb, backend)["requests"]
    assert isinstance(value, int)
    return value


def in_flight(lb: pylb.Balancer, backend: pylb.Backend) -> int:
    """Requests pylb has chosen ``backend`` for and not finished."""
    value = backend_stats(lb, backend)["in_flight"]
    assert isinstance(value, int)
    return value


async def ask(peer: Peer, method: str, target: str, body: bytes = b"") -> Message:
    """One request; a connection that ends without an answer gives a
    Message with status 0 (so a test reports it with the rest)."""
    try:
        return await peer.request(method, target, body=body)
    except (Truncated, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        return Message(b"HTTP/1.1 000 " + repr(exc).encode(), [], b"")


def shown(resp: Message) -> str:
    """Status and body, for failure messages."""
    if resp.status == 0:
        return resp.start_line[13:].decode("latin-1")  # the exception: no answer at all
    return f"{resp.status} {resp.body[:160]!r}"


def request(method: str, target: str, body: bytes = b"") -> bytes:
    return request_bytes(method, target, body=body)


# --------------------------------------------------------------------------- keep-alive load

REQUEST_GUARD = 15.0  # seconds: a request that takes longer counts as failed (pylb's connect timeout is 5 s)


@dataclass
class Load:
    """Keep-alive clients sending GETs back to back through pylb, bounded in
    count (``limit``) and time (the caller's guard). Every answer that is
    not a 200 with a hello's body is a failure, kept with its status and
    body (or the exception)."""

    limit: int = 20_000
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)
    ok_by: Counter[str] = field(default_factory=Counter)  # answered per kind of client (``http-0`` is ``http``)
    stop: trio.Event = field(default_factory=trio.Event)
    _marks: list[tuple[int, trio.Event]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    async def reached(self, count: int) -> None:
        """Wait until ``count`` requests have been answered (or failed)."""
        if self.total >= count:
            return
        event = trio.Event()
        self._marks.append((count, event))
        await event.wait()

    def _count(self) -> None:
        total = self.total
        for mark in [m for m in self._marks if m[0] <= total]:
            self._marks.remove(mark)
            mark[1].set()
        if total >= self.limit:
            self.stop.set()

    async def client(self, dial: Callable[[], Awaitable[Peer]], name: str, host: str = "localhost") -> None:
        """One keep-alive client: GETs back to back on a connection from
        ``dial`` (a new one after a failure or a Connection: close) until
        ``stop``; each request bounded by ``REQUEST_GUARD`` seconds."""
        peer: Peer | None = None
        while not self.stop.is_set():
            try:
                with trio.fail_after(REQUEST_GUARD):
                    if peer is None:
                        peer = await dial()
                    resp = await peer.request("GET", f"/load/{name}", host=host)
            except (Truncated, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError) as exc:
                self.failures.append(f"{name}: {exc!r}")
                if peer is not None:
                    await trio.aclose_forcefully(peer.stream)
                peer = None
                self._count()
                continue
            served = resp.header("x-served-by")
            if resp.status == 200 and served is not None and resp.body.startswith(b"Hello from "):
                self.ok += 1
                self.served_by[served] += 1
                self.ok_by[name.split("-", 1)[0]] += 1
            else:
                self.failures.append(f"{name}: {shown(resp)}")
            if resp.header("connection") == "close" or resp.status != 200:
                await peer.aclose()
                peer = None
            self._count()
        if peer is not None:
            await trio.aclose_forcefully(peer.stream)

    def report(self) -> str:
        kinds = Counter(f.split(": ", 1)[1][:160] for f in self.failures)
        return (
            f"{self.total} requests ({', '.join(f'{n} {kind} ok' for kind, n in sorted(self.ok_by.items()))}), "
            f"{len(self.failures)} failed {dict(kinds)}; served by {dict(self.served_by)}"
        )
