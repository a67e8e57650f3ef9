"""``pylb hello``: a small, fast HTTP backend that says who it is.

Owns: answering every request with its name in the body and in an
``X-Served-By`` header (the tutum/hello-world stand-in used by the demo,
tests, benchmarks and the image). Must not know: the balancer.

It reads request bodies (Content-Length or chunked) before answering and
says how many bytes it read (``X-Request-Bytes``), keeps connections alive,
and answers HEAD without a body. ``GET /bytes/N`` answers N bytes (for
streaming tests and benchmarks); ``/headers`` answers with the request head
it received (to see what a proxy in front of it added or removed). ``delay`` makes it slow on purpose (for
leastconn demonstrations and tests).
"""

from __future__ import annotations

import socket as stdsocket

import trio

from pylb.core.errors import ProxyError
from pylb.core.framing import ChunkedScanner
from pylb.core.http1 import CHUNKED, LENGTH, Head, find_head_end, parse_request
from pylb.core.policy import error_response
from pylb.net.stream import RECEIVE_SIZE, FastStream, accept, listen_socket


def default_name(port: int) -> str:
    return f"{stdsocket.gethostname()}:{port}"


class HelloServer:
    """Answers ``Hello from NAME``. ``requests`` counts what it served."""

    def __init__(self, name: str | None = None, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.requests = 0
        self.port = 0
        self.host = ""
        self.connections = 0
        self._sock: stdsocket.socket | None = None
        self._closing = False
        self._idle: dict[FastStream, trio.CancelScope] = {}  # connections waiting for a request
        self._all_closed: trio.Event | None = None

    def __repr__(self) -> str:
        return f"<HelloServer {self.name} {self.host}:{self.port} requests={self.requests}>"

    def bind(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind now (``run`` does it when it was not done); OSError as the kernel says."""
        self._sock = listen_socket(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        if self.name is None:
            self.name = default_name(self.port)

    async def run(
        self, host: str = "127.0.0.1", port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self._sock is None:
            self.bind(host, port)
        sock = self._sock
        assert sock is not None
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.port)
                while True:
                    try:
                        conn, _ = await accept(sock)
                    except trio.ClosedResourceError:
                        return  # stop_accepting()
                    nursery.start_soon(self._serve, FastStream(conn))
        finally:
            self.stop_accepting()

    def stop_accepting(self) -> None:
        """Close the listener: new connections are refused."""
        sock = self._sock
        if sock is not None and sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def drain(self, grace: float) -> bool:
        """Stop like a well-behaved backend (``docker stop``): refuse new
        connections, answer requests in progress (with ``Connection: close``),
        close idle connections; True when all ended within ``grace``."""
        self._closing = True
        self.stop_accepting()
        for scope in list(self._idle.values()):
            scope.cancel()
        self._all_closed = trio.Event()
        if not self.connections:
            self._all_closed.set()
        with trio.move_on_after(grace):
            await self._all_closed.wait()
        return self._all_closed.is_set()

    def _head(self, length: int, received: int, keep_alive: bool) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "
            + str(length).encode()
            + b"\r\nX-Served-By: "
            + str(self.name).encode()
            + (b"\r\nX-Request-Bytes: %d" % received if received else b"")
            + (b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n")
        )

    async def _answer(self, stream: FastStream, head: Head, received: int) -> None:
        size = _bytes_asked(head.target)
        if size is None:
            body = head.raw if head.target.startswith(b"/headers") else f"Hello from {self.name}\n".encode()
            out = self._head(len(body), received, head.keep_alive)
            await stream.send_all(out if head.method == b"HEAD" else out + body)
            return
        await stream.send_all(self._head(size, received, head.keep_alive))
        if head.method != b"HEAD":
            block = b"x" * RECEIVE_SIZE
            while size > 0:
                await stream.send_all(block if size >= len(block) else block[:size])
                size -= len(block)

    async def _serve(self, stream: FastStream) -> None:
        buf = b""
        self.connections += 1
        try:
            while True:
                end = find_head_end(buf)
                if end < 0:
                    buf, end = await self._next_head(stream, buf)
                    if end < 0:
                        return
                head = parse_request(buf[:end])
                buf, received = await _skip_body(stream, buf[end:], head.framing, head.length)
                self.requests += 1
                if self.delay:
                    await trio.sleep(self.delay)
                if self._closing:  # stopping: this answer is the connection's last
                    head.keep_alive = False
                await self._answer(stream, head, received)
                if not head.keep_alive:
                    return
        except ProxyError as exc:
            await stream.send_all(error_response(exc.status, exc.reason))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            stream.close()
            self.connections -= 1
            if self._all_closed is not None and not self.connections:
                self._all_closed.set()

    async def _next_head(self, stream: FastStream, buf: bytes) -> tuple[bytes, int]:
        """Wait for a whole request head (-1: the connection ended, or pylb
        hello is stopping and no request had begun)."""
        if self._closing and not buf:
            return buf, -1
        with trio.CancelScope() as scope:
            if not buf:
                self._idle[stream] = scope
            try:
                while True:
                    data = await stream.receive_some(RECEIVE_SIZE)
                    self._idle.pop(stream, None)
                    if not data:
                        return buf, -1
                    buf += data
                    end = find_head_end(buf)
                    if end >= 0:
                        return buf, end
            finally:
                self._idle.pop(stream, None)
        return buf, -1


def _bytes_asked(target: bytes) -> int | None:
    if not target.startswith(b"/bytes/"):
        return None
    digits = target[7:].partition(b"?")[0]
    return int(digits) if digits.isdigit() and len(digits) < 13 else None


async def _skip_body(stream: FastStream, buf: bytes, framing: int, length: int) -> tuple[bytes, int]:
    """Read and drop a request body; return what follows it and the size of
    the body as it came on the wire."""
    if framing == LENGTH:
        if len(buf) >= length:
            return buf[length:], length
        left = length - len(buf)
        while left:
            data = await stream.receive_some(min(RECEIVE_SIZE, left))
            if not data:
                raise trio.BrokenResourceError("client closed mid-body")
            left -= len(data)
        return b"", length
    if framing == CHUNKED:
        scanner = ChunkedScanner(ProxyError)
        total = 0
        while True:
            used = scanner.feed(buf)
            total += used
            if scanner.done:
                return buf[used:], total
            buf = await stream.receive_some(RECEIVE_SIZE)
            if not buf:
                raise trio.BrokenResourceError("client closed mid-body")
    return buf, 0
