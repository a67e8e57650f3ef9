r"""What every exchange of one listener shares, and what the machine is given.

Owns: ``Site`` (the pool, the idle backend connections, the timeouts, the
clock, what the listener is, its counters, the recorder of captures) and the
protocols of what a driver gives the machine: a ``Clock``, ``Conn``\ s and
``Connections``. Must not know: sockets, trio, the drivers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pylb.core.health import HealthCheck
from pylb.core.models import Backend
from pylb.core.pool import Pool
from pylb.core.record import Capture, RequestRecord
from pylb.core.requestid import RequestIds
from pylb.core.timeouts import Timeouts


class Clock(Protocol):
    """The balancer's clock: ``now`` is coarse (refreshed every tick, for
    deadlines); ``time()`` is exact (for the timings of records)."""

    now: float

    def time(self) -> float: ...


class Conn(Protocol):
    """A backend connection, as the machine sees it."""

    backend: Backend

    def close(self) -> None: ...


class Connections(Protocol):
    """Idle keep-alive backend connections (``pylb.net.upstream.Upstream``)."""

    def take_idle(self, backend: Backend, check_open: bool = False) -> Any: ...  # a Conn, or None

    def give_back(self, conn: Any) -> None: ...


Observer = Callable[[RequestRecord], None]  # what an embedding caller gives to see each request's record
Recorder = Callable[[Capture], None]  # what a site calls with each request's capture


class Site:
    """What every exchange of one listener shares: the pool, the backend
    connections, the timeouts, what the listener is, its counters, the
    recorder that gets each exchange's capture (``pylb.core.record``)."""

    __slots__ = (
        "clock",
        "closing",
        "conns",
        "errors",
        "events",
        "extra_response",
        "force_ssl",
        "health",
        "https_port",
        "ids",
        "monitor",
        "monitored",
        "name",
        "pool",
        "port",
        "proto",
        "recorder",
        "requests",
        "retries",
        "timeouts",
    )

    def __init__(
        self,
        pool: Pool,
        conns: Connections,
        timeouts: Timeouts,
        clock: Clock,
        proto: str = "http",
        port: int = 80,
        *,
        recorder: Recorder | None = None,
        force_ssl: bool = False,
        retries: int = 3,
        health: HealthCheck | None = None,
        https_port: int = 443,
        extra_response: bytes = b"",
        ids: RequestIds | None = None,
    ) -> None:
        self.pool = pool
        self.conns = conns
        self.timeouts = timeouts
        self.clock = clock
        self.proto = proto
        self.port = port
        self.recorder = recorder
        self.force_ssl = force_ssl  # every plain-HTTP request is redirected (not only FORCE_SSL services)
        self.retries = retries  # other backends tried when one fails before answering (redispatch)
        self.health = health if health is not None else HealthCheck()  # passive checks count toward its fall
        self.https_port = https_port  # where redirects to https point
        self.extra_response = extra_response  # header lines added to every answer (HSTS on https)
        self.ids = ids if ids is not None else RequestIds("pylb")  # shared by a balancer's listeners
        self.closing = False  # draining: every answer says Connection: close
        self.requests = 0
        self.errors: dict[int, int] = {}
        self.name = f"{proto}:{port}"  # the listener, as records name it
        self.monitor: bytes | None = None  # MONITOR_URI: the target pylb answers itself (200 or 503)
        self.monitored = 0  # requests for it
        self.events: Callable[[str, str], None] | None = None  # told of a backend marked down (kind, text)

    def request_id(self, number: int) -> str:
        return self.ids.name(number)

    def __repr__(self) -> str:
        return f"<Site {self.proto}:{self.port} requests={self.requests} errors={self.errors}>"
