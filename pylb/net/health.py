"""Active health checks: connect (or ask) every backend now and then.

Owns: the checking task, one round every ``inter`` seconds, each backend
checked concurrently with a timeout; a TCP check is a connect, an HTTP check
a request whose 2xx/3xx answer means healthy (``probe``, which discovery
also uses to let a container whose HEALTHCHECK is still starting join at
once). Results go through ``pylb.core.health.observe`` (rise/fall). Must not
know: routing, HTTP proxying, discovery.
"""

from __future__ import annotations

import logging

import trio

from pylb.core.errors import ProxyError
from pylb.core.health import HealthCheck, observe
from pylb.core.models import Backend
from pylb.core.pool import Pool
from pylb.core.state import BackendState
from pylb.net.upstream import BackendStream, Dialer
from pylb.observe.events import EventFeed

log = logging.getLogger("pylb.health")


class HealthChecker:
    """Checks each backend on its own schedule: its service's ``check`` when
    the snapshot gives one, else ``check`` (the balancer's)."""

    def __init__(
        self, pool: Pool, check: HealthCheck, dialer: Dialer, timeout: float, events: EventFeed | None = None
    ) -> None:
        self.pool = pool
        self.events = events
        self.check = check
        self.dialer = dialer
        self.timeout = timeout
        self.rounds = 0
        self._due: dict[tuple[str, int], float] = {}

    def __repr__(self) -> str:
        kind = f"http {' '.join(self.check.http)}" if self.check.http else "tcp"
        return f"<HealthChecker {kind} inter={self.check.inter:g}s rounds={self.rounds}>"

    async def run(self) -> None:
        """Check every live backend when its check is due, forever."""
        while True:
            now = trio.current_time()
            due = []
            for state in self.pool.states():
                check = self.pool.check_for(state, self.check)
                if state.draining or not check.enabled:
                    continue
                if self._due.get(state.backend.key, now) <= now:
                    self._due[state.backend.key] = now + check.inter
                    due.append((state, check))
            if due:
                async with trio.open_nursery() as nursery:
                    for state, check in due:
                        nursery.start_soon(self._check_one, state, check)
            self.rounds += 1
            await trio.sleep(self._tick())

    def _tick(self) -> float:
        """Sleep until the next check is due (at least 0.1 s)."""
        now = trio.current_time()
        live = {s.backend.key for s in self.pool.states()}
        for key in [k for k in self._due if k not in live]:
            del self._due[key]  # backends that left
        nearest = min(self._due.values(), default=now + self.check.inter)
        return max(0.1, nearest - now)

    async def _check_one(self, state: BackendState, check: HealthCheck) -> None:
        reason = await probe(self.dialer, state.backend, check.http, min(self.timeout, check.inter))
        if observe(state, not reason, check):
            label = self.pool.label(state.backend)
            if state.healthy:
                text = f"backend {label} is UP ({_checks(check.rise)} passed)"
            else:
                text = f"backend {label} is DOWN ({_checks(check.fall)} failed: {reason})"
            if self.events is not None:
                self.events.add("health", text, log, logging.WARNING)
            else:
                log.warning("%s", text)


async def probe(dialer: Dialer, backend: Backend, http: tuple[str, str] | None, timeout: float) -> str:
    """One check of ``backend``: a connect, then, when ``http`` is given as
    ``(method, path)``, that request, whose 2xx/3xx answer passes. Returns an
    empty string when it passed, else why not; bounded by ``timeout``; never
    raises for the backend's faults. (The checker's rounds and discovery's
    probes of new containers both use it.)"""
    reason = ""
    with trio.move_on_after(timeout) as scope:
        reason = await _probe(dialer, backend, http, timeout)
    if scope.cancelled_caught:
        reason = f"no answer within {timeout:g}s"
    return reason


async def _probe(dialer: Dialer, backend: Backend, http: tuple[str, str] | None, timeout: float) -> str:
    try:
        stream = await dialer(backend, timeout)
    except ProxyError as exc:
        return exc.detail
    try:
        if http is None:
            return ""
        method, path = http
        await stream.send_all(
            f"{method} {path} HTTP/1.1\r\nHost: {backend}\r\nUser-Agent: pylb-health\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        line = await _status_line(stream)
        if line[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ") and line[9:10] in (b"2", b"3"):
            return ""
        return f"answered {line[:40]!r}"
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        return f"connection failed: {exc}"
    finally:
        stream.close()


async def _status_line(stream: BackendStream) -> bytes:
    buf = b""
    while b"\r\n" not in buf and len(buf) < 4096:
        data = await stream.receive_some(4096)
        if not data:
            break
        buf += data
    return buf.partition(b"\r\n")[0]


def _checks(count: int) -> str:
    return f"{count} check" if count == 1 else f"{count} checks"
