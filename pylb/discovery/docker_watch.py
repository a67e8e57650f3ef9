"""The Docker watcher: engine events in, whole snapshots out.

Owns: what Docker discovery lists and how: the running containers' inspect
data and pylb's own container (found once per session from
``pylb.discovery.own``'s evidence), the events that matter (containers'
``start``, ``die``, ``kill``, ``health_status``, ..., networks' ``connect`` and
``disconnect``), and the stopping set keyed by container id. The loop itself
(subscribe, list, build, publish, coalesce, back off, probe what is
``starting``) is ``pylb.discovery.watcher.EngineWatcher``'s.
Must not know: how a container becomes a backend (``docker_build``), sockets
of the data plane, the CLI.

Invariants: those of ``EngineWatcher`` (an error never empties the pool; an
unchanged world is not published again; no environment value in a log line).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from pylb.core.health import HealthCheck
from pylb.discovery import own as own_container
from pylb.discovery.assembly import Discovered
from pylb.discovery.docker_build import DockerOptions, build_snapshot, run_key
from pylb.discovery.engine import Engine, SdkEngine
from pylb.discovery.watcher import EngineWatcher, Target, log

__all__ = ["ACTIONS", "EVENT_FILTERS", "DockerWatcher", "Target", "open_docker_discovery"]

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


class DockerWatcher(EngineWatcher[Engine]):
    """Keeps ``target`` equal to what the Docker engine runs.

    ``await nursery.start(watcher.run)`` (or ``open_docker_discovery``) starts
    it; ``wait_synced()`` waits for the first listing, ``wait_until(pred)`` for
    a snapshot that satisfies ``pred``. ``connect`` builds an ``Engine``
    (default: the docker SDK, with ``environ`` for ``DOCKER_HOST`` and
    friends); ``own`` overrides the detection of pylb's own container
    (``""``: pylb runs outside any container); ``check`` is the balancer's
    checks (its HTTP request probes containers still ``starting``)."""

    kind = "docker"
    event_filters = EVENT_FILTERS

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
        check: HealthCheck | None = None,
    ) -> None:
        super().__init__(
            target,
            connect or (lambda: SdkEngine(self._environ)),
            environ=environ,
            own=own,
            coalesce=coalesce,
            backoff=backoff,
            check=check,
        )
        self.options = options or DockerOptions()
        self._listing: list[dict[str, Any]] = []
        self._own: dict[str, Any] | None = None

    def _fetch(self, engine: Engine) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        listing = engine.containers()
        own = engine.inspect(self._own_id) if self._own_id else None
        return listing, own

    def _take(self, listing: tuple[list[dict[str, Any]], dict[str, Any] | None]) -> set[str]:
        self._listing, self._own = listing
        return {str(c.get("Id")) for c in self._listing} | {run_key(c) for c in self._listing}

    def _build(self, stopping: frozenset[str], probed: frozenset[str]) -> Discovered:
        visible = [c for c in self._listing if c.get("Id") not in stopping]
        return build_snapshot(visible, self._own, self.options, probed)

    def _find_own(self, engine: Engine) -> str:
        evidence = own_container.read_evidence(self._environ)
        for candidate in own_container.candidates(evidence):
            attrs = engine.inspect(candidate.ident)
            if attrs is not None and own_container.matches(candidate, attrs, evidence.hostname):
                log.info("docker: pylb runs in container %s", str(attrs.get("Name") or "").lstrip("/"))
                return str(attrs["Id"])
        return ""

    def _stop_signal(self, key: str) -> object:
        attrs = next((c for c in self._listing if c.get("Id") == key), None)
        return ((attrs or {}).get("Config") or {}).get("StopSignal")


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
