"""Active health checks: connect (or ask) every backend now and then.

Owns: the checking task, one round every ``inter`` seconds, each backend
checked concurrently with a timeout; a TCP check is a connect, an HTTP check
a request whose 2xx/3xx answer means healthy. Results go through
``pylb.core.health.observe`` (rise/fall). Must not know: routing, HTTP
proxying, discovery.
"""

from __future__ import annotations

import logging

import trio

from pylb.core.errors import ProxyError
from pylb.core.health import HealthCheck, observe
from pylb.core.pool import Pool
from pylb.core.state import BackendState
from pylb.net.upstream import BackendStream, Dialer

log = logging.getLogger("pylb.health")


class HealthChecker:
    def __init__(self, pool: Pool, check: HealthCheck, dialer: Dialer, timeout: float) -> None:
        self.pool = pool
        self.check = check
        self.dialer = dialer
        self.timeout = timeout
        self.rounds = 0

    def __repr__(self) -> str:
        kind = f"http {' '.join(self.check.http)}" if self.check.http else "tcp"
        return f"<HealthChecker {kind} inter={self.check.inter:g}s rounds={self.rounds}>"

    async def run(self) -> None:
        """Check every live backend every ``inter`` seconds, forever."""
        while True:
            states = [s for s in self.pool.states() if not s.draining]
            async with trio.open_nursery() as nursery:
                for state in states:
                    nursery.start_soon(self._check_one, state)
            self.rounds += 1
            await trio.sleep(self.check.inter)

    async def _check_one(self, state: BackendState) -> None:
        reason = ""
        with trio.move_on_after(self.timeout) as scope:
            reason = await self._probe(state)
        if scope.cancelled_caught:
            reason = f"no answer within {self.timeout:g}s"
        if observe(state, not reason, self.check):
            if state.healthy:
                log.warning("backend %s is UP (%d checks passed)", state.backend, self.check.rise)
            else:
                log.warning("backend %s is DOWN (%d checks failed: %s)", state.backend, self.check.fall, reason)

    async def _probe(self, state: BackendState) -> str:
        """An empty string when healthy, else why not."""
        try:
            stream = await self.dialer(state.backend, self.timeout)
        except ProxyError as exc:
            return exc.detail
        try:
            if self.check.http is None:
                return ""
            method, path = self.check.http
            await stream.send_all(
                f"{method} {path} HTTP/1.1\r\nHost: {state.backend}\r\nUser-Agent: pylb-health\r\n"
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
