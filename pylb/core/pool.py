"""The pool: the current snapshot plus live counters, swapped atomically.

Owns: which backends take new requests right now, per service, and their
in-flight counts; the draining set of backends that left the snapshot; which
service a host and path go to (``resolve()``, remembered until the next swap).
Must not know: sockets, connection reuse (``pylb.net.upstream``) or where
snapshots come from (``pylb.discovery``).

Invariants:
- ``swap()`` is synchronous and atomic: once it returns, no ``acquire()``
  returns a backend that the new snapshot lacks.
- Every ``acquire()`` is paired with exactly one ``release()``; counters never
  go negative, and a draining backend is forgotten when its last request ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import NamedTuple

from pylb.core.balancer import Balancer, Cursor, LocalCursor, make_balancer
from pylb.core.errors import NoBackend
from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Snapshot
from pylb.core.routing import RouteTable
from pylb.core.state import BackendState

_RESOLVED = 1024  # resolve() answers remembered (all forgotten when full, and at every swap)
_RESOLVED_KEY = 256  # for a host and path of at most this many bytes (the memo stays small)


class SwapResult(NamedTuple):
    added: tuple[Backend, ...]
    removed: tuple[Backend, ...]


class Pool:
    """Hot-swappable backends. Create empty (``Pool()``, answering 503 until
    the first snapshot) or with a snapshot; ``swap()`` to change the world."""

    def __init__(self, snapshot: Snapshot | None = None, cursor: Cursor | None = None) -> None:
        self._cursor: Cursor = cursor if cursor is not None else LocalCursor()
        self._snapshot: Snapshot | None = None
        self._live: dict[tuple[str, int], BackendState] = {}
        self._draining: dict[tuple[str, int], BackendState] = {}
        self._balancers: dict[str, Balancer] = {}
        self._routes = RouteTable()
        self._resolved: dict[tuple[bytes | None, bytes, str, int], str] = {}  # resolve()'s answers, per snapshot
        self.force_ssl_services: frozenset[str] = frozenset()  # read on every request: an attribute
        self._checks: dict[tuple[str, int], HealthCheck] = {}
        self._tcp_only: set[tuple[str, int]] = set()
        self._names: dict[str, str] = {}
        self._swaps = 0
        if snapshot is not None:
            self.swap(snapshot)

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def swap(self, snapshot: Snapshot) -> SwapResult:
        """Make ``snapshot`` the world; return the backends added and removed.

        Removed backends drain: requests in flight finish, none start."""
        old = self._live
        live: dict[tuple[str, int], BackendState] = {}
        for service in snapshot.services:
            for backend in service.backends:
                state = live.get(backend.key) or old.get(backend.key) or self._draining.pop(backend.key, None)
                if state is None:
                    state = BackendState(backend)
                state.backend = backend
                state.draining = False
                live[backend.key] = state
        removed = [state for key, state in old.items() if key not in live]
        for state in removed:
            state.draining = True
            if state.in_flight:
                self._draining[state.backend.key] = state
        self._balancers = {
            s.name: make_balancer(s.balance, [live[b.key] for b in s.backends], self._cursor, s.name)
            for s in snapshot.services
        }
        self._routes = RouteTable(snapshot.routes)
        self._resolved = {}
        self.force_ssl_services = frozenset(s.name for s in snapshot.services if s.force_ssl)
        checks: dict[tuple[str, int], HealthCheck] = {}
        for service in snapshot.services:  # a backend in several services: the first one's check
            if service.check is not None:
                for backend in service.backends:
                    checks.setdefault(backend.key, service.check)
        self._checks = checks
        tcp_services = {t.service for t in snapshot.tcp_ports}
        tcp = {b.key for s in snapshot.services if s.name in tcp_services for b in s.backends}
        self._tcp_only = tcp - {b.key for s in snapshot.services if s.name not in tcp_services for b in s.backends}
        self._live = live
        self._snapshot = snapshot
        if snapshot.names or self._names:
            self._names = {**self._names, **dict(snapshot.names)}  # a draining backend keeps its name
            if len(self._names) > 4 * len(live) + 64:
                self._names = dict(snapshot.names)
        self._swaps += 1
        added = tuple(s.backend for key, s in live.items() if key not in old)
        return SwapResult(added, tuple(s.backend for s in removed))

    def resolve(self, host: bytes | None, path: bytes, scheme: str, port: int) -> str:
        """The service that takes a request for ``host`` and ``path`` on a
        ``scheme`` listener at ``port``: the best route's, else the default.
        Raises BadRequest (400) for an invalid Host, NoBackend (503) when no
        service takes it."""
        key = (host, path, scheme, port)
        name = self._resolved.get(key)
        if name is not None:
            return name  # clients ask for the same few hosts and paths again and again
        snapshot = self._snapshot
        if snapshot is None:
            raise NoBackend("no backends yet: waiting for the first discovery listing")
        name = self._routes.resolve(host, path, scheme, port)
        if name is None:
            name = snapshot.default
            if name is None:
                shown = host.decode("latin-1") if host is not None else "(no Host header)"
                raise NoBackend(f"no service is configured for host {shown}")
        if len(path) + len(host or b"") <= _RESOLVED_KEY:
            if len(self._resolved) >= _RESOLVED:
                self._resolved.clear()
            self._resolved[key] = name
        return name

    def check_for(self, state: BackendState, default: HealthCheck) -> HealthCheck:
        """The active checks for ``state``'s backend: its service's, else
        ``default``; never an HTTP check for a backend only behind a TCP port
        that discovery opened (``TCP_PORTS``): a TCP connect at that pace."""
        key = state.backend.key
        check = self._checks.get(key, default)
        if check.http is not None and key in self._tcp_only:
            return dataclasses.replace(check, http=None)
        return check

    def force_ssl(self, service: str) -> bool:
        """Whether plain-HTTP requests to ``service`` are redirected to https."""
        return service in self.force_ssl_services

    def acquire(
        self, service: str | None = None, key: bytes = b"", avoid: Collection[BackendState] = ()
    ) -> BackendState:
        """Choose a backend of ``service`` (default: the snapshot's default
        service) and count one request in flight on it. ``key`` is the
        client's address (for ``source``); backends in ``avoid`` (tried and
        failed for this request) are skipped while others are up. Raises
        NoBackend."""
        snapshot = self._snapshot
        if snapshot is None:
            raise NoBackend("no backends yet: waiting for the first discovery listing")
        name = service if service is not None else snapshot.default
        balancer = self._balancers.get(name) if name is not None else None
        if balancer is None:
            raise NoBackend("no service takes this request")
        state = balancer.pick(key)
        if avoid and state is not None and state in avoid:
            for _ in range(len(self._live)):
                state = balancer.pick(key)
                if state is None or state not in avoid:
                    break
            else:
                state = None
        if state is None:
            raise NoBackend(f"service {name!r} has no backend up")
        state.in_flight += 1
        state.requests += 1
        return state

    def has_other(self, service: str, tried: Collection[BackendState]) -> bool:
        """Whether ``service`` has a backend up that is not in ``tried``."""
        snapshot = self._snapshot
        found = snapshot.service(service) if snapshot is not None else None
        if found is None:
            return False
        return any(self._live[b.key].up and self._live[b.key] not in tried for b in found.backends)

    def release(self, state: BackendState, failed: bool = False) -> None:
        """End one request on ``state``; count it as failed if ``failed``."""
        if state.in_flight > 0:
            state.in_flight -= 1
        if failed:
            state.failures += 1
        if state.draining and state.in_flight == 0:
            self._draining.pop(state.backend.key, None)

    @property
    def names(self) -> dict[str, str]:
        """``"host:port"`` -> the name discovery gave (``Snapshot.names``), draining backends' included."""
        return self._names

    def label(self, backend: Backend) -> str:
        """``web1 (10.0.0.5:80)`` when discovery named the backend, else its address."""
        address = str(backend)
        name = self._names.get(address)
        return f"{name} ({address})" if name else address

    def default_up(self) -> bool:
        """Whether the default service has a backend that takes requests now
        (the monitor URI's question: HAProxy's ``nbsrv``)."""
        snapshot = self._snapshot
        service = snapshot.service(snapshot.default) if snapshot is not None and snapshot.default else None
        return service is not None and any(self._live[b.key].up for b in service.backends)

    def is_live(self, backend: Backend) -> bool:
        """Whether connections to ``backend`` are worth keeping for reuse."""
        return backend.key in self._live

    def states(self) -> list[BackendState]:
        return [*self._live.values(), *self._draining.values()]

    def statistics(self) -> dict[str, object]:
        return {
            "swaps": self._swaps,
            "backends": [s.statistics() for s in self._live.values()],
            "draining": [s.statistics() for s in self._draining.values()],
            "in_flight": sum(s.in_flight for s in self.states()),
        }

    def __repr__(self) -> str:
        return (
            f"<Pool services={len(self._balancers)} live={len(self._live)} "
            f"draining={len(self._draining)} swaps={self._swaps}>"
        )
