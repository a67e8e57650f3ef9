"""The task driver of the HTTP exchange machine: one trio task per client connection.

Owns: moving the bytes of one ``Exchange`` over trio streams of any kind (a
``FastStream``, a ``TlsStream``, a memory stream in a test), waiting by
awaiting; dialing; the request-body pump (a second task while a body
streams, so that 100-continue and early answers work); ``splice`` for bulk
bodies; the tunnel's two pumps after a 101; handing a connection back to the
readiness loop between requests.

Must not know: any protocol rule. When to replay, keep alive, time out or
answer an error is the machine's (``pylb.core.exchange``); this module does
what each action says and feeds back what happened. Discovery, balancing.

Invariants: the connection is closed exactly once, here, unless it was
handed back (``handed_back``); a deadline passing cancels whatever is
awaited, and the machine says what follows.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

import trio

from pylb.core import exchange as ex
from pylb.core.errors import ConnectFailed, ConnectTimeout, ProxyError
from pylb.net import splice
from pylb.net.stream import RECEIVE_SIZE, FastStream, close_now
from pylb.net.timers import Watchdog
from pylb.net.upstream import BackendStream, Upstream, UpstreamConn

log = logging.getLogger("pylb")
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class Lane(Protocol):
    """Where a connection goes back between requests (``pylb.net.fastlane``)."""

    def take_back(self, client: ClientConnection) -> bool: ...


class Driven:
    """A driver's hold on one exchange (``x``): the deadline the watchdog reads
    (and clears once it fired) is the machine's."""

    __slots__ = ("x",)
    x: ex.Exchange

    @property
    def deadline(self) -> float:
        return self.x.deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self.x.deadline = value


class ClientConnection(Driven):
    """Drives one client connection's ``Exchange`` in this task."""

    __slots__ = (
        "fresh",
        "handed_back",
        "lane",
        "pump_action",
        "pump_scope",
        "scope",
        "stream",
        "upstream",
        "watchdog",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        x: ex.Exchange,
        upstream: Upstream,
        watchdog: Watchdog,
        lane: Lane | None = None,
        fresh: bool = True,
    ) -> None:
        self.stream = stream
        self.x = x
        self.upstream = upstream
        self.watchdog = watchdog
        self.lane = lane  # set when the readiness loop may take the connection back
        self.fresh = fresh  # a new connection: its first request is often here already
        self.handed_back = False
        self.scope = trio.CancelScope()
        self.pump_scope: trio.CancelScope | None = None
        self.pump_action = ex.NOTHING

    @property
    def idle(self) -> bool:
        return self.x.state == ex.IDLE and not self.x.buf

    def __repr__(self) -> str:
        return f"<ClientConnection {self.x!r}>"

    async def run(self, action: int | None = None) -> None:
        """Drive the exchange from ``action`` (a new connection's when None)
        until the connection ends or the readiness loop takes it back."""
        x = self.x
        self.watchdog.watch(self)
        try:
            if action is None:
                action = x.start()
            while action != ex.CLOSE and not self.handed_back:
                self.scope = trio.CancelScope()
                with self.scope:
                    action = await self._drive(action)
                if self.scope.cancelled_caught:
                    action = x.expired()
        except Exception:
            x.client_lost()
            raise
        finally:
            self.watchdog.unwatch(self)
            if not self.handed_back and not self._close(x.reset):
                await trio.aclose_forcefully(self.stream)  # a memory stream in a test

    def _close(self, reset: bool) -> bool:
        """Close now (False when only awaiting can close this stream)."""
        stream = self.stream
        if reset:
            inner = stream if isinstance(stream, FastStream) else getattr(stream, "transport_stream", None)
            if isinstance(inner, FastStream):
                inner.abort()
                return True
        close = getattr(stream, "close", None)
        if close is not None:
            close()
            return True
        return close_now(stream)

    async def _drive(self, action: int) -> int:
        x = self.x
        while True:
            if action == ex.READ_CLIENT:
                if self.lane is not None and self.idle and self.lane.take_back(self):
                    self.handed_back = True
                    return ex.NOTHING
                data = await self._receive_client()
                action = x.client_data(data) if data else x.client_eof()
            elif action == ex.SEND_BACKEND:
                conn = x.conn
                assert isinstance(conn, UpstreamConn)
                try:
                    await conn.stream.send_all(x.out)
                except _BROKEN:
                    action = x.backend_lost()
                    continue
                action = x.backend_sent()
            elif action == ex.READ_BACKEND:
                if x.streaming:
                    action = await self._with_upload(action)
                    continue
                action = await self._read_backend()
            elif action == ex.SEND_CLIENT:
                try:
                    await self.stream.send_all(x.out)
                except _BROKEN:
                    action = x.client_lost()
                    continue
                action = x.client_sent()
            elif action == ex.DIAL:
                assert x.backend is not None
                try:
                    conn = await self.upstream.dial(x.backend)
                except (ConnectFailed, ConnectTimeout) as exc:
                    action = x.connect_failed(exc)
                    continue
                action = x.connected(conn)
            elif action == ex.TUNNEL:
                await self._tunnel()
                action = x.tunnel_done()
            elif action == ex.CLOSE:
                return action
            else:
                raise ex.ProtocolBug(f"the task driver got {ex.ACTION_NAMES[action]} in {x!r}")

    async def _receive_client(self) -> bytes:
        stream = self.stream
        if self.fresh:
            self.fresh = False
            if isinstance(stream, FastStream):
                try:
                    data = stream.receive_nowait()
                except _BROKEN:
                    return b""
                if data is not None:
                    return data
        try:
            return bytes(await stream.receive_some(RECEIVE_SIZE))
        except _BROKEN:
            return b""

    async def _read_backend(self) -> int:
        x = self.x
        conn = x.conn
        assert isinstance(conn, UpstreamConn)
        blind = x.blind
        if blind and splice.available():
            moved = await self._splice_response(conn, blind)
            if moved is not None:
                return moved
        try:
            data = await conn.stream.receive_some(RECEIVE_SIZE)
        except _BROKEN:
            return x.backend_eof(reset=True)
        return x.backend_data(data) if data else x.backend_eof()

    async def _splice_response(self, conn: UpstreamConn, count: int) -> int | None:
        """Move a bulk body kernel-side; the next action, or None when these
        streams cannot splice (the caller copies)."""
        src, dst, x = conn.stream, self.stream, self.x
        if not isinstance(src, FastStream) or not isinstance(dst, FastStream):
            return None
        try:
            moved = await splice.splice(src.sock, dst.sock, count if count > 0 else None, x.touch)
        except splice.SourceBroken:
            return x.backend_eof(reset=True)
        except splice.SinkBroken:
            return x.client_lost()
        if moved:
            action = x.moved(moved)
            if count < 0 or moved < count:  # the backend closed
                return x.backend_eof() if action == ex.READ_BACKEND else action
            return action
        return x.backend_eof()

    # ---- a request body that streams ------------------------------------------------------

    async def _with_upload(self, action: int) -> int:
        """Relay the answer while a second task pumps the request body; until
        this answer is over, or the pump fails (its action then)."""
        async with trio.open_nursery() as nursery:
            self.pump_action = ex.NOTHING
            self.pump_scope = trio.CancelScope()
            nursery.start_soon(self._pump)
            with self.pump_scope:
                while action in (ex.READ_BACKEND, ex.SEND_CLIENT) and self.pump_action == ex.NOTHING:
                    action = await self._step(action)
            if self.pump_action != ex.NOTHING:
                action = self.pump_action
            nursery.cancel_scope.cancel()
        self.pump_scope = None
        return action

    async def _step(self, action: int) -> int:
        """One action of the answer's side, while the body pumps."""
        x = self.x
        if action == ex.READ_BACKEND:
            return await self._read_backend()
        if action == ex.SEND_CLIENT:
            try:
                await self.stream.send_all(x.out)
            except _BROKEN:
                return x.client_lost()
            return x.client_sent()
        return action

    async def _pump(self) -> None:
        x = self.x
        conn = x.conn
        assert isinstance(conn, UpstreamConn)
        client, timeouts = self.stream, x.site.timeouts
        while x.streaming:
            data, x.buf = x.buf, b""  # body bytes read before this task had the connection
            if not data:
                if await self._splice_body(conn):
                    return
                with trio.move_on_after(timeouts.client):
                    try:
                        data = bytes(await client.receive_some(RECEIVE_SIZE))
                    except _BROKEN:
                        data = b""
            if not data:
                self._pump_failed(x.upload_failed(None))
                return
            try:
                piece = x.body(data)
            except ProxyError as exc:
                self._pump_failed(x.upload_failed(exc))
                return
            try:
                await conn.stream.send_all(piece)
            except _BROKEN:
                return  # the backend stopped reading: its answer tells the rest

    def _pump_failed(self, action: int) -> None:
        self.pump_action = action
        if self.pump_scope is not None:
            self.pump_scope.cancel()

    async def _splice_body(self, conn: UpstreamConn) -> bool:
        """Move a large Content-Length body kernel-side; True when it moved."""
        x = self.x
        src, dst = self.stream, conn.stream
        left = x.body_left
        if left < ex.BULK or not splice.available():
            return False
        if not isinstance(src, FastStream) or not isinstance(dst, FastStream):
            return False
        try:
            moved = await splice.splice(src.sock, dst.sock, left, x.touch)
        except splice.SourceBroken:
            self._pump_failed(x.upload_failed(None))
            return True
        except splice.SinkBroken:
            return True  # the backend stopped reading: its answer tells the rest
        x.body_moved(moved)
        if moved < left:
            self._pump_failed(x.upload_failed(None))
        return True

    # ---- after a 101 ------------------------------------------------------------------------

    async def _tunnel(self) -> None:
        """Write the 101 to the client and its early bytes to the backend,
        then bytes both ways until both sides are done."""
        x = self.x
        conn = x.conn
        assert isinstance(conn, UpstreamConn)
        try:
            await self.stream.send_all(x.out)
        except _BROKEN:
            return
        early, x.buf = x.buf, b""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tunnel_pump, self.stream, conn.stream, early, nursery)
            nursery.start_soon(self._tunnel_pump, conn.stream, self.stream, b"", nursery)

    async def _tunnel_pump(
        self,
        src: trio.abc.Stream | BackendStream,
        dst: trio.abc.Stream | BackendStream,
        first: bytes,
        nursery: trio.Nursery,
    ) -> None:
        touch = self.x.tunnel_touch
        data = first
        try:
            while True:
                touch()
                if data:
                    await dst.send_all(data)
                data = bytes(await src.receive_some(RECEIVE_SIZE))
                if not data:
                    break
        except _BROKEN:
            nursery.cancel_scope.cancel()
            return
        send_eof = getattr(dst, "send_eof", None)
        if send_eof is None:
            nursery.cancel_scope.cancel()
            return
        with contextlib.suppress(*_BROKEN):
            await send_eof()


async def serve(
    stream: trio.abc.Stream, x: ex.Exchange, upstream: Upstream, watchdog: Watchdog, action: int | None = None
) -> None:
    """Serve one client connection in this task until it ends."""
    await ClientConnection(stream, x, upstream, watchdog).run(action)


__all__ = ["ClientConnection", "Driven", "Lane", "serve"]
