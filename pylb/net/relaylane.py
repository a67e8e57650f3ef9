"""The relay lane: TCP mode's small exchanges driven by one readiness loop.

Owns: one ``select.epoll`` set with edge-triggered registrations kept while a
pair of sockets (a client connection of a plain ``tcp://`` listener and its
backend connection) is relayed here; the task that waits on that set through
trio, once per batch of events; and the plain callbacks that move the bytes
with non-blocking ``recv``/``send``, with no task switch per event: client
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
_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_OUT = _IN | select.EPOLLOUT
_READABLE = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_HUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


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
    __slots__ = (
        "a",
        "a_hup",
        "afd",
        "b",
        "b_hup",
        "bfd",
        "counters",
        "down",
        "down_done",
        "idle",
        "owner",
        "resume",
        "up",
        "up_done",
        "wake",
        "live",
    )

    def __init__(self, owner: Owner, counters: Counters, idle: float, a: stdsocket.socket, b: stdsocket.socket) -> None:
        self.owner = owner
        self.counters = counters
        self.idle = idle
        self.a, self.b = a, b  # client, backend
        self.afd, self.bfd = a.fileno(), b.fileno()
        self.up = self.down = b""  # received, not yet sent (toward the backend / the client)
        self.up_done = self.down_done = False
        self.a_hup = self.b_hup = False  # the peer said it stopped sending: read to the end
        self.wake = trio.Event()
        self.resume: Resume | None = None
        self.live = True


class RelayLane:
    """The readiness loop shared by a balancer's plain TCP listeners."""

    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog
        self._ep: select.epoll | None = None
        self._fds: dict[int, tuple[_Relay, bool]] = {}  # fd -> (its pair, True for the client side)
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

    @property
    def running(self) -> bool:
        return self._ep is not None

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ep = self._ep = select.epoll()
        try:
            task_status.started()
            while True:
                await wait_readable(ep.fileno())
                self.wakeups += 1
                while True:
                    events = ep.poll(0, BATCH)
                    for fd, ev in events:
                        self._dispatch(fd, ev)
                    if len(events) < BATCH:
                        break
                    await trio.lowlevel.checkpoint()  # a flood must not starve other tasks
        finally:
            self._ep = None
            for r, client_side in list(self._fds.values()):
                if client_side:
                    self._leave(r, self._resume(r))  # their tasks go on without the lane
            ep.close()

    async def relay(
        self, owner: Owner, counters: Counters, idle: float, client: stdsocket.socket, backend: stdsocket.socket
    ) -> Resume | None:
        """Relay between ``client`` and ``backend`` (non-blocking sockets)
        until both directions have ended or one side reset (None: close
        both), or until the task must go on itself (a ``Resume``)."""
        if self._ep is None:
            return Resume()
        r = _Relay(owner, counters, idle, client, backend)
        self.relays += 1
        self._fds[r.afd] = (r, True)
        self._fds[r.bfd] = (r, False)
        owner.idle_deadline = self.watchdog.now + idle
        try:
            # Registering reports at once what has arrived already.
            self._ep.register(r.afd, _IN)
            self._ep.register(r.bfd, _IN)
            await r.wake.wait()
        finally:
            if r.live:  # cancelled (idle or drain timeout), or registering failed
                self._leave(r, None)
        return r.resume

    # ---- callbacks ----------------------------------------------------------------------------

    def _dispatch(self, fd: int, ev: int) -> None:
        entry = self._fds.get(fd)
        if entry is None:
            return
        r, client_side = entry
        try:
            if client_side:
                if ev & select.EPOLLOUT and r.down:
                    self._flush(r, False)
                if ev & _READABLE and r.live:
                    if ev & _HUP:
                        r.a_hup = True
                    if not r.up and not r.up_done:
                        self._move(r, True)
            else:
                if ev & select.EPOLLOUT and r.up:
                    self._flush(r, True)
                if ev & _READABLE and r.live:
                    if ev & _HUP:
                        r.b_hup = True
                    if not r.down and not r.down_done:
                        self._move(r, False)
        except Exception:
            log.exception("internal error in the relay lane; connection closed")
            if r.live:
                self._leave(r, None)

    def _move(self, r: _Relay, up: bool, drain: bool = False) -> None:
        """Receive from one side and send to the other until the source has
        nothing more (or the destination is full)."""
        if up:
            src, dst, hup = r.a, r.b, r.a_hup
        else:
            src, dst, hup = r.b, r.a, r.b_hup
        while True:
            try:
                data = src.recv(RECEIVE_SIZE)
            except BlockingIOError:
                return
            except OSError:
                self._leave(r, None)  # a reset ends both
                return
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(stdsocket.SHUT_WR)
                if up:
                    r.up_done = True
                else:
                    r.down_done = True
                if r.up_done and r.down_done:
                    self._leave(r, None)
                return
            n = len(data)
            r.owner.idle_deadline = self.watchdog.now + r.idle
            if n == RECEIVE_SIZE:  # bulk: its task goes on with splice
                self.bulk += 1
                resume = self._resume(r)
                if up:
                    resume.up, resume.up_bulk = data, True
                else:
                    resume.down, resume.down_bulk = data, True
                self._leave(r, resume)
                return
            try:
                sent = dst.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._leave(r, None)
                return
            if sent:
                if up:
                    r.counters.bytes_in += sent
                else:
                    r.counters.bytes_out += sent
            if sent < n:
                # Keep the rest, stop reading this side; the other's EPOLLOUT resumes it.
                assert self._ep is not None
                self.partial += 1
                if up:
                    r.up = data[sent:]
                    self._ep.modify(r.bfd, _OUT)
                else:
                    r.down = data[sent:]
                    self._ep.modify(r.afd, _OUT)
                return
            if not (hup or drain):
                return  # a short receive drained it (edge-triggered: more data brings a new event)

    def _flush(self, r: _Relay, up: bool) -> None:
        """The destination drained: send what was kept, then read again."""
        dst, rest = (r.b, r.up) if up else (r.a, r.down)
        try:
            sent = dst.send(rest)
        except BlockingIOError:
            return
        except OSError:
            self._leave(r, None)
            return
        r.owner.idle_deadline = self.watchdog.now + r.idle
        if up:
            r.counters.bytes_in += sent
            r.up = rest = rest[sent:]
        else:
            r.counters.bytes_out += sent
            r.down = rest = rest[sent:]
        if rest:
            return
        assert self._ep is not None
        self._ep.modify(r.bfd if up else r.afd, _IN)
        self._move(r, up, drain=True)  # events that came while paused were not acted on

    # ---- leaving ------------------------------------------------------------------------------

    def _resume(self, r: _Relay) -> Resume:
        return Resume(r.up, r.down, r.up_done, r.down_done)

    def _leave(self, r: _Relay, resume: Resume | None) -> None:
        """Take the pair out of the epoll set (its sockets stay open) and wake
        its task: ``resume`` None means close both."""
        if not r.live:
            return
        r.live = False
        r.resume = resume
        for fd in (r.afd, r.bfd):
            if self._fds.pop(fd, None) is not None and self._ep is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._ep.unregister(fd)
        r.wake.set()
