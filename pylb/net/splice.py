"""Zero-copy forwarding between two sockets with Linux ``splice(2)``.

Owns: moving a byte count (or everything until EOF) from one socket to
another through a pipe, without the bytes entering Python, with trio's
readiness waits when either side is not ready. Must not know: HTTP, TCP
mode, or timeouts (the caller passes ``touch`` to hear of progress).

Used for large bodies (HTTP) and every connection (TCP mode) when both ends
are plain sockets; ``available()`` is False where ``os.splice`` is missing,
and callers then copy through user space.

Invariants: never more than ``PIPE_SIZE`` bytes are in flight; a failure on
the source raises ``SourceBroken``, on the sink ``SinkBroken``, so the caller
knows whom to blame.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

import trio
from trio.lowlevel import checkpoint, wait_readable, wait_writable

PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


class SourceBroken(trio.BrokenResourceError):
    """The side being read from failed (reset, or closed under us)."""


class SinkBroken(trio.BrokenResourceError):
    """The side being written to failed."""


def available() -> bool:
    return hasattr(os, "splice")


class _Pipe:
    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # keeps the default 64 KiB when the limit is lower
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE)
        self.size = fcntl.fcntl(self.w, 1032)  # F_GETPIPE_SZ

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


async def splice(
    src: socket.socket, dst: socket.socket, count: int | None, touch: Callable[[], None] | None = None
) -> int:
    """Move ``count`` bytes (None: until EOF) from ``src`` to ``dst``; return
    how many moved (less than ``count`` only when ``src`` reached EOF)."""
    pipe = _Pipe()
    try:
        return await _pump(pipe, src, dst, count, touch)
    finally:
        pipe.close()


async def _pump(
    pipe: _Pipe, src: socket.socket, dst: socket.socket, count: int | None, touch: Callable[[], None] | None
) -> int:
    moved = in_pipe = 0
    eof = False
    spins = 0
    src_fd, dst_fd = src.fileno(), dst.fileno()
    while True:
        wanted = pipe.size - in_pipe if count is None else min(pipe.size - in_pipe, count - moved - in_pipe)
        read_blocked = write_blocked = False
        if wanted > 0 and not eof:
            try:
                n = os.splice(src_fd, pipe.w, wanted, flags=_FLAGS)
            except BlockingIOError:
                read_blocked = True
            except OSError as exc:
                raise SourceBroken(exc.strerror or str(exc)) from exc
            else:
                in_pipe += n
                eof = n == 0
        if in_pipe:
            try:
                n = os.splice(pipe.r, dst_fd, in_pipe, flags=_FLAGS)
            except BlockingIOError:
                write_blocked = True
            except OSError as exc:
                raise SinkBroken(exc.strerror or str(exc)) from exc
            else:
                in_pipe -= n
                moved += n
                if touch is not None:
                    touch()
        if not in_pipe and (eof or moved == count):
            return moved
        if write_blocked:
            await wait_writable(dst)
        elif read_blocked:
            await wait_readable(src)
        else:
            spins += 1
            if spins % 16 == 0:  # both sides keep up: still let other tasks run
                await checkpoint()
