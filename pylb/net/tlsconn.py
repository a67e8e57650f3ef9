"""Terminated TLS over memory BIOs: one session object, usable from a readiness
loop (synchronously) and from a trio task (``TlsStream``).

Owns: an ``ssl.SSLObject`` with its two memory BIOs for each TLS client
connection: feeding it the bytes read, taking out the bytes to write, the
handshake, close_notify; and the trio stream over it for the task path.
Must not know: HTTP, TCP mode, where the socket came from, certificates
(``pylb.tls`` builds the context).

Why not ``trio.SSLStream``: a connection the readiness loop
(``pylb.net.fastlane``) serves must be able to move to a task and back with
its TLS state, which only a session outside any stream allows; and after
the handshake the session's first flight (TLS 1.3 session tickets) is written
at once, so a client whose request waits behind Nagle's algorithm is
acknowledged at once (trio sent them with the first answer: about 40 ms
later, the delayed-ACK timer).

Invariants: bytes read from the socket go into ``incoming`` in order, and
everything the session writes to ``outgoing`` is written to the socket in
order, by whoever holds the connection; a session is used by one driver at
a time.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import trio

from pylb.net.stream import RECEIVE_SIZE, FastStream

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class TlsError(Exception):
    """The TLS session failed (a bad handshake, a corrupt record)."""


class TlsSession:
    """The server side of one TLS connection, over memory BIOs."""

    __slots__ = ("eof", "handshaken", "incoming", "obj", "outgoing", "raw")

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        # Reads and writes go to the C object under ssl.SSLObject: its read, write and pending are
        # Python methods that only call it (three calls per request saved; the same object when a
        # Python without ``_sslobj`` comes).
        # (Not when a context's ``sslobject_class`` is a subclass: its own methods are called.)
        raw = getattr(self.obj, "_sslobj", None) if type(self.obj) is ssl.SSLObject else None
        self.raw: Any = raw if raw is not None else self.obj
        self.handshaken = False
        self.eof = False  # the client sent close_notify

    def handshake(self, data: bytes) -> bytes:
        """Feed ``data`` to the handshake; return what to write (all of it,
        the session tickets of TLS 1.3 included once it is done)."""
        if data:
            self.incoming.write(data)
        try:
            self.obj.do_handshake()
            self.handshaken = True
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"TLS handshake failed: {exc}") from None
        return self.outgoing.read()

    def decrypt(self, data: bytes) -> bytes:
        """Feed ``data`` (records); return the plaintext they complete.
        ``eof`` turns True at the client's close_notify."""
        incoming = self.incoming
        if data:
            incoming.write(data)
        obj = self.raw
        pieces: list[bytes] = []
        try:
            while True:
                piece = obj.read(RECEIVE_SIZE)
                if not piece:
                    self.eof = True
                    break
                pieces.append(piece)
                if not incoming.pending and not obj.pending():
                    break  # all read: no need to hear SSLWantReadError say so (an exception costs)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.eof = True
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"TLS record: {exc}") from None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def encrypt(self, data: bytes) -> bytes:
        """The records carrying ``data`` (and anything else the session has
        to say), to write to the socket."""
        try:
            self.raw.write(data)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"TLS write: {exc}") from None
        return self.outgoing.read()

    def pending(self) -> bytes:
        """What the session wrote by itself (a reply to a key update...)."""
        return self.outgoing.read() if self.outgoing.pending else b""

    def close_notify(self) -> bytes:
        """The close_notify alert to write before closing (best effort)."""
        with contextlib.suppress(ssl.SSLError, OSError):
            self.obj.unwrap()
        return self.outgoing.read()


class TlsStream(trio.abc.Stream):
    """A trio stream over a ``TlsSession`` and a ``FastStream``: the task
    path's view of a TLS connection (``transport_stream`` is the socket's)."""

    def __init__(self, transport: FastStream, session: TlsSession) -> None:
        self.transport_stream = transport
        self.session = session
        self._send_lock = trio.StrictFIFOLock()  # a send and a reply to a read must not interleave

    async def do_handshake(self) -> None:
        """Complete the handshake; BrokenResourceError when it fails."""
        session, transport = self.session, self.transport_stream
        data = b""
        while True:
            try:
                out = session.handshake(data)
            except TlsError as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            if out:
                await self._write(out)
            if session.handshaken:
                return
            data = await transport.receive_some(RECEIVE_SIZE)
            if not data:
                raise trio.BrokenResourceError("the client closed the connection during the TLS handshake")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        session, transport = self.session, self.transport_stream
        data = b""
        while True:
            if session.eof:
                return b""
            try:
                plain = session.decrypt(data)
            except TlsError as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            reply = session.pending()
            if reply:
                await self._write(reply)
            if plain:
                return plain
            if session.eof:
                return b""
            try:
                data = await transport.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError:
                return b""  # a reset: the end, as a ragged EOF is (https_compatible)
            if not data:
                return b""  # the client closed without close_notify: the end as well

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            out = self.session.encrypt(bytes(data))
        except TlsError as exc:
            raise trio.BrokenResourceError(str(exc)) from None
        await self._write(out)

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    def close(self) -> None:
        """Close now: close_notify if the socket takes it at once, then the socket."""
        sock = self.transport_stream.sock
        if sock.fileno() != -1:
            with contextlib.suppress(OSError):
                sock.send(self.session.close_notify())
        self.transport_stream.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


async def handshake(stream: FastStream, context: ssl.SSLContext, early: bytes = b"") -> TlsStream:
    """The server side of a TLS handshake on ``stream`` (``early``: bytes
    already read from it); BrokenResourceError when it fails."""
    tls = TlsStream(stream, TlsSession(context))
    if early:
        tls.session.incoming.write(early)
    await tls.do_handshake()
    return tls
