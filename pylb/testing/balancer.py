"""The test balancer: pylb with a fault relay in front of every backend.

Owns: ``open_test_balancer`` and ``LiveBalancer``, a running ``pylb.Balancer``
whose backends are reached through ``FaultRelay``s (so ``fault()`` acts on
live connections), the record of which backend served each request
(``records``, ``served``), statistics per backend name, and ``wait_until``.
Must not know: threads, pytest (``pylb.testing.sync`` and
``pylb.testing.plugin`` wrap this for synchronous tests).

Invariants: the balancer only ever sees relay addresses, and everything a
test reads (records, statistics, ``set_backends`` results) speaks of the
backends the test gave; every wait is on trio's clock.
"""

from __future__ import annotations

import dataclasses
import random
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Protocol

import trio

import pylb
from pylb.api import require_trio
from pylb.core.errors import ConfigError
from pylb.core.models import Backend
from pylb.core.pool import SwapResult
from pylb.core.record import RequestRecord
from pylb.testing.faults import Direction, Fault
from pylb.testing.relay import Applied, FaultRelay

__all__ = ["BackendLike", "FaultScope", "LiveBalancer", "open_test_balancer"]

_TICK = 0.01  # wait_until re-reads statistics at least this often (health changes send no event)


class _Named(Protocol):
    @property
    def backend(self) -> Backend: ...


BackendLike = _Named | Backend | str
"""A backend as tests have it: an ``HttpBackend`` or ``HelloBackend`` (anything
with ``.backend``), a ``pylb.Backend``, or ``"HOST:PORT[,weight=N]"`` text."""


def _backend_of(item: BackendLike, what: str) -> tuple[Backend, str]:
    """The address and the name of a backend given in any of its forms."""
    if isinstance(item, Backend):
        return item, str(item)
    if isinstance(item, str):
        backend = Backend.parse(item, what)
        return backend, str(backend)
    found = getattr(item, "backend", None)
    if not isinstance(found, Backend):
        raise ConfigError(f"{what}: {item!r} is not a backend (give an HttpBackend, a pylb.Backend or 'HOST:PORT')")
    return found, str(getattr(item, "name", None) or found)


class FaultScope:
    """A fault applied for a ``with`` (or ``async with``) block: applied on
    entry, removed on exit, to connections already open too."""

    def __init__(self, apply: Callable[[], Applied], remove: Callable[[Applied], None], label: str) -> None:
        self._apply = apply
        self._remove = remove
        self._label = label
        self._applied: Applied | None = None

    def __repr__(self) -> str:
        return f"<FaultScope {self._label}{' active' if self._applied else ''}>"

    def __enter__(self) -> FaultScope:
        if self._applied is not None:
            raise RuntimeError(f"{self._label}: this fault is already applied")
        self._applied = self._apply()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        applied, self._applied = self._applied, None
        if applied is not None:
            self._remove(applied)

    async def __aenter__(self) -> FaultScope:
        await trio.lowlevel.checkpoint()
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)


class LiveBalancer:
    """A running test balancer, for trio code (``open_test_balancer``).

    ``url`` (https when ``tls`` was given), ``http_url``, ``https_url``;
    ``set_backends()``, ``statistics()``, ``fault()``, ``await wait_until()``;
    ``records`` (``pylb.RequestRecord`` per request, naming the real backend)
    and ``served`` (the names of the backends that served, in order)."""

    def __init__(self, nursery: trio.Nursery, seed: object, relay: bool, tls: object) -> None:
        self._nursery = nursery
        self._seed = seed
        self._relay = relay
        self._tls = tls
        self._relays: dict[tuple[str, int], FaultRelay] = {}  # by the real backend
        self._targets: dict[tuple[str, int], Backend] = {}  # relay address -> the real backend
        self._names: dict[tuple[str, int], str] = {}  # real backend -> its name
        self._changed = trio.Event()
        self.records: list[RequestRecord] = []
        self.balancer: pylb.Balancer | None = None

    # -- what tests read

    @property
    def lb(self) -> pylb.Balancer:
        if self.balancer is None:
            raise RuntimeError("the test balancer has not started yet")
        return self.balancer

    @property
    def url(self) -> str:
        """The https URL when ``tls`` was given, else the http one."""
        return self.lb.https_url if self._tls is not None else self.lb.url

    @property
    def http_url(self) -> str:
        return next(a.url for a in self.lb.addresses if a.scheme == "http")

    @property
    def https_url(self) -> str:
        return self.lb.https_url

    @property
    def urls(self) -> list[str]:
        return self.lb.urls

    @property
    def served(self) -> list[str]:
        """The name of the backend that served each request so far (``-`` for
        requests no backend answered: 503s, errors before one was picked)."""
        return [self._name_of(r.backend) for r in self.records]

    def __repr__(self) -> str:
        return f"<LiveBalancer {self.balancer!r} relays={list(self._relays.values())}>"

    def statistics(self) -> dict[str, Any]:
        """``pylb.Balancer.statistics()`` speaking of the real backends, plus
        ``backends`` (per name: pool counters, ``served``, the relay's
        ``faults`` and connections) and ``served`` (requests per name)."""
        stats: dict[str, Any] = dict(self.lb.statistics())
        pool = dict(stats["pool"])
        served = Counter(self.served)
        per_name: dict[str, dict[str, Any]] = {}
        for key in ("backends", "draining"):
            entries = []
            for entry in pool[key]:
                entry = dict(entry)
                seen = Backend.parse(entry["backend"], "statistics")
                real = self._targets.get(seen.key, seen)
                name = self._names.get(real.key)
                if name is not None:
                    entry.update(backend=str(real), name=name, served=served.get(name, 0))
                    relay = self._relays.get(real.key)
                    if relay is not None:
                        entry.update(relay.statistics())
                    per_name[name] = entry
                entries.append(entry)
            pool[key] = entries
        stats["pool"] = pool
        stats["backends"] = per_name
        stats["served"] = dict(served)
        return stats

    # -- what tests do

    def set_backends(self, backends: Sequence[BackendLike]) -> SwapResult:
        """Replace the backends (atomic, as ``pylb.Balancer.set_backends``);
        the result names the real backends."""
        result = self.lb.set_backends([self._front(b, "set_backends") for b in backends])
        return SwapResult(
            tuple(self._targets.get(b.key, b) for b in result.added),
            tuple(self._targets.get(b.key, b) for b in result.removed),
        )

    def fault(
        self, backend: BackendLike, fault: Fault, direction: Direction = "downstream", *, toxicity: float = 1.0
    ) -> FaultScope:
        """``with lb.fault(backend, Latency(200)):`` applies ``fault`` to the
        bytes ``backend`` sends (``direction="upstream"``: the bytes it is
        sent) for the block, on connections already open too. ``toxicity``:
        the share of connections it acts on (seeded by ``seed=``)."""
        relay = self._checked_relay(backend, direction, toxicity)
        return FaultScope(
            lambda: relay.apply(fault, direction, toxicity), relay.remove, f"{fault} on {relay.target} {direction}"
        )

    def _checked_relay(self, backend: BackendLike, direction: str, toxicity: float) -> FaultRelay:
        if direction not in ("upstream", "downstream"):
            raise ConfigError(f"fault: direction {direction!r} must be 'upstream' or 'downstream'")
        if not 0 <= toxicity <= 1:
            raise ConfigError(f"fault: toxicity {toxicity} must be between 0 and 1")
        return self._relay_of(backend)

    async def wait_until(self, predicate: Callable[[dict[str, Any]], object], timeout: float = 10.0) -> dict[str, Any]:
        """Wait until ``predicate(lb.statistics())`` is true and return those
        statistics; checked after every request, every relayed connection and
        every fault change (and every 10 ms, for health changes).
        Raises ``TimeoutError`` after ``timeout`` seconds (trio's clock)."""
        stats = self.statistics()
        with trio.move_on_after(timeout):
            while not predicate(stats):
                changed = self._changed
                with trio.move_on_after(_TICK):
                    await changed.wait()
                stats = self.statistics()
            return stats
        raise TimeoutError(f"wait_until: still false after {timeout} s; statistics: {stats}")

    def client_ssl_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that trusts this balancer's certificate
        (when ``tls`` was a trustme ``CA``)."""
        configure = getattr(self._tls, "configure_trust", None)
        if configure is None:
            raise ConfigError("client_ssl_context: give tls=<a trustme.CA> (or build the context from your own CA)")
        context = ssl.create_default_context()
        configure(context)
        return context

    # -- inside

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _observe(self, record: RequestRecord) -> None:
        if record.backend is not None:
            target = self._targets.get(record.backend.key)
            if target is not None:
                record = dataclasses.replace(record, backend=target)
        self.records.append(record)
        self._poke()

    def _name_of(self, backend: Backend | None) -> str:
        return "-" if backend is None else self._names.get(backend.key, str(backend))

    def _front(self, item: BackendLike, what: str) -> Backend:
        """The address the balancer must dial for ``item`` (its relay's)."""
        backend, name = _backend_of(item, what)
        self._names[backend.key] = name
        if not self._relay:
            return backend
        relay = self._relays.get(backend.key)
        if relay is None:
            relay = FaultRelay(backend, self._rng_for(name), self._poke)
            self._relays[backend.key] = relay
            self._targets[relay.backend.key] = backend
            self._nursery.start_soon(relay.run)
        if relay.target != backend:  # a new weight
            relay.target = backend
        return relay.backend

    def _rng_for(self, name: str) -> random.Random:
        return random.Random(f"{self._seed}/{name}") if self._seed is not None else random.Random()

    def _relay_of(self, item: BackendLike) -> FaultRelay:
        named = [key for key, name in self._names.items() if name == item] if isinstance(item, str) else []
        key = named[0] if named else _backend_of(item, "fault")[0].key
        relay = self._relays.get(key)
        if relay is None:
            if not self._relay:
                raise ConfigError("fault: this balancer was started with relay=False, so it has no faults")
            known = ", ".join(sorted(self._names.values())) or "none"
            raise ConfigError(f"fault: {item!r} is not a backend of this balancer (known: {known})")
        return relay


@asynccontextmanager
async def open_test_balancer(
    backends: Sequence[BackendLike] = (),
    tls: object = None,
    *,
    seed: object = None,
    relay: bool = True,
    observer: Callable[[RequestRecord], None] | None = None,
    **options: Any,
) -> AsyncIterator[LiveBalancer]:
    """Run a test balancer for the ``async with`` block (trio).

    ``backends``: ``HttpBackend``s (``open_backends``), ``HelloBackend``s,
    ``pylb.Backend``s or ``"HOST:PORT"`` text. ``tls``: as
    ``pylb.open_balancer`` takes it (a trustme CA or leaf, a trustme Blob,
    PEM text or bytes, a path, an ``ssl.SSLContext``); ``url`` is then https.
    ``seed``: makes jitter, slice sizes and toxicity repeatable.
    ``relay=False``: the balancer dials the backends directly (no faults).
    Other keywords go to ``pylb.open_balancer`` (``balance``, ``timeouts``,
    ``health``, ``maxconn``...). Leaving the block stops the balancer and
    the relays and closes their connections."""
    require_trio("pylb.testing.open_test_balancer", "run_balancer")
    async with trio.open_nursery() as nursery:
        kit = LiveBalancer(nursery, seed, relay, tls)

        def observe(record: RequestRecord) -> None:
            kit._observe(record)
            if observer is not None:
                observer(kit.records[-1])

        fronts = [kit._front(b, "backends") for b in backends]
        async with pylb.open_balancer(fronts, tls=tls, observer=observe, **options) as lb:
            kit.balancer = lb
            try:
                yield kit
            finally:
                nursery.cancel_scope.cancel()
