"""The loop both engine providers share: events in, whole snapshots out.

Owns: ``EngineWatcher``, the I/O loop of Docker and Swarm discovery. Subscribe
to events first, then list, build, publish (``target.swap`` and, when they
changed, the certificates sources bring); on each relevant event (and, for
Swarm, every ``poll`` seconds, every 0.25 s while a task is on its way)
rebuild the whole world from a fresh listing, bursts coalesced. Faults:
reconnect with capped exponential backoff, forever, then resync. The
"stopping" set: a container that gets ``kill``/``stop`` leaves the pool at
once, before it dies. The joiner: what runs but whose
HEALTHCHECK still says ``starting`` is probed by pylb and joins when the
probe passes (``pylb.discovery.joining``).
Must not know: how a container or task becomes a backend (the builders, via
the subclass's ``_build``), sockets of the data plane, the CLI.

Invariants:
- An error never empties the pool: the last good snapshot stays until a
  listing succeeds. Before the first listing the target keeps what it had
  (an empty ``Pool`` answers 503).
- A snapshot equal to the one published is not published again.
- Log lines never hold a container's environment values.
- Blocking SDK calls run in threads (``abandon_on_cancel``); cancelling the
  watcher closes the event stream, which ends the thread reading it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import trio

from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Snapshot
from pylb.discovery.assembly import Discovered
from pylb.discovery.engine import EventStream, describe_fault, docker_host
from pylb.discovery.joining import Joiner
from pylb.tls import CertBundle, CertStore

log = logging.getLogger("pylb.discovery")

T = TypeVar("T")
E = TypeVar("E", bound="Closable")

# Signals that end a process by default; any other (HUP, USR1...) asks for a
# reload and the container stays, unless it is the container's own StopSignal.
_ENDING_SIGNALS = frozenset(int(s) for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL, signal.SIGTERM))
HURRY = 0.25  # seconds between listings while something is on its way (a task scheduled, not started yet)


class Closable(Protocol):
    def events(self, filters: Mapping[str, list[str]]) -> EventStream: ...

    def close(self) -> None: ...


class Target(Protocol):
    """Where snapshots go: a ``Balancer`` (or a ``Pool``, or a test double).
    A ``certs`` attribute (a ``CertStore`` or None), when present, receives the
    containers' certificates."""

    def swap(self, snapshot: Snapshot) -> object: ...


class EngineWatcher(Generic[E]):
    """Keeps ``target`` equal to what an engine runs. Subclasses say which
    events matter (``event_filters``), what a listing is (``_fetch``, in a
    thread; ``_take``, synchronous) and how it becomes a world (``_build``).

    ``connect`` builds the engine (in a thread); ``own`` overrides the
    detection of pylb's own container (``""``: pylb runs outside any);
    ``poll``: also relist every so many seconds (None: on events only);
    ``check``: the balancer's checks, whose HTTP request probes new backends
    of services without checks of their own."""

    kind = "engine"
    event_filters: Mapping[str, list[str]] = {}

    def __init__(
        self,
        target: Target,
        connect: Callable[[], E],
        *,
        environ: Mapping[str, str] | None = None,
        own: str | None = None,
        coalesce: float = 0.1,
        backoff: tuple[float, float] = (0.1, 5.0),
        poll: float | None = None,
        check: HealthCheck | None = None,
    ) -> None:
        self.target = target
        self._environ = dict(os.environ if environ is None else environ)
        self._connect = connect
        self.host = docker_host(self._environ)
        self._own_id = own
        self._coalesce = coalesce
        self._backoff = backoff
        self._poll = poll
        self._limiter = trio.CapacityLimiter(4)
        self._stopping: set[str] = set()
        self._probed: set[str] = set()
        self._found: Discovered | None = None
        self._published: Snapshot | None = None
        self._certificates: tuple[str, ...] = ()
        self._warned: frozenset[str] = frozenset()
        self._no_cert_store_warned = False
        self._fault: str | None = None
        self._dirty = trio.Event()
        self._changed = trio.Event()
        self._hurry = trio.Event()
        http = check.http if check is not None and check.enabled else None
        self.joiner = Joiner(self._admit, http=http)
        self.connected = False
        self.listings = 0
        self.events = 0
        self.swaps = 0
        self.faults = 0
        self.sessions = 0

    # -- what a subclass says -----------------------------------------------------------

    def _fetch(self, engine: E) -> Any:
        """A fresh listing (blocking: runs in a thread)."""
        raise NotImplementedError

    def _take(self, listing: Any) -> set[str]:
        """Keep ``listing``; return the keys present in it (stopping and
        probed keys not among them are forgotten)."""
        raise NotImplementedError

    def _build(self, stopping: frozenset[str], probed: frozenset[str]) -> Discovered:
        """The world from the last listing, without what is ``stopping``."""
        raise NotImplementedError

    def _find_own(self, engine: E) -> str:
        """The id of pylb's own container (blocking), or ``""``."""
        return ""

    def _stopping_key(self, ident: str, attributes: Mapping[str, Any]) -> str | None:
        """The key that a container event about ``ident`` stops (None: none)."""
        return ident

    def _stop_signal(self, key: str) -> object:
        """The StopSignal of what ``key`` names, if known."""
        return None

    def _arriving(self) -> bool:
        """Whether the last listing has something on its way that will soon
        be worth another look (polling then hurries)."""
        return False

    # -- public ------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        """The last snapshot published (None before the first listing)."""
        return self._published

    @property
    def stopping(self) -> frozenset[str]:
        """Keys of containers (or tasks) told to stop that may still be running."""
        return frozenset(self._stopping)

    @property
    def pending(self) -> tuple[str, ...]:
        """Names of what runs but waits for pylb's probe to join."""
        return tuple(p.name for p in self._found.pending) if self._found else ()

    async def wait_synced(self) -> Snapshot:
        """Wait for the first successful listing; return its snapshot."""
        return await self.wait_until(lambda _: True)

    async def wait_until(self, predicate: Callable[[Snapshot], bool]) -> Snapshot:
        """Wait until a published snapshot satisfies ``predicate``; return it."""
        while True:
            snapshot = self._published
            if snapshot is not None and predicate(snapshot):
                return snapshot
            await self._changed.wait()

    def statistics(self) -> dict[str, object]:
        snapshot = self._published
        return {
            "host": self.host,
            "connected": self.connected,
            "sessions": self.sessions,
            "listings": self.listings,
            "events": self.events,
            "swaps": self.swaps,
            "faults": self.faults,
            "last_fault": self._fault,
            "stopping": len(self._stopping),
            "pending": len(self._found.pending) if self._found else 0,
            "joined_by_probe": self.joiner.admitted,
            "services": len(snapshot.services) if snapshot else 0,
            "backends": _count_backends(snapshot),
            "certificates": len(self._certificates),
            "warnings": sorted(self._warned),
        }

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return (
            f"<{type(self).__name__} {self.host} {state} backends={_count_backends(self._published)} "
            f"listings={self.listings} events={self.events} swaps={self.swaps} faults={self.faults}>"
        )

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch forever: reconnect after any fault, backing off from
        ``backoff[0]`` to ``backoff[1]`` seconds. Reports itself as started at
        once (the daemon may not answer yet)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.joiner.run)
            task_status.started(self)
            await self._reconnecting()

    async def _reconnecting(self) -> None:
        delay = self._backoff[0]
        while True:
            listings = self.listings
            try:
                await self._session()
                self._on_fault(None, "the event stream ended")
            except Exception as exc:
                self._on_fault(_leaf(exc))
            finally:
                self.connected = False
            if self.listings > listings:
                delay = self._backoff[0]
            await trio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    # -- one connection to the daemon ---------------------------------------------------

    async def _session(self) -> None:
        self.sessions += 1
        engine = await self._thread(self._connect)
        try:
            stream = await self._thread(engine.events, self.event_filters)
            try:
                if self._own_id is None:
                    self._own_id = await self._thread(self._find_own, engine)
                if self.sessions == 1:
                    log.info("%s: watching %s", self.kind, self.host)
                await self._resync(engine)
                self.connected = True
                if self._fault is not None:
                    log.info("%s: reconnected to %s and resynced", self.kind, self.host)
                    self._fault = None
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._rebuild_loop, engine)
                    if self._poll:
                        nursery.start_soon(self._poll_loop, self._poll)
                    await self._pump(stream)
                    nursery.cancel_scope.cancel()
            finally:
                _close(stream, self.kind)
        finally:
            _close(engine, self.kind)

    async def _pump(self, stream: EventStream) -> None:
        """Read events until the stream ends."""
        while True:
            event = await self._thread(next, stream, None)
            if event is None:
                return
            if isinstance(event, dict):
                self._on_event(event)

    async def _rebuild_loop(self, engine: E) -> None:
        while True:
            await self._dirty.wait()
            await trio.sleep(self._coalesce)
            self._dirty = trio.Event()
            await self._resync(engine)

    async def _poll_loop(self, every: float) -> None:
        """Relist every ``every`` seconds; every ``HURRY`` seconds while the
        last listing had something on its way (``_arriving``)."""
        while True:
            with trio.move_on_after(every):
                await self._hurry.wait()
            if self._hurry.is_set():
                await trio.sleep(HURRY)
            self._dirty.set()

    async def _resync(self, engine: E) -> None:
        listing = await self._thread(self._fetch, engine)
        present = self._take(listing)
        if self._arriving():
            self._hurry.set()
        elif self._hurry.is_set():
            self._hurry = trio.Event()
        self._stopping &= present
        self._probed &= present
        self.listings += 1
        self._publish()

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: Mapping[str, Any]) -> None:
        self.events += 1
        kind = event.get("Type")
        action = str(event.get("Action") or event.get("status") or "").partition(":")[0]
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if kind == "container":
            key = self._stopping_key(str(actor.get("ID") or event.get("id") or ""), attributes)
            if key is None:
                pass
            elif action == "stop" or (action == "kill" and self._ends(key, attributes.get("signal"))):
                if key not in self._stopping:
                    self._stopping.add(key)
                    self._publish()  # at once, from the last listing: no new request goes there
            elif action in ("start", "destroy"):
                self._stopping.discard(key)
        self._dirty.set()

    def _ends(self, key: str, signal_text: object) -> bool:
        """Whether a ``kill`` with this signal stops the container."""
        number = _signal_number(signal_text)
        if number is None or number in _ENDING_SIGNALS:
            return True
        stop_signal = self._stop_signal(key)
        return stop_signal is not None and _signal_number(stop_signal) == number

    # -- publishing --------------------------------------------------------------------

    def _admit(self, key: str) -> None:
        """The joiner's probe of ``key`` passed: it joins now."""
        self._probed.add(key)
        name = next((p.name for p in self._found.pending if p.key == key), key) if self._found else key
        self._say(
            "discovery", f"{self.kind}: {name} answers pylb's probe: it joins before its HEALTHCHECK says healthy"
        )
        self._publish()

    def _publish(self) -> None:
        """Build from the last listing (minus stopping containers) and hand the
        result to the target when it changed. Synchronous: no await between
        the build and the swap."""
        try:
            found = self._build(frozenset(self._stopping), frozenset(self._probed))
        except Exception:  # the builder never raises; if it ever does, keep the last good pool
            log.exception("%s: could not build a snapshot; keeping the last one", self.kind)
            return
        self._log_warnings(found.warnings)
        previous, self._found = self._found, found
        self.joiner.update(found.pending)
        if found.snapshot != self._published:
            named = dataclasses.replace(found.snapshot, names=found.names)  # for log lines and the stats page
            result = self.target.swap(named)
            self._published = found.snapshot
            self.swaps += 1
            self._log_swap(result, previous, found)
        self._publish_certificates(found.certificates)
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    def _publish_certificates(self, certificates: tuple[CertBundle, ...]) -> None:
        fingerprints = tuple(c.fingerprint for c in certificates)
        if fingerprints == self._certificates:
            return
        store: CertStore | None = getattr(self.target, "certs", None)
        if store is None:
            if certificates and not self._no_cert_store_warned:
                self._no_cert_store_warned = True
                log.warning(
                    "%s: containers bring SSL_CERT, but pylb has no https listener; start pylb with a default "
                    "certificate (SSL_CERT, DEFAULT_SSL_CERT or --ssl-cert) to serve https",
                    self.kind,
                )
            self._certificates = fingerprints
            return
        try:
            added, removed = store.replace_dynamic(certificates)
        except Exception as exc:  # a certificate OpenSSL refuses: keep the ones served now
            log.warning("%s: certificates not updated: %s", self.kind, exc)
            return
        self._certificates = fingerprints
        if added or removed:
            self._say(
                "certificates",
                f"{self.kind}: certificates: {len(added)} added, {len(removed)} removed, "
                f"{len(certificates)} from containers",
            )

    def _log_warnings(self, warnings: tuple[str, ...]) -> None:
        current = frozenset(warnings)
        for line in warnings:
            if line not in self._warned:
                log.warning("%s: %s", self.kind, line)
        self._warned = current

    def _say(self, kind: str, text: str, level: int = logging.INFO) -> None:
        """One line in the log, and an event for the stats page when the
        target keeps them (a ``Balancer``'s or the supervisor's feed)."""
        feed = getattr(self.target, "events", None)
        if feed is not None and hasattr(feed, "add"):
            feed.add(kind, text, log, level)
        else:
            log.log(level, "%s", text)

    def _log_swap(self, result: object, previous: Discovered | None, found: Discovered) -> None:
        """One line per backend added or removed (naming its container and
        service), then one saying what the pool holds now."""
        added: tuple[Backend, ...] = getattr(result, "added", ())
        removed: tuple[Backend, ...] = getattr(result, "removed", ())
        snapshot = found.snapshot
        for backend in added:
            self._say(
                "discovery",
                f"{self.kind}: backend {_named(found, backend)} added to {_services_of(snapshot, backend)}",
            )
        old = previous.snapshot if previous is not None else None
        for backend in removed:
            where = _services_of(old, backend) if old is not None else "the pool"
            self._say(
                "discovery",
                f"{self.kind}: backend {_named(previous, backend)} removed from {where} "
                "(draining: its requests in flight finish)",
            )
        log.info(
            "%s: %d backends in %d services, %d routes",
            self.kind,
            _count_backends(snapshot),
            len(snapshot.services),
            len(snapshot.routes),
        )

    def _on_fault(self, exc: BaseException | None, text: str = "") -> None:
        self.faults += 1
        message = describe_fault(exc, self.host) if exc is not None else text
        if message != self._fault:
            kept = _count_backends(self._published)
            detail = exc if exc is not None and not _expected(exc) else None
            log.warning("%s: %s; keeping the last %d backends, retrying", self.kind, message, kept, exc_info=detail)
            feed = getattr(self.target, "events", None)
            if feed is not None and hasattr(feed, "add"):
                feed.add("fault", f"{self.kind}: {message}; keeping the last {kept} backends")
        self._fault = message

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=self._limiter)


def _signal_number(value: object) -> int | None:
    text = str(value or "").strip().upper()
    if text.isdigit():
        return int(text)
    if text and not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        return None


def _count_backends(snapshot: Snapshot | None) -> int:
    if snapshot is None:
        return 0
    return len({b.key for s in snapshot.services for b in s.backends})


def _services_of(snapshot: Snapshot, backend: Backend) -> str:
    names = [s.name for s in snapshot.services if any(b.key == backend.key for b in s.backends)]
    if not names:
        return "the pool"
    return ("service " if len(names) == 1 else "services ") + ", ".join(names)


def _named(found: Discovered | None, backend: Backend) -> str:
    name = found.name_of(backend) if found is not None else None
    return f"{name} ({backend})" if name else str(backend)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _close(resource: EventStream | Closable, kind: str) -> None:
    try:
        resource.close()
    except Exception as exc:  # closing is best effort: the connection may be gone already
        log.debug("%s: close failed: %s", kind, exc)


def _expected(exc: BaseException) -> bool:
    """Faults that need no traceback: the daemon away or refusing."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("docker", "requests", "urllib3")
