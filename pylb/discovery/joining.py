"""Joining at once: probe containers whose HEALTHCHECK still says ``starting``.

Owns: one probing task per pending container or task (``Pending``, from a
builder): its probes (``pylb.net.health.probe``: a connect, or the HTTP
check when one is set) every 0.25 s at first, backing off by 1.2x to one a
second, until all pass; then ``admit(key)``, once. Docker's own HEALTHCHECK
runs every 10 s or 30 s by default, so waiting for it leaves a new backend
idle that long; this lets it serve within about a second of listening.
Must not know: Docker, snapshots, the data plane's pool.

Invariants: a key is probed by one task at most; a key that is no longer
pending (healthy, unhealthy, gone) stops being probed at the next
``update``; ``admit`` is called synchronously, at most once per key, and
never for a key no longer pending; probes never raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import trio

from pylb.discovery.assembly import Pending, Probe
from pylb.net.health import probe
from pylb.net.stream import dial
from pylb.net.upstream import Dialer

log = logging.getLogger("pylb.discovery")

FIRST = 0.25  # seconds between the first probes
FACTOR = 1.2  # each failed round waits this much longer...
CAP = 1.0  # ...up to this: a backend that listens late still joins within about a second
TIMEOUT = 1.0  # one probe's bound (a connect to a task on another node may hang)


class Joiner:
    """Probes what ``update`` says is pending; ``admit(key)`` when it passes.

    ``await nursery.start(joiner.run)`` runs it; ``http`` is the balancer's
    HTTP check (``(method, path)``), for services without checks of their own."""

    def __init__(
        self,
        admit: Callable[[str], None],
        *,
        http: tuple[str, str] | None = None,
        dialer: Dialer = dial,
        first: float = FIRST,
        factor: float = FACTOR,
        cap: float = CAP,
        timeout: float = TIMEOUT,
    ) -> None:
        self._admit = admit
        self._http = http
        self._dialer = dialer
        self._first, self._factor, self._cap, self._timeout = first, factor, cap, timeout
        self._pending: dict[str, Pending] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self.probes = 0
        self.admitted = 0

    def __repr__(self) -> str:
        return f"<Joiner pending={len(self._pending)} probes={self.probes} admitted={self.admitted}>"

    def statistics(self) -> dict[str, int]:
        return {"pending": len(self._pending), "probes": self.probes, "admitted": self.admitted}

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._pending)

    def update(self, pending: Iterable[Pending]) -> None:
        """What is pending now: new keys start being probed, keys no longer
        listed stop. A key whose probes changed (a new address) starts over."""
        wanted = {p.key: p for p in pending}
        for key in [k for k, p in self._pending.items() if wanted.get(k) != p]:
            del self._pending[key]
            scope = self._scopes.pop(key, None)
            if scope is not None:
                scope.cancel()
        for key, item in wanted.items():
            if key not in self._pending:
                self._pending[key] = item
                self._start(key)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Probe until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for key in self._pending:
                self._start(key)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def _start(self, key: str) -> None:
        if self._nursery is None or key in self._scopes:
            return
        scope = trio.CancelScope()
        self._scopes[key] = scope
        self._nursery.start_soon(self._join, self._pending[key], scope)

    async def _join(self, item: Pending, scope: trio.CancelScope) -> None:
        interval = self._first
        with scope:
            while True:
                reason = await self._round(item.probes)
                if not reason:
                    break
                log.debug("probe of %s: %s", item.name, reason)
                await trio.sleep(interval)
                interval = min(interval * self._factor, self._cap)
        if scope.cancelled_caught or self._pending.get(item.key) is not item:
            return
        del self._pending[item.key]
        self._scopes.pop(item.key, None)
        self.admitted += 1
        self._admit(item.key)

    async def _round(self, probes: tuple[Probe, ...]) -> str:
        """Every probe at once; the first reason one failed, or ``""``."""
        reasons: list[str] = []

        async def one(item: Probe) -> None:
            self.probes += 1
            http = self._http if item.inherit else item.http
            reason = await probe(self._dialer, item.backend, http, self._timeout)
            if reason:
                reasons.append(f"{item.backend}: {reason}")

        async with trio.open_nursery() as nursery:
            for item in probes:
                nursery.start_soon(one, item)
        return reasons[0] if reasons else ""
