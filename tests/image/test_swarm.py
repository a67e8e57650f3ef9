"""Swarm discovery on a real single-node swarm, with the project's image.

The module makes the engine a swarm manager (``docker swarm init
--advertise-addr 127.0.0.1``) only when it is in no swarm, and leaves the
swarm when it ends (removing the ``docker_gwbridge`` network the swarm made),
so the swarm lives only while this module runs: a swarm manager makes
``--discover auto`` choose swarm, which other tests do not expect. An engine
already managing a swarm is used as it is and left so.

A service of ``pylb hello`` tasks on an attachable overlay network; pylb on
the same network, with the Docker socket, as users run it: a container with
its port published on 127.0.0.1, or a global service with a host-mode port.
Traffic only to 127.0.0.1 and to our containers; every wait bounded.

Outside CI these skip when Docker is unavailable; with CI=true they fail.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
import trio

from pylb.discovery import launch
from tests.discovery.docker_kit import LoadStats, in_ci, load
from tests.image.image_kit import (
    IMAGE,
    SOCKET,
    Built,
    Container,
    adocker,
    docker,
    listening_since,
    published,
    wait_serving,
)

pytestmark = pytest.mark.timeout(600)

GATEWAY = "docker_gwbridge"  # the bridge a swarm makes for its containers' outside traffic


def _swarm_state() -> tuple[str, bool]:
    text = docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
    state, _, manager = text.partition(" ")
    return state, manager == "true"


def _refuse(reason: str) -> None:
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass
class Swarm:
    """The services, networks and containers of this module, named ``<prefix>...``."""

    prefix: str = field(default_factory=lambda: f"pylbs-{os.getpid()}-{secrets.token_hex(3)}-")
    services: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)

    async def network(self, suffix: str) -> str:
        name = self.prefix + suffix
        await adocker("network", "create", "--driver", "overlay", "--attachable", name)
        self.networks.append(name)
        return name

    async def service(self, suffix: str, *args: str) -> str:
        """``docker service create -d`` (the local image: no registry to resolve it from)."""
        name = self.prefix + suffix
        self.services.append(name)
        await adocker("service", "create", "--detach", "--no-resolve-image", "--name", name, *args)
        return name

    async def run(self, suffix: str, *args: str) -> Container:
        name = self.prefix + suffix
        ident = await adocker("run", "-d", "--name", name, *args)
        self.containers.append(ident)
        return Container(ident, name)

    def cleanup(self) -> None:
        if self.containers:
            subprocess.run(["docker", "rm", "-f", *self.containers], capture_output=True, timeout=120)
        if self.services:
            subprocess.run(["docker", "service", "rm", *self.services], capture_output=True, timeout=120)
        deadline = time.monotonic() + 60
        for name in self.networks:  # removable once the services' containers are gone
            while subprocess.run(["docker", "network", "rm", name], capture_output=True, timeout=60).returncode:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)


@pytest.fixture(scope="module")
def swarm_manager(pylb_image: Built) -> Iterator[None]:
    """This engine as a swarm manager while the module runs (made and left here if it was in no swarm)."""
    state, manager = _swarm_state()
    created = False
    gateway_was_there = subprocess.run(["docker", "network", "inspect", GATEWAY], capture_output=True).returncode == 0
    if state == "inactive":
        done = subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            _refuse(f"docker swarm init --advertise-addr 127.0.0.1 failed: {done.stderr.strip()}")
        created = True
    elif state != "active" or not manager:
        _refuse(f"the engine is in a swarm ({state}) but not as a manager: these tests need a manager")
    try:
        yield
    finally:
        if created:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, timeout=120)
            if not gateway_was_there:
                subprocess.run(["docker", "network", "rm", GATEWAY], capture_output=True, timeout=60)


@pytest.fixture
def swarm(swarm_manager: None) -> Iterator[Swarm]:
    """A test's services, networks and containers, removed when it ends."""
    made = Swarm()
    try:
        yield made
    finally:
        made.cleanup()


class Arrivals:
    """An event for the first answer of each backend (``LoadStats.on_new``), and a task started then."""

    def __init__(self, nursery: trio.Nursery, then: Callable[[str], Awaitable[None]]) -> None:
        self.nursery, self.then = nursery, then
        self.changed = trio.Event()

    def __call__(self, body: str) -> None:
        self.nursery.start_soon(self.then, body)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.changed.wait()


def short_of(body: str) -> str:
    """``Hello from 1d098de65b1d:80`` -> the container's short id (a task's hostname)."""
    return body.removeprefix("Hello from ").partition(":")[0]


async def test_scaling_and_a_rolling_update_under_load(swarm: Swarm) -> None:
    """1 -> 4 tasks, a rolling update of all four (start-first), 4 -> 1, under
    20 keep-alive connections: no failed request; new tasks serve before
    their HEALTHCHECK (interval 10 s) calls them healthy."""
    network = await swarm.network("net")
    web = await swarm.service(
        "web",
        "--network", network,
        "--label", "pylb.port=80",
        "--stop-grace-period", "10s",
        "--update-order", "start-first",
        "--update-parallelism", "2",
        "--update-monitor", "2s",
        IMAGE, "hello",
    )  # fmt: skip
    socket_mount = ["-v", f"{SOCKET}:{SOCKET}:ro"]
    lb = await swarm.run("lb", "--network", network, "-p", "127.0.0.1::80", *socket_mount, IMAGE, "--discover", "swarm")
    port = published(lb, 80)
    await wait_serving(port, timeout=60)

    stats, stop = LoadStats(), trio.Event()
    health: dict[str, str] = {}
    listening: dict[str, float] = {}
    phases: list[str] = []
    begun = time.monotonic()

    def phase(text: str) -> None:
        phases.append(f"{text} at {time.monotonic() - begun:.1f} s")

    async def note_health(body: str) -> None:  # at its first answer: a scaled-away task's container is deleted
        health[body] = await adocker("inspect", "-f", "{{.State.Health.Status}}", short_of(body))
        listening[body] = await listening_since(short_of(body))

    async with trio.open_nursery() as nursery:
        arrivals = Arrivals(nursery, note_health)
        stats.on_new = arrivals
        nursery.start_soon(load, port, "localhost", 20, stop, stats, 300)
        with trio.fail_after(30):
            await arrivals.wait_until(lambda: len(stats.first_seen) == 1)
        await trio.sleep(2)

        scaled_at = time.time()
        await adocker("service", "scale", "--detach", f"{web}=4")
        phase("scaled to 4")
        with trio.fail_after(90):
            await arrivals.wait_until(lambda: len(stats.first_seen) == 4)
        phase("4 serving")
        first_four = set(stats.first_seen)
        scaled_up = [b for b in first_four if stats.first_seen[b] > scaled_at]
        await trio.sleep(3)

        await adocker("service", "update", "--force", "--quiet", web, timeout=240)  # returns once converged
        phase("rolling update converged")
        with trio.fail_after(30):
            await arrivals.wait_until(lambda: len(stats.first_seen) == 8)
        await trio.sleep(2)  # meanwhile the last task's health and listening time are noted

        await adocker("service", "scale", f"{web}=1", timeout=120)  # returns once converged
        phase("scaled to 1")
        await trio.sleep(1)
        before_last = dict(stats.served_by)
        await trio.sleep(3)
        stop.set()
    last = {b for b, n in stats.served_by.items() if n > before_last.get(b, 0)}
    initial = next(iter(stats.first_seen))
    new_tasks = [b for b in stats.first_seen if b != initial]
    starting = sum(health.get(b) == "starting" for b in new_tasks)
    after_listening = sorted(stats.first_seen[b] - listening[b] for b in new_tasks)
    to_traffic = ", ".join(
        f"{stats.first_seen[b] - scaled_at:.2f} s (listening at {listening[b] - scaled_at:.2f} s)"
        for b in sorted(scaled_up, key=stats.first_seen.__getitem__)
    )
    print(
        f"\nswarm, 1 -> 4 -> rolling update -> 1 under 20 keep-alive connections: {stats.total} requests, "
        f"{len(stats.failures)} failed; {'; '.join(phases)}; from `docker service scale` to the first request "
        f"served by each new task: {to_traffic}; from a new task's listener up "
        f"(its log line) to its first request: {after_listening[0]:.3f} s to {after_listening[-1]:.3f} s over "
        f"{len(new_tasks)} new tasks, {starting} of which served while their HEALTHCHECK still said starting"
    )
    if stats.failures:
        print("failures:", sorted({f.detail for f in stats.failures})[:10])
        tail = subprocess.run(["docker", "logs", "--tail", "60", lb.id], capture_output=True, text=True, timeout=60)
        print("pylb's log:", tail.stderr)
    assert len(first_four) == 4 and len(stats.first_seen) == 8 and len(last) == 1
    assert starting == len(new_tasks), health
    assert not stats.failures, stats.failures[:5]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_pylb_as_a_global_service_with_a_host_mode_port(swarm: Swarm) -> None:
    """The multi-node shape on one node: pylb a global service (one task per
    node), its port published in host mode, the socket of a manager, and
    ``--discover auto`` (the image's default) choosing swarm."""
    network = await swarm.network("gnet")
    web = await swarm.service(
        "gweb", "--network", network, "--env", "SERVICE_PORTS=80", "--replicas", "2", IMAGE, "hello"
    )
    port = free_port()
    lb = await swarm.service(
        "glb",
        "--mode", "global",
        "--network", network,
        "--publish", f"mode=host,target=80,published={port}",
        "--mount", f"type=bind,source={SOCKET},target={SOCKET},readonly",
        IMAGE,
    )  # fmt: skip
    await wait_serving(port, timeout=90)
    bodies: set[str] = set()
    with trio.fail_after(30):
        while len(bodies) < 2:
            bodies.add((await wait_serving(port))[1])
    task_container = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={lb}")
    log = subprocess.run(["docker", "logs", task_container], capture_output=True, text=True, timeout=60)
    text = log.stdout + log.stderr
    print(f"\nglobal pylb on a host-mode port {port}: answers from {sorted(bodies)}")
    assert "--discover auto: swarm" in text and "swarm: pylb runs in container" in text, text[-3000:]
    assert f"service {web} skipped" not in text, text[-3000:]


async def test_auto_sees_a_swarm_manager(swarm: Swarm) -> None:
    state, reason = await launch.probe_docker(os.environ)
    assert state == "manager" and "is a swarm manager (--discover docker for its containers)" in reason
    assert launch.choose_auto(state, False) == "swarm"
