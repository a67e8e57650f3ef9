"""The relay lane: TCP mode's small exchanges driven by one readiness loop.

Owns: one ``select.epoll`` set with edge-triggered registrations kept while a
pair of sockets (a client connection of a plain ``tcp://`` listener and its
backend connection) is relayed here; the task that waits on that set through
trio, once per wake-up (then polling it without waiting, up to ``REPOLL``
times, while events keep coming); and the plain callbacks that move the bytes
with non-blocking ``os.read``/``os.write`` by descriptor (the common event, one
message to pass on, handled in the loop itself), with no task switch per event: client
readable -> receive -> send to the backend, and the other way; a partial send
keeps the rest, stops reading that side and waits for the other to drain; an
EOF is passed on (``shutdown(SHUT_WR)``); a reset ends the pair.

The connection's task (``tcpproxy.TcpConnection``) does everything before
(balancing, connecting with redispatch, the PROXY header) and after (closing
both sockets, releasing the backend's count): it parks in ``relay()`` while
the lane moves the bytes, and wakes when both directions have ended, on a
reset, when a receive fills the buffer (bulk: it goes on with ``splice`` from
what ``Resume`` says), when its deadline passes (the watchdog cancels its
scope: it leaves the lane then), or when the lane stops.

Must not know: balancing, the pool, PROXY headers, TLS, timeouts' values (the
owner says how long a silence may last), HTTP.

Invariants: a socket is read or written here only while its pair is in the
epoll set, and by nothing else meanwhile; nothing is buffered beyond one
receive per direction; bytes are counted into the owner's counters as they
are sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket as stdsocket
from dataclasses import dataclass
from typing import Protocol

import trio
from trio.lowlevel import wait_readable

from pylb.net.stream import RECEIVE_SIZE
from pylb.net.timers import Watchdog

log = logging.getLogger("pylb")

BATCH = 256  # events taken per epoll call
REPOLL = 4  # polls per wake-up at most (then trio runs the other tasks)
_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_OUT = _IN | select.EPOLLOUT
_READABLE = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_HUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_OUTBIT = select.EPOLLOUT
_INBIT = select.EPOLLIN


class Counters(Protocol):
    """Where the relayed bytes are counted (a listener's ``TcpContext``)."""

    bytes_in: int
    bytes_out: int


class Owner(Protocol):
    """The connection being relayed, as the watchdog sees it: a silence of
    ``idle`` seconds (from the lane's last move) ends it."""

    idle_deadline: float


@dataclass(slots=True)
class Resume:
    """Where a pair stands when its task takes it back to go on: bytes
    received and not yet sent (``up``: toward the backend), the directions
    already ended (their EOF passed on), and which one turned bulk."""

    up: bytes = b""
    down: bytes = b""
    up_done: bool = False
    down_done: bool = False
    up_bulk: bool = False
    down_bulk: bool = False


class _Relay:
    """One pair: what its task waits on, and how it left."""

    __slots__ = ("up", "down", "wake", "resume", "live")

    def __init__(self) -> None:
        self.wake = trio.Event()
        self.resume: Resume | None = None
        self.live = True
        self.up: _Way
        self.down: _Way


class _Way:
    """One direction of a pair: from ``src`` to ``dst``; ``back`` is the
    other direction (the one that writes to ``src``)."""

    __slots__ = (
        "back",
        "counters",
        "done",
        "dst",
        "dst_fd",
        "hup",
        "idle",
        "inbound",
        "owner",
        "pending",
        "relay",
        "src",
        "src_fd",
    )

    def __init__(
        self,
        relay: _Relay,
        owner: Owner,
        counters: Counters,
        idle: float,
        src: stdsocket.socket,
        dst: stdsocket.socket,
        inbound: bool,
    ) -> None:
        self.relay = relay
        self.owner = owner
        self.counters = counters
        self.idle = idle
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.inbound = inbound  # client -> backend
        self.pending = b""  # received, not yet sent
        self.done = False  # EOF received and passed on
        self.hup = False  # the source said it stopped sending: read it to the end
        self.back: _Way


class RelayLane:
    """The readiness loop shared by a balancer's plain TCP listeners."""

    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog
        self._ep: select.epoll | None = None
        self._fds: dict[int, _Way] = {}  # fd -> the direction reading from it
        self.relays = 0
        self.bulk = 0  # pairs handed back for splice
        self.partial = 0  # sends the kernel did not take whole
        self.wakeups = 0

    def statistics(self) -> dict[str, int]:
        return {
            "connections": len(self._fds) // 2,
            "relays": self.relays,
            "bulk": self.bulk,
            "partial": self.partial,
            "wakeups": self.wakeups,
        }

    def __repr__(self) -> str:
        return f"<RelayLane connections={len(self._fds) // 2} relays={self.relays}>"

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ep = self._ep = select.epoll()
        fds = self._fds
        try:
            task_status.started()
            while True:
                await wait_readable(ep.fileno())
                self.wakeups += 1
                # Poll again before waiting through trio: under load, more is ready by the time a
                # batch is done, and a trio wake-up costs more than an empty poll.
                for _ in range(REPOLL):
                    events = ep.poll(0, BATCH)
                    if not events:
                        break
                    self._handle(events)
        finally:
            self._ep = None
            for way in list(fds.values()):
                if way.inbound:
                    self._leave(way.relay, self._resume(way.relay))  # their tasks go on without the lane
            ep.close()

    def _handle(self, events: list[tuple[int, int]]) -> None:
        fds = self._fds
        now = self.watchdog.now
        for fd, ev in events:
            way = fds.get(fd)
            if way is None:
                continue
            try:
                if ev == _INBIT and not (way.pending or way.done or way.hup) and way.relay.live:
                    # The common event: one message to pass on. ``_move`` in short (measured: 15%
                    # fewer instructions per exchange); an EOF, a bulk receive, a full destination
                    # or an error go the long way.
                    try:
                        data = os.read(fd, RECEIVE_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError:
                        self._leave(way.relay, None)
                        continue
                    n = len(data)
                    if n == 0 or n == RECEIVE_SIZE:
                        self._move(way, data)
                        continue
                    way.owner.idle_deadline = now + way.idle
                    try:
                        sent = os.write(way.dst_fd, data)
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        self._leave(way.relay, None)
                        continue
                    if way.inbound:
                        way.counters.bytes_in += sent
                    else:
                        way.counters.bytes_out += sent
                    if sent < n:
                        self._keep(way, data[sent:])
                    continue
                if ev & _OUTBIT and way.back.pending:
                    self._flush(way.back)
                if ev & _READABLE and not (way.pending or way.done) and way.relay.live:
                    if ev & _HUP:
                        way.hup = True
                    self._move(way)
            except Exception:
                log.exception("internal error in the relay lane; connection closed")
                self._leave(way.relay, None)

    async def relay(
        self, owner: Owner, counters: Counters, idle: float, client: stdsocket.socket, backend: stdsocket.socket
    ) -> Resume | None:
        """Relay between ``client`` and ``backend`` (non-blocking sockets)
        until both directions have ended or one side reset (None: close
        both), or until the task must go on itself (a ``Resume``)."""
        if self._ep is None:
            return Resume()
        r = _Relay()
        up = r.up = _Way(r, owner, counters, idle, client, backend, True)
        down = r.down = _Way(r, owner, counters, idle, backend, client, False)
        up.back, down.back = down, up
        self.relays += 1
        self._fds[up.src_fd] = up
        self._fds[down.src_fd] = down
        owner.idle_deadline = self.watchdog.now + idle
        try:
            # Registering reports at once what has arrived already.
            self._ep.register(up.src_fd, _IN)
            self._ep.register(down.src_fd, _IN)
            await r.wake.wait()
        finally:
            if r.live:  # cancelled (idle or drain timeout), or registering failed
                self._leave(r, None)
        return r.resume

    # ---- callbacks ----------------------------------------------------------------------------

    def _move(self, way: _Way, first: bytes | None = None, drain: bool = False) -> None:
        """Receive from one side and send to the other until the source has
        nothing more (or the destination is full); ``first``: what a receive
        already gave."""
        # By number: cheaper than the socket methods, and safe as the pair's sockets stay open while
        # it is in the lane (its task closes them only after ``_leave``).
        src_fd, dst_fd = way.src_fd, way.dst_fd
        while True:
            if first is not None:
                data, first = first, None
            else:
                try:
                    data = os.read(src_fd, RECEIVE_SIZE)
                except BlockingIOError:
                    return
                except OSError:
                    self._leave(way.relay, None)  # a reset ends both
                    return
            if not data:
                with contextlib.suppress(OSError):
                    way.dst.shutdown(stdsocket.SHUT_WR)
                way.done = True
                if way.back.done:
                    self._leave(way.relay, None)
                return
            n = len(data)
            way.owner.idle_deadline = self.watchdog.now + way.idle
            if n == RECEIVE_SIZE:  # bulk: its task goes on with splice
                self.bulk += 1
                way.pending += data
                self._leave(way.relay, self._resume(way.relay), bulk=way)
                return
            try:
                sent = os.write(dst_fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._leave(way.relay, None)
                return
            if way.inbound:
                way.counters.bytes_in += sent
            else:
                way.counters.bytes_out += sent
            if sent < n:
                self._keep(way, data[sent:])
                return
            if not (way.hup or drain):
                return  # a short receive drained it (edge-triggered: more data brings a new event)

    def _keep(self, way: _Way, rest: bytes) -> None:
        """Keep what the destination did not take and stop reading this side;
        the destination's EPOLLOUT resumes it (``_flush``)."""
        assert self._ep is not None
        self.partial += 1
        way.pending = rest
        self._ep.modify(way.dst_fd, _OUT)

    def _flush(self, way: _Way) -> None:
        """The destination drained: send what was kept, then read again."""
        try:
            sent = way.dst.send(way.pending)
        except BlockingIOError:
            return
        except OSError:
            self._leave(way.relay, None)
            return
        way.owner.idle_deadline = self.watchdog.now + way.idle
        if way.inbound:
            way.counters.bytes_in += sent
        else:
            way.counters.bytes_out += sent
        way.pending = way.pending[sent:]
        if way.pending:
            return
        assert self._ep is not None
        self._ep.modify(way.dst_fd, _IN)
        self._move(way, drain=True)  # events that came while paused were not acted on

    # ---- leaving ------------------------------------------------------------------------------

    def _resume(self, r: _Relay) -> Resume:
        return Resume(r.up.pending, r.down.pending, r.up.done, r.down.done)

    def _leave(self, r: _Relay, resume: Resume | None, bulk: _Way | None = None) -> None:
        """Take the pair out of the epoll set (its sockets stay open) and wake
        its task: ``resume`` None means close both."""
        if not r.live:
            return
        r.live = False
        if resume is not None and bulk is not None:
            resume.up_bulk, resume.down_bulk = bulk is r.up, bulk is r.down
        r.resume = resume
        for way in (r.up, r.down):
            if self._fds.pop(way.src_fd, None) is not None and self._ep is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._ep.unregister(way.src_fd)
        r.wake.set()
