"""Discovery: providers that find backends and emit whole snapshots.

This package only re-exports; each module says what it owns. A provider is a
pure builder (``docker_build.build_snapshot``, ``swarm_build.build_swarm_snapshot``,
``links.build_from_links``: plain data in, ``Discovered`` out) plus, for
Docker and Swarm, a thin I/O loop (``docker_watch.DockerWatcher``,
``swarm_watch.SwarmWatcher``, both ``watcher.EngineWatcher``). Providers never
touch a client's connection: they hand snapshots to ``Balancer.swap`` (and
probe new backends whose HEALTHCHECK is still starting: ``joining``).

Example (a trio program or a test)::

    async with pylb.open_balancer() as lb, open_docker_discovery(lb) as watcher:
        await watcher.wait_synced()
        ...  # lb now balances across the labelled containers
"""

from pylb.discovery.assembly import Discovered, Member
from pylb.discovery.docker_build import DockerOptions, build_snapshot
from pylb.discovery.docker_watch import DockerWatcher, open_docker_discovery
from pylb.discovery.links import build_from_links, has_links
from pylb.discovery.swarm_build import SwarmOwn, build_swarm_snapshot
from pylb.discovery.swarm_watch import SwarmWatcher, open_swarm_discovery

__all__ = [
    "Discovered",
    "DockerOptions",
    "DockerWatcher",
    "Member",
    "SwarmOwn",
    "SwarmWatcher",
    "build_from_links",
    "build_snapshot",
    "build_swarm_snapshot",
    "has_links",
    "open_docker_discovery",
    "open_swarm_discovery",
]
