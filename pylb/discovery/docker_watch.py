"""The Docker watcher: engine events in, whole snapshots out.

Owns: the I/O loop of Docker discovery. Subscribe to events first, then list
and inspect the running containers, build (``docker_build.build_snapshot``),
publish (``target.swap`` and, when they changed, the containers'
certificates); on each relevant event rebuild the whole world from a fresh
listing, bursts coalesced. Faults: reconnect with capped exponential backoff,
forever, then resync. Also the "stopping" set: a container that gets
``kill``/``stop`` leaves the pool at once, before it dies.
Must not know: how a container becomes a backend (the builder), sockets of
the data plane, the CLI.

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

import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import trio

from pylb.core.models import Backend, Snapshot
from pylb.discovery import own as own_container
from pylb.discovery.assembly import Discovered
from pylb.discovery.docker_build import DockerOptions, build_snapshot
from pylb.discovery.engine import Engine, EventStream, SdkEngine, describe_fault, docker_host
from pylb.tls import CertBundle, CertStore

log = logging.getLogger("pylb.discovery")

T = TypeVar("T")

ACTIONS = (
    "start",
    "die",
    "stop",
    "kill",
    "pause",
    "unpause",
    "health_status",
    "destroy",
    "rename",
    "connect",
    "disconnect",
)
EVENT_FILTERS: Mapping[str, list[str]] = {"type": ["container", "network"], "event": list(ACTIONS)}
# Signals that end a process by default; any other (HUP, USR1...) asks for a
# reload and the container stays, unless it is the container's own StopSignal.
_ENDING_SIGNALS = frozenset(int(s) for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL, signal.SIGTERM))


class Target(Protocol):
    """Where snapshots go: a ``Balancer`` (or a ``Pool``, or a test double).
    A ``certs`` attribute (a ``CertStore`` or None), when present, receives the
    containers' certificates."""

    def swap(self, snapshot: Snapshot) -> object: ...


class DockerWatcher:
    """Keeps ``target`` equal to what the Docker engine runs.

    ``await nursery.start(watcher.run)`` (or ``open_docker_discovery``) starts
    it; ``wait_synced()`` waits for the first listing, ``wait_until(pred)`` for
    a snapshot that satisfies ``pred``. ``connect`` builds an ``Engine``
    (default: the docker SDK, with ``environ`` for ``DOCKER_HOST`` and
    friends); ``own`` overrides the detection of pylb's own container
    (``""``: pylb runs outside any container)."""

    def __init__(
        self,
        target: Target,
        options: DockerOptions | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        connect: Callable[[], Engine] | None = None,
        own: str | None = None,
        coalesce: float = 0.1,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self.target = target
        self.options = options or DockerOptions()
        self._environ = dict(os.environ if environ is None else environ)
        self._connect = connect or (lambda: SdkEngine(self._environ))
        self.host = docker_host(self._environ)
        self._own_id = own
        self._coalesce = coalesce
        self._backoff = backoff
        self._limiter = trio.CapacityLimiter(4)
        self._listing: list[dict[str, Any]] = []
        self._own: dict[str, Any] | None = None
        self._stopping: set[str] = set()
        self._found: Discovered | None = None
        self._published: Snapshot | None = None
        self._certificates: tuple[str, ...] = ()
        self._warned: frozenset[str] = frozenset()
        self._no_cert_store_warned = False
        self._fault: str | None = None
        self._dirty = trio.Event()
        self._changed = trio.Event()
        self.connected = False
        self.listings = 0
        self.events = 0
        self.swaps = 0
        self.faults = 0
        self.sessions = 0

    # -- public ------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        """The last snapshot published (None before the first listing)."""
        return self._published

    @property
    def stopping(self) -> frozenset[str]:
        """Ids of containers told to stop that may still be running."""
        return frozenset(self._stopping)

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
            "services": len(snapshot.services) if snapshot else 0,
            "backends": _count_backends(snapshot),
            "certificates": len(self._certificates),
            "warnings": sorted(self._warned),
        }

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return (
            f"<DockerWatcher {self.host} {state} backends={_count_backends(self._published)} "
            f"listings={self.listings} events={self.events} swaps={self.swaps} faults={self.faults}>"
        )

    async def run(self, *, task_status: trio.TaskStatus[DockerWatcher] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch forever: reconnect after any fault, backing off from
        ``backoff[0]`` to ``backoff[1]`` seconds. Reports itself as started at
        once (the daemon may not answer yet)."""
        task_status.started(self)
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
            stream = await self._thread(engine.events, EVENT_FILTERS)
            try:
                if self._own_id is None:
                    self._own_id = await self._thread(self._find_own, engine)
                if self.sessions == 1:
                    log.info("docker: watching %s", self.host)
                await self._resync(engine)
                self.connected = True
                if self._fault is not None:
                    log.info("docker: reconnected to %s and resynced", self.host)
                    self._fault = None
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._rebuild_loop, engine)
                    await self._pump(stream)
                    nursery.cancel_scope.cancel()
            finally:
                _close(stream)
        finally:
            _close(engine)

    async def _pump(self, stream: EventStream) -> None:
        """Read events until the stream ends."""
        while True:
            event = await self._thread(next, stream, None)
            if event is None:
                return
            if isinstance(event, dict):
                self._on_event(event)

    async def _rebuild_loop(self, engine: Engine) -> None:
        while True:
            await self._dirty.wait()
            await trio.sleep(self._coalesce)
            self._dirty = trio.Event()
            await self._resync(engine)

    async def _resync(self, engine: Engine) -> None:
        listing, own = await self._thread(self._fetch, engine)
        self._listing, self._own = listing, own
        present = {str(c.get("Id")) for c in listing}
        self._stopping &= present
        self.listings += 1
        self._publish()

    def _fetch(self, engine: Engine) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        listing = engine.containers()
        own = engine.inspect(self._own_id) if self._own_id else None
        return listing, own

    def _find_own(self, engine: Engine) -> str:
        evidence = own_container.read_evidence(self._environ)
        for candidate in own_container.candidates(evidence):
            attrs = engine.inspect(candidate.ident)
            if attrs is not None and own_container.matches(candidate, attrs, evidence.hostname):
                log.info("docker: pylb runs in container %s", str(attrs.get("Name") or "").lstrip("/"))
                return str(attrs["Id"])
        return ""

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: Mapping[str, Any]) -> None:
        self.events += 1
        kind = event.get("Type")
        action = str(event.get("Action") or event.get("status") or "").partition(":")[0]
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if kind == "container":
            ident = str(actor.get("ID") or event.get("id") or "")
            if action == "stop" or (action == "kill" and self._ends(ident, attributes.get("signal"))):
                if ident not in self._stopping:
                    self._stopping.add(ident)
                    self._publish()  # at once, from the last listing: no new request goes there
            elif action in ("start", "destroy"):
                self._stopping.discard(ident)
        self._dirty.set()

    def _ends(self, ident: str, signal_text: object) -> bool:
        """Whether a ``kill`` with this signal stops the container."""
        number = _signal_number(signal_text)
        if number is None or number in _ENDING_SIGNALS:
            return True
        attrs = next((c for c in self._listing if c.get("Id") == ident), None)
        stop_signal = ((attrs or {}).get("Config") or {}).get("StopSignal")
        return stop_signal is not None and _signal_number(stop_signal) == number

    # -- publishing --------------------------------------------------------------------

    def _publish(self) -> None:
        """Build from the last listing (minus stopping containers) and hand the
        result to the target when it changed. Synchronous: no await between
        the build and the swap."""
        visible = [c for c in self._listing if c.get("Id") not in self._stopping]
        try:
            found = build_snapshot(visible, self._own, self.options)
        except Exception:  # the builder never raises; if it ever does, keep the last good pool
            log.exception("docker: could not build a snapshot; keeping the last one")
            return
        self._log_warnings(found.warnings)
        previous, self._found = self._found, found
        if found.snapshot != self._published:
            result = self.target.swap(found.snapshot)
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
                    "docker: containers bring SSL_CERT, but pylb has no https listener; start pylb with a default "
                    "certificate (SSL_CERT, DEFAULT_SSL_CERT or --ssl-cert) to serve https"
                )
            self._certificates = fingerprints
            return
        try:
            added, removed = store.replace_dynamic(certificates)
        except Exception as exc:  # a certificate OpenSSL refuses: keep the ones served now
            log.warning("docker: certificates not updated: %s", exc)
            return
        self._certificates = fingerprints
        if added or removed:
            log.info(
                "docker: certificates: %d added, %d removed, %d from containers",
                len(added),
                len(removed),
                len(certificates),
            )

    def _log_warnings(self, warnings: tuple[str, ...]) -> None:
        current = frozenset(warnings)
        for line in warnings:
            if line not in self._warned:
                log.warning("docker: %s", line)
        self._warned = current

    def _log_swap(self, result: object, previous: Discovered | None, found: Discovered) -> None:
        added: tuple[Backend, ...] = getattr(result, "added", ())
        removed: tuple[Backend, ...] = getattr(result, "removed", ())
        parts = [f"+{_named(found, b)}" for b in added]
        parts += [f"-{_named(previous, b)}" for b in removed]
        snapshot = found.snapshot
        log.info(
            "docker: %s%d backends in %d services, %d routes",
            f"{' '.join(parts)}; " if parts else "",
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
            log.warning("docker: %s; keeping the last %d backends, retrying", message, kept, exc_info=detail)
        self._fault = message

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=self._limiter)


@asynccontextmanager
async def open_docker_discovery(
    target: Target, options: DockerOptions | None = None, **kwargs: Any
) -> AsyncIterator[DockerWatcher]:
    """Run a ``DockerWatcher`` feeding ``target`` (a ``Balancer``) for the
    duration of the block. Does not wait for the daemon: use
    ``await watcher.wait_synced()`` for the first listing. ``kwargs`` go to
    ``DockerWatcher`` (``environ``, ``connect``, ``own``, ``coalesce``, ...)."""
    watcher = DockerWatcher(target, options, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        try:
            yield watcher
        finally:
            nursery.cancel_scope.cancel()


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


def _named(found: Discovered | None, backend: Backend) -> str:
    name = found.name_of(backend) if found is not None else None
    return f"{name} ({backend})" if name else str(backend)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _close(resource: EventStream | Engine) -> None:
    try:
        resource.close()
    except Exception as exc:  # closing is best effort: the connection may be gone already
        log.debug("docker: close failed: %s", exc)


def _expected(exc: BaseException) -> bool:
    """Faults that need no traceback: the daemon away or refusing."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("docker", "requests", "urllib3")
