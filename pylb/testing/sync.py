"""The test kit for synchronous code: trio in a thread, driven from outside.

Owns: ``Portal`` (a ``trio.run`` in a thread of its own, async context
managers held open in it, calls into it with ``trio.from_thread``),
``ThreadedBalancer`` (a ``LiveBalancer`` seen from another thread: the same
names, ``wait_until`` blocking) and the context managers ``run_balancer``
and ``run_backends``, which also serve asyncio programs (they are thread
based). Must not know: pytest (``pylb.testing.plugin`` builds on this).

Invariants: trio objects are only touched in the portal's thread; a
context manager entered through a portal is exited in the task that entered
it, in the reverse order of entering, when the portal closes at the latest.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Protocol, TypeVar

import trio

from pylb.core.pool import SwapResult
from pylb.core.record import RequestRecord
from pylb.testing.backends import HttpBackend, open_backends
from pylb.testing.balancer import BackendLike, FaultScope, LiveBalancer, open_test_balancer
from pylb.testing.faults import Direction, Fault

__all__ = [
    "BackendFactory",
    "BalancerFactory",
    "Portal",
    "ThreadedBalancer",
    "run_backends",
    "run_balancer",
]

T = TypeVar("T")


class _Held:
    """One async context manager held open in a portal's task."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.done = trio.Event()
        self.error: BaseException | None = None


class Portal:
    """A trio loop in a thread of its own (started on first use), and the way
    in from other threads. ``close()`` exits what it holds and stops it."""

    def __init__(self, name: str = "pylb-testing") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._ident: int | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._held: list[_Held] = []
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        state = "running" if self._thread is not None and self._thread.is_alive() else "stopped"
        return f"<Portal {self._name} {state} holding={len(self._held)}>"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise RuntimeError(f"{self._name}: the trio thread failed to start") from self._failure

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the thread that started the portal
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._ident = threading.get_ident()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await afn(*args)`` in the portal's loop and return its result."""
        self.start()
        if threading.get_ident() == self._ident:
            raise RuntimeError("this blocks: call it from another thread than the test kit's trio thread")
        result: T = _outside_trio(trio.from_thread.run, afn, *args, trio_token=self._token)
        return result

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the portal's loop (directly when already there)."""
        self.start()
        if threading.get_ident() == self._ident:
            return fn(*args)
        result: T = _outside_trio(trio.from_thread.run_sync, fn, *args, trio_token=self._token)
        return result

    def enter(self, manager: AbstractAsyncContextManager[T]) -> T:
        """Enter ``manager`` in a task of the portal and keep it open until
        ``close()``; return what it yields."""
        self.start()
        held = _Held()
        value: T = self.run(self._start_holding, manager, held)
        self._held.append(held)
        return value

    async def _start_holding(self, manager: AbstractAsyncContextManager[T], held: _Held) -> T:
        assert self._nursery is not None
        value: T = await self._nursery.start(self._hold, manager, held)
        return value

    async def _hold(
        self, manager: AbstractAsyncContextManager[T], held: _Held, *, task_status: trio.TaskStatus[T]
    ) -> None:
        started = False
        try:
            async with manager as value:
                task_status.started(value)
                started = True
                await held.release.wait()
        except Exception as exc:
            if not started:
                raise
            held.error = exc
        finally:
            held.done.set()

    def close(self) -> None:
        """Exit every held context manager (the last entered first), stop the
        loop and join its thread; re-raise the first error an exit raised."""
        if self._thread is None:
            return
        errors: list[BaseException] = []
        while self._held:
            held = self._held.pop()
            self.run_sync(held.release.set)
            self.run(held.done.wait)
            if held.error is not None:
                errors.append(held.error)
        if self._stop is not None:
            self.run_sync(self._stop.set)
        self._thread.join(30)
        if errors:
            raise errors[0]


def _outside_trio(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, from a helper thread when this thread runs
    another trio loop (a trio test using the synchronous fixtures: trio
    refuses ``from_thread`` calls from inside any trio run)."""
    if not trio.lowlevel.in_trio_run():
        return call(*args, **kwargs)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call(*args, **kwargs))
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    helper = threading.Thread(target=target, name="pylb-testing-call", daemon=True)
    helper.start()
    helper.join()
    if failure:
        raise failure[0]
    return outcome[0]


class ThreadedBalancer:
    """A running test balancer seen from outside its trio thread
    (``run_balancer``, the ``pylb_balancer`` fixture): the names of
    ``LiveBalancer``, with ``wait_until`` blocking the calling thread."""

    def __init__(self, live: LiveBalancer, portal: Portal) -> None:
        self._live = live
        self._portal = portal
        self.url: str = live.url
        self.urls: list[str] = live.urls

    def __repr__(self) -> str:
        return f"<ThreadedBalancer {self._portal.run_sync(repr, self._live)}>"

    @property
    def http_url(self) -> str:
        return self._live.http_url

    @property
    def https_url(self) -> str:
        return self._live.https_url

    @property
    def records(self) -> list[RequestRecord]:
        """``pylb.RequestRecord`` per request so far, naming the real backends."""
        return self._portal.run_sync(lambda: list(self._live.records))

    @property
    def served(self) -> list[str]:
        """The name of the backend that served each request so far."""
        return self._portal.run_sync(lambda: self._live.served)

    def statistics(self) -> dict[str, Any]:
        return self._portal.run_sync(self._live.statistics)

    def set_backends(self, backends: Sequence[BackendLike]) -> SwapResult:
        return self._portal.run_sync(self._live.set_backends, list(backends))

    def fault(
        self, backend: BackendLike, fault: Fault, direction: Direction = "downstream", *, toxicity: float = 1.0
    ) -> FaultScope:
        """``with lb.fault(backend, Latency(200)):`` as ``LiveBalancer.fault``."""
        relay = self._portal.run_sync(self._live._checked_relay, backend, direction, toxicity)
        return FaultScope(
            lambda: self._portal.run_sync(relay.apply, fault, direction, toxicity),
            lambda applied: self._portal.run_sync(relay.remove, applied),
            f"{fault} on {relay.target} {direction}",
        )

    def wait_until(self, predicate: Callable[[dict[str, Any]], object], timeout: float = 10.0) -> dict[str, Any]:
        """Block until ``predicate(lb.statistics())`` is true (see
        ``LiveBalancer.wait_until``); ``TimeoutError`` after ``timeout`` s.
        From asyncio: ``await asyncio.to_thread(lb.wait_until, predicate)``."""
        return self._portal.run(self._live.wait_until, predicate, timeout)

    def client_ssl_context(self) -> Any:
        return self._live.client_ssl_context()


class BackendFactory(Protocol):
    """The ``pylb_backends`` fixture: ``pylb_backends(n)`` -> n running backends."""

    def __call__(
        self, count: int = 1, *, names: Sequence[str] | None = None, prefix: str = "backend-"
    ) -> list[HttpBackend]: ...


class BalancerFactory(Protocol):
    """The ``pylb_balancer`` fixture: ``pylb_balancer(backends, tls=None, **options)``."""

    def __call__(
        self, backends: Sequence[BackendLike] = (), tls: object = None, **options: Any
    ) -> ThreadedBalancer: ...


def start_backends(
    portal: Portal, count: int = 1, *, names: Sequence[str] | None = None, prefix: str = "backend-"
) -> list[HttpBackend]:
    """Start backends in ``portal``; they stop when it closes."""
    return portal.enter(open_backends(count, names=names, prefix=prefix))


def start_balancer(
    portal: Portal, backends: Sequence[BackendLike] = (), tls: object = None, **options: Any
) -> ThreadedBalancer:
    """Start a test balancer in ``portal``; it stops when the portal closes."""
    return ThreadedBalancer(portal.enter(open_test_balancer(list(backends), tls, **options)), portal)


@contextmanager
def run_backends(
    count: int = 1, *, names: Sequence[str] | None = None, prefix: str = "backend-"
) -> Iterator[list[HttpBackend]]:
    """``with run_backends(2) as backends:`` runs ``HttpBackend``s in a thread
    of their own for the block (synchronous code, asyncio programs)."""
    portal = Portal("pylb-backends")
    try:
        yield start_backends(portal, count, names=names, prefix=prefix)
    finally:
        portal.close()


@contextmanager
def run_balancer(
    backends: Sequence[BackendLike] = (), tls: object = None, **options: Any
) -> Iterator[ThreadedBalancer]:
    """``with run_balancer(backends) as lb:`` runs a test balancer in a thread
    of its own for the block: the object the ``pylb_balancer`` fixture gives,
    for code outside pytest and for asyncio programs. Arguments as
    ``open_test_balancer``."""
    portal = Portal("pylb-balancer")
    try:
        yield start_balancer(portal, backends, tls, **options)
    finally:
        portal.close()
