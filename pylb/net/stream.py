"""A lean trio stream over a TCP socket, the dialer, and listening sockets.

Owns: socket options (TCP_NODELAY, SO_REUSEADDR/SO_REUSEPORT), non-blocking
accept and connect, and the one translation of connect errors into pylb
errors. Must not know: HTTP.

``FastStream`` drives a non-blocking stdlib socket with trio's
``wait_readable``/``wait_writable`` directly: it is on the per-request path,
and trio's socket wrapper costs two scheduler round trips per call where
this costs one per receive and none per send that the kernel takes at once.
Every ``receive_some`` yields to the scheduler (so no loop that receives can
starve others); ``send_all`` yields only when the socket buffer is full.
It can also be closed synchronously, so pool bookkeeping never awaits.
"""

from __future__ import annotations

import contextlib
import errno
import socket as stdsocket

import trio
from trio.lowlevel import wait_readable, wait_writable

from pylb.core.errors import ConnectFailed, ConnectTimeout
from pylb.core.models import Backend

RECEIVE_SIZE = 65536
_LINGER_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"


def _broken(sock: stdsocket.socket, exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if sock.fileno() == -1:
        return trio.ClosedResourceError("stream closed")
    return trio.BrokenResourceError(f"{exc.strerror or exc}")


class FastStream(trio.abc.HalfCloseableStream):
    __slots__ = ("sock",)

    def __init__(self, sock: stdsocket.socket, nodelay: bool = True) -> None:
        sock.setblocking(False)
        if nodelay:
            with contextlib.suppress(OSError):  # not TCP (a unix socket in a test)
                sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        self.sock = sock

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        sock = self.sock
        while True:
            try:
                await wait_readable(sock)
                return sock.recv(max_bytes or RECEIVE_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _broken(sock, exc) from exc

    def receive_nowait(self, max_bytes: int = RECEIVE_SIZE) -> bytes | None:
        """What has arrived already, or None when nothing has (no waiting,
        no checkpoint: a new connection's first bytes are often here)."""
        try:
            return self.sock.recv(max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _broken(self.sock, exc) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise _broken(sock, exc) from exc
        if sent < len(data):
            await self._send_rest(memoryview(data)[sent:])

    async def _send_rest(self, view: memoryview) -> None:
        sock = self.sock
        while view:
            try:
                await wait_writable(sock)
                view = view[sock.send(view) :]
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _broken(sock, exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        await wait_writable(self.sock)

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        with contextlib.suppress(OSError):
            self.sock.shutdown(stdsocket.SHUT_WR)

    def close(self) -> None:
        if self.sock.fileno() != -1:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0), so the peer sees an error, not a
        clean end: used when a response is cut short."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, _LINGER_RESET)
        self.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


async def dial(backend: Backend, timeout: float) -> FastStream:
    """Connect to ``backend``; ConnectFailed (502) on refusal, ConnectTimeout
    (504) on timeout."""
    sock: stdsocket.socket | None = None
    try:
        with trio.fail_after(timeout):
            infos = await trio.socket.getaddrinfo(backend.host, backend.port, type=stdsocket.SOCK_STREAM)
            family, type_, proto, _, address = infos[0]
            sock = stdsocket.socket(family, type_, proto)
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code == errno.EINPROGRESS:
                await wait_writable(sock)
                code = sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_ERROR)
            if code:
                raise OSError(code, errno.errorcode.get(code, str(code)))
    except trio.TooSlowError:
        _discard(sock)
        raise ConnectTimeout(f"connect to {backend} timed out after {timeout:g}s") from None
    except OSError as exc:
        _discard(sock)
        reason = errno.errorcode.get(exc.errno or 0, "") or str(exc)
        raise ConnectFailed(f"cannot connect to {backend}: {reason}") from None
    except BaseException:
        _discard(sock)
        raise
    return FastStream(sock)


def _discard(sock: stdsocket.socket | None) -> None:
    if sock is not None:
        trio.lowlevel.notify_closing(sock)
        sock.close()


def listen_socket(host: str, port: int, reuse_port: bool = False, backlog: int = 4096) -> stdsocket.socket:
    """A bound, listening, non-blocking stdlib socket (binding errors surface
    before trio starts serving and can become one-line CLI errors)."""
    family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
    sock = stdsocket.socket(family, stdsocket.SOCK_STREAM)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)  # accepted sockets inherit it
        if reuse_port:
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def accept(sock: stdsocket.socket) -> tuple[stdsocket.socket, tuple[str, int]]:
    """The next connection on listening ``sock``; OSError as the kernel says,
    ClosedResourceError once the socket is closed.

    Takes a connection already queued without waiting (under a burst of new
    connections that saves a scheduler round trip each); every accept loop
    yields at least once per connection elsewhere (its semaphore)."""
    while True:
        if sock.fileno() == -1:  # closed by stop_accepting() while this task was not waiting
            raise trio.ClosedResourceError("the listening socket is closed")
        try:
            return sock.accept()
        except BlockingIOError:
            await wait_readable(sock)


def close_now(stream: trio.abc.Stream) -> bool:
    """Close ``stream`` (a FastStream, or a TLS stream over one) without
    awaiting: no close_notify, no checkpoint. False when it cannot."""
    inner = stream if isinstance(stream, FastStream) else getattr(stream, "transport_stream", None)
    if isinstance(inner, FastStream):
        inner.close()
        return True
    return False
