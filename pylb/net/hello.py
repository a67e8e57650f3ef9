"""``pylb hello``: a small, fast HTTP backend that says who it is.

Owns: answering every request with its name in the body and in an
``X-Served-By`` header (the tutum/hello-world stand-in used by the demo,
tests, benchmarks and the image). Must not know: the balancer.

It reads request bodies (Content-Length or chunked) before answering, keeps
connections alive, and answers HEAD without a body. ``delay`` makes it slow
on purpose (for leastconn demonstrations and tests).
"""

from __future__ import annotations

import socket as stdsocket

import trio

from pylb.core.errors import ProxyError
from pylb.core.framing import ChunkedScanner
from pylb.core.http1 import CHUNKED, LENGTH, find_head_end, parse_request
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

    def __repr__(self) -> str:
        return f"<HelloServer {self.name} {self.host}:{self.port} requests={self.requests}>"

    async def run(
        self, host: str = "127.0.0.1", port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        sock = listen_socket(host, port)
        self.host, self.port = host, sock.getsockname()[1]
        if self.name is None:
            self.name = default_name(self.port)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.port)
                while True:
                    conn, _ = await accept(sock)
                    nursery.start_soon(self._serve, FastStream(conn))
        finally:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    def _answer(self, method: bytes, keep_alive: bool) -> bytes:
        body = f"Hello from {self.name}\n".encode()
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nX-Served-By: "
            + str(self.name).encode()
            + (b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n")
        )
        return head if method == b"HEAD" else head + body

    async def _serve(self, stream: FastStream) -> None:
        buf = b""
        try:
            while True:
                end = find_head_end(buf)
                while end < 0:
                    data = await stream.receive_some(RECEIVE_SIZE)
                    if not data:
                        return
                    buf += data
                    end = find_head_end(buf)
                head = parse_request(buf[:end])
                buf = await _skip_body(stream, buf[end:], head.framing, head.length)
                self.requests += 1
                if self.delay:
                    await trio.sleep(self.delay)
                await stream.send_all(self._answer(head.method, head.keep_alive))
                if not head.keep_alive:
                    return
        except ProxyError as exc:
            await stream.send_all(error_response(exc.status, exc.reason, exc.detail))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            stream.close()


async def _skip_body(stream: FastStream, buf: bytes, framing: int, length: int) -> bytes:
    """Read and drop a request body; return what follows it."""
    if framing == LENGTH:
        if len(buf) >= length:
            return buf[length:]
        left = length - len(buf)
        while left:
            data = await stream.receive_some(min(RECEIVE_SIZE, left))
            if not data:
                raise trio.BrokenResourceError("client closed mid-body")
            left -= len(data)
        return b""
    if framing == CHUNKED:
        scanner = ChunkedScanner(ProxyError)
        while True:
            used = scanner.feed(buf)
            if scanner.done:
                return buf[used:]
            buf = await stream.receive_some(RECEIVE_SIZE)
            if not buf:
                raise trio.BrokenResourceError("client closed mid-body")
    return buf
