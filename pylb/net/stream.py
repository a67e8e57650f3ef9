"""A lean trio stream over a TCP socket, the dialer, and listening sockets.

Owns: socket options (TCP_NODELAY, SO_REUSEADDR/SO_REUSEPORT), connecting
to backends, and the one translation of connect errors into pylb errors.
Must not know: HTTP.

``FastStream`` does what ``trio.SocketStream`` does for the proxy's needs
with fewer layers (it is on the per-request path) and can be closed
synchronously, so pool bookkeeping never has to await.
"""

from __future__ import annotations

import contextlib
import errno
import socket as stdsocket

import trio

from pylb.core.errors import BadGateway, GatewayTimeout
from pylb.core.models import Backend

RECEIVE_SIZE = 65536


class FastStream(trio.abc.HalfCloseableStream):
    __slots__ = ("socket",)

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.socket = sock
        with contextlib.suppress(OSError):  # not TCP (a unix socket in a test)
            sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self.socket.recv(max_bytes or RECEIVE_SIZE)
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.socket
        try:
            with memoryview(data) as view:
                total = len(view)
                sent = await sock.send(view)
                while sent < total:
                    sent += await sock.send(view[sent:])
        except OSError as exc:
            if sock.fileno() == -1:
                raise trio.ClosedResourceError("stream closed") from exc
            raise trio.BrokenResourceError(str(exc)) from exc

    async def wait_send_all_might_not_block(self) -> None:
        await self.socket.wait_writable()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        with contextlib.suppress(OSError):
            self.socket.shutdown(stdsocket.SHUT_WR)

    def close(self) -> None:
        self.socket.close()

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0), so the peer sees an error, not a
        clean end: used when a response is cut short."""
        with contextlib.suppress(OSError):
            self.socket.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.socket.close()

    async def aclose(self) -> None:
        self.socket.close()
        await trio.lowlevel.checkpoint()


async def dial(backend: Backend, timeout: float) -> FastStream:
    """Connect to ``backend``; BadGateway on refusal, GatewayTimeout on timeout."""
    try:
        with trio.fail_after(timeout):
            infos = await trio.socket.getaddrinfo(backend.host, backend.port, type=stdsocket.SOCK_STREAM)
            family, type_, proto, _, address = infos[0]
            sock = trio.socket.socket(family, type_, proto)
            try:
                await sock.connect(address)
            except BaseException:
                sock.close()
                raise
    except trio.TooSlowError:
        raise GatewayTimeout(f"connect to {backend} timed out after {timeout:g}s") from None
    except OSError as exc:
        reason = errno.errorcode.get(exc.errno or 0, "") or str(exc)
        raise BadGateway(f"cannot connect to {backend}: {reason}") from None
    return FastStream(sock)


def listen_socket(host: str, port: int, reuse_port: bool = False, backlog: int = 4096) -> stdsocket.socket:
    """A bound, listening stdlib socket (so binding errors surface before
    trio starts and can become one-line CLI errors)."""
    family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
    sock = stdsocket.socket(family, stdsocket.SOCK_STREAM)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
