"""The Swarm watcher: a manager's services and tasks in, whole snapshots out.

Owns: what Swarm discovery lists and how: services, the tasks desired
running, the swarm's networks, and where pylb itself runs (its container on
this engine, else its task: pylb may talk to a manager from another node);
the events that matter (services, nodes, networks, and this engine's
containers: a task's container that gets ``kill``/``stop`` leaves the pool at
once, keyed by its task id); and polling, since tasks have no events of
their own (every ``poll`` seconds, 2 by default; every 0.25 s while a task is
scheduled but not started, so that it is seen as soon as it starts). The loop itself (coalesce,
back off, keep the last good pool, probe what is ``starting``) is
``pylb.discovery.watcher.EngineWatcher``'s.
Must not know: how a task becomes a backend (``swarm_build``), sockets of the
data plane, the CLI.

Invariants: those of ``EngineWatcher``; a task is only ever keyed by its id
(a container event without a task id changes nothing but triggers a relist).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from pylb.core.health import HealthCheck
from pylb.discovery import own as own_container
from pylb.discovery.assembly import Discovered
from pylb.discovery.docker_build import DockerOptions
from pylb.discovery.docker_watch import ACTIONS
from pylb.discovery.engine import SdkEngine, SwarmEngine
from pylb.discovery.swarm_build import SwarmOwn, arriving, build_swarm_snapshot, own_from_container, own_from_task
from pylb.discovery.watcher import EngineWatcher, Target, log

__all__ = ["EVENT_FILTERS", "POLL_SECONDS", "SwarmWatcher", "open_swarm_discovery"]

POLL_SECONDS = 2.0
EVENT_FILTERS: Mapping[str, list[str]] = {
    "type": ["container", "network", "service", "node"],
    "event": [*ACTIONS, "create", "update", "remove"],
}
_TASK_LABEL = "com.docker.swarm.task.id"


@dataclass(frozen=True, slots=True)
class _Listing:
    services: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    networks: list[dict[str, Any]]
    own: dict[str, Any] | None  # pylb's container, when this engine runs it


class SwarmWatcher(EngineWatcher[SwarmEngine]):
    """Keeps ``target`` equal to what a swarm runs. As ``DockerWatcher``
    (``run``, ``wait_synced``, ``wait_until``, ``statistics``), with ``poll``:
    seconds between listings when no event comes (tasks have no events)."""

    kind = "swarm"
    event_filters = EVENT_FILTERS

    def __init__(
        self,
        target: Target,
        options: DockerOptions | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        connect: Callable[[], SwarmEngine] | None = None,
        own: str | None = None,
        coalesce: float = 0.1,
        backoff: tuple[float, float] = (0.1, 5.0),
        poll: float = POLL_SECONDS,
        check: HealthCheck | None = None,
    ) -> None:
        super().__init__(
            target,
            connect or (lambda: SdkEngine(self._environ)),
            environ=environ,
            own=own,
            coalesce=coalesce,
            backoff=backoff,
            poll=poll,
            check=check,
        )
        self.options = options or DockerOptions()
        self._listing = _Listing([], [], [], None)
        self._candidates: tuple[str, ...] = ()  # ids pylb's container may have (its task is matched by them)
        self._place: SwarmOwn | None = None
        self._place_told = False

    def _fetch(self, engine: SwarmEngine) -> _Listing:
        services = engine.services()
        tasks = engine.tasks()
        networks = engine.networks()
        own = engine.inspect(self._own_id) if self._own_id else None
        return _Listing(services, tasks, networks, own)

    def _take(self, listing: _Listing) -> set[str]:
        self._listing = listing
        self._place = self._where(listing)
        return {str(t.get("ID")) for t in listing.tasks}

    def _build(self, stopping: frozenset[str], probed: frozenset[str]) -> Discovered:
        listing = self._listing
        visible = [t for t in listing.tasks if t.get("ID") not in stopping]
        return build_swarm_snapshot(listing.services, visible, listing.networks, self._place, self.options, probed)

    def _find_own(self, engine: SwarmEngine) -> str:
        evidence = own_container.read_evidence(self._environ)
        candidates = own_container.candidates(evidence)
        self._candidates = tuple(c.ident for c in candidates if not c.by_hostname)
        for candidate in candidates:
            attrs = engine.inspect(candidate.ident)
            if attrs is not None and own_container.matches(candidate, attrs, evidence.hostname):
                log.info("swarm: pylb runs in container %s", str(attrs.get("Name") or "").lstrip("/"))
                return str(attrs["Id"])
        return ""

    def _where(self, listing: _Listing) -> SwarmOwn | None:
        """pylb's container on this engine, else its task among the listed ones, else nowhere."""
        if listing.own is not None:
            return own_from_container(listing.own)
        if self._candidates:
            for task in listing.tasks:
                container = str(((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID") or "")
                if container and container in self._candidates:
                    if not self._place_told:
                        self._place_told = True
                        log.info("swarm: pylb runs as task %s (its container is on another node)", task.get("ID"))
                    return own_from_task(task)
        if not self._place_told:
            self._place_told = True
            log.warning(
                "swarm: pylb runs in no container of the swarm: tasks' overlay addresses are reachable from "
                "containers on their network only; run pylb as a service (or a container) on that network"
            )
        return None

    def _stopping_key(self, ident: str, attributes: Mapping[str, Any]) -> str | None:
        task = attributes.get(_TASK_LABEL)
        return str(task) if task else None

    def _arriving(self) -> bool:
        return arriving(self._listing.tasks)

    def _stop_signal(self, key: str) -> object:
        task = next((t for t in self._listing.tasks if t.get("ID") == key), None)
        return (((task or {}).get("Spec") or {}).get("ContainerSpec") or {}).get("StopSignal")


@asynccontextmanager
async def open_swarm_discovery(
    target: Target, options: DockerOptions | None = None, **kwargs: Any
) -> AsyncIterator[SwarmWatcher]:
    """Run a ``SwarmWatcher`` feeding ``target`` (a ``Balancer``) for the
    duration of the block; as ``open_docker_discovery``. ``kwargs`` go to
    ``SwarmWatcher`` (``environ``, ``connect``, ``own``, ``poll``, ...)."""
    watcher = SwarmWatcher(target, options, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        try:
            yield watcher
        finally:
            nursery.cancel_scope.cancel()
