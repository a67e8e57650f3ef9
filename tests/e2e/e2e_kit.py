"""Test kit for the end-to-end suite: a raw HTTP/1.1 client and scriptable
backends, both over real trio sockets on 127.0.0.1.

Independent of pylb's own parser on purpose: the client reads responses with
its own small reader (status line, headers, Content-Length / chunked /
until-close framing, 1xx interim responses), so a bug in pylb's framing is
not hidden by sharing code with it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import socket as stdsocket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

import pylb

HOST = "127.0.0.1"
READ_SIZE = 65536


class Truncated(Exception):
    """The peer closed (or reset) before a complete message arrived."""


@dataclass
class Message:
    """A response (client side) or a request (backend side)."""

    start_line: bytes
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes = b""
    raw_body: bytes = b""
    interim: list[Message] = field(default_factory=list)

    # response fields
    @property
    def status(self) -> int:
        return int(self.start_line.split(b" ", 2)[1])

    @property
    def version(self) -> str:
        return self.start_line.split(b" ", 1)[0].decode()

    # request fields
    @property
    def method(self) -> str:
        return self.start_line.split(b" ", 1)[0].decode()

    @property
    def target(self) -> str:
        return self.start_line.split(b" ")[1].decode()

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"{name} appears {len(values)} times: {values}"
        return values[0] if values else None

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}

    def json(self) -> dict:
        return json.loads(self.body)


def parse_head(raw: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    lines = raw[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return lines[0], headers


class Peer:
    """Buffered reading of HTTP/1.1 messages over a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = b""

    @classmethod
    async def connect(cls, port: int) -> Peer:
        return cls(await trio.open_tcp_stream(HOST, port))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> Peer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _more(self) -> bool:
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except trio.BrokenResourceError:
            return False
        self.buf += data
        return bool(data)

    async def read_head(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head, self.buf = self.buf[: end + 4], self.buf[end + 4 :]
                return head
            if not await self._more():
                raise Truncated(f"EOF inside a head: {self.buf[:200]!r}")

    async def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._more():
                raise Truncated(f"EOF after {len(self.buf)} of {n} body bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    async def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not await self._more():
                raise Truncated("EOF inside a chunked body")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    async def read_to_eof(self) -> bytes:
        """Everything until the peer closes; Truncated if it resets."""
        while True:
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except trio.BrokenResourceError as exc:
                raise Truncated(f"connection reset after {len(self.buf)} bytes") from exc
            if not data:
                data, self.buf = self.buf, b""
                return data
            self.buf += data

    async def read_chunked(self) -> tuple[bytes, bytes]:
        """(decoded body, raw bytes as received, trailers included)."""
        decoded, raw = [], []
        while True:
            line = await self.read_line()
            raw.append(line)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = await self.read_line()
                    raw.append(trailer)
                    if trailer == b"\r\n":
                        return b"".join(decoded), b"".join(raw)
            data = await self.read_exact(size + 2)
            assert data.endswith(b"\r\n"), data[-10:]
            decoded.append(data[:-2])
            raw.append(data)

    async def _read_body(self, msg: Message, until_close: bool) -> None:
        te = ",".join(msg.all("transfer-encoding")).lower()
        cl = msg.all("content-length")
        if "chunked" in te:
            msg.body, msg.raw_body = await self.read_chunked()
        elif cl:
            msg.body = msg.raw_body = await self.read_exact(int(cl[0]))
        elif until_close:
            msg.body = msg.raw_body = await self.read_to_eof()

    async def read_response(self, method: str = "GET") -> Message:
        """The next final response, with any 1xx before it in ``interim``."""
        interim = []
        while True:
            raw = await self.read_head()
            line, headers = parse_head(raw)
            msg = Message(line, headers, raw)
            if 100 <= msg.status < 200:
                interim.append(msg)
                continue
            break
        msg.interim = interim
        if method != "HEAD" and msg.status not in (204, 304):
            await self._read_body(msg, until_close=True)
        return msg

    async def read_request(self, on_continue: Callable[[Message], Awaitable[None]] | None = None) -> Message | None:
        """The next request, or None at a clean EOF between requests."""
        if not self.buf and not await self._more():
            return None
        raw = await self.read_head()
        line, headers = parse_head(raw)
        msg = Message(line, headers, raw)
        if on_continue is not None and "100-continue" in ",".join(msg.all("expect")).lower():
            await on_continue(msg)
        await self._read_body(msg, until_close=False)
        return msg

    async def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        host: str | None = "e2e.test",
    ) -> Message:
        await self.send(request_bytes(method, target, headers, body, host))
        return await self.read_response(method)

    async def at_eof(self) -> bool:
        """Whether the peer has closed (clean EOF or reset) with nothing more to say."""
        if self.buf:
            return False
        try:
            return not await self.stream.receive_some(READ_SIZE)
        except trio.BrokenResourceError:
            return True


def request_bytes(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    host: str | None = "e2e.test",
    version: str = "HTTP/1.1",
) -> bytes:
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    headers = list(headers or [])
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        headers.append(("Content-Length", str(len(body))))
    lines += [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes, trailers: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + b"0\r\n" + trailers + b"\r\n"


def response_bytes(
    status: int = 200,
    reason: str = "OK",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    length: bool = True,
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{n}: {v}" for n, v in headers or []]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def free_port() -> int:
    """A port with nothing listening on it (bound to port 0, then closed)."""
    with stdsocket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def reset(stream: trio.SocketStream) -> None:
    """Close with RST (SO_LINGER 0), like a crashed process."""
    stream.socket.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


# --------------------------------------------------------------------------- backends

Handler = Callable[["Backend", Peer], Awaitable[None]]


class Backend:
    """A scripted backend on 127.0.0.1, port 0. ``handler(server, peer)`` runs
    once per connection; ``requests`` counts requests read with ``next_request``."""

    def __init__(self, handler: Handler, name: str = "custom") -> None:
        self.handler = handler
        self.name = name
        self.port = 0
        self.requests = 0
        self.connections = 0
        self.seen: list[Message] = []

    @property
    def backend(self) -> pylb.Backend:
        return pylb.Backend(HOST, self.port)

    async def next_request(
        self, peer: Peer, on_continue: Callable[[Message], Awaitable[None]] | None = None
    ) -> Message | None:
        try:
            msg = await peer.read_request(on_continue)
        except Truncated:
            return None
        if msg is not None:
            self.requests += 1
            self.seen.append(msg)
        return msg

    async def _serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        peer = Peer(stream)
        try:
            await self.handler(self, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if stream.socket.fileno() != -1:
                await trio.aclose_forcefully(stream)


@asynccontextmanager
async def open_backend(handler: Handler, name: str = "custom") -> AsyncIterator[Backend]:
    server = Backend(handler, name)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, server._serve, 0, host=HOST))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def keep_alive(req: Message) -> bool:
    tokens = {t.strip().lower() for v in req.all("connection") for t in v.split(",")}
    if req.start_line.endswith(b"HTTP/1.0"):
        return "keep-alive" in tokens
    return "close" not in tokens


def answering(respond: Callable[[Message], bytes]) -> Handler:
    """A keep-alive handler that answers each request with ``respond(req)``."""

    async def handler(server: Backend, peer: Peer) -> None:
        while (req := await server.next_request(peer)) is not None:
            await peer.send(respond(req))
            if not keep_alive(req):
                return

    return handler


def echo_response(name: str) -> Callable[[Message], bytes]:
    def respond(req: Message) -> bytes:
        info = {
            "name": name,
            "method": req.method,
            "target": req.target,
            "head": req.raw_head.decode("latin-1"),
            "headers": req.headers,
            "body_length": len(req.body),
            "sha256": hashlib.sha256(req.body).hexdigest(),
        }
        body = json.dumps(info).encode()
        return response_bytes(200, "OK", [("Content-Type", "application/json"), ("X-Served-By", name)], body)

    return respond


def echo_handler(name: str, send_continue: bool = True) -> Handler:
    """Answers each request with JSON describing the head and body it
    received; sends ``100 Continue`` when the request expects it."""
    respond = echo_response(name)

    async def handler(server: Backend, peer: Peer) -> None:
        async def on_continue(_: Message) -> None:
            await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")

        while (req := await server.next_request(peer, on_continue if send_continue else None)) is not None:
            await peer.send(respond(req))
            if not keep_alive(req):
                return

    return handler


@asynccontextmanager
async def open_echo(name: str = "echo", send_continue: bool = True) -> AsyncIterator[Backend]:
    async with open_backend(echo_handler(name, send_continue), name) as server:
        yield server


def served_by(resp: Message) -> str:
    value = resp.header("x-served-by")
    assert value is not None, resp
    return value


def lb_backend_requests(lb: pylb.Balancer) -> int:
    stats = lb.statistics()["pool"]
    return sum(b["requests"] for b in stats["backends"] + stats["draining"])  # type: ignore[index,operator]


@asynccontextmanager
async def proxied(
    backends: list[pylb.Backend | str] | tuple[pylb.Backend | str, ...], **kwargs: object
) -> AsyncIterator[tuple[pylb.Balancer, Peer]]:
    """A balancer in front of ``backends`` and one client connection to it.
    Active health checks are off unless asked for: these tests count the
    connections backends see."""
    kwargs.setdefault("health", pylb.HealthCheck(enabled=False))
    async with pylb.open_balancer(backends, **kwargs) as lb, await Peer.connect(port_of(lb.url)) as peer:  # type: ignore[arg-type]
        yield lb, peer
