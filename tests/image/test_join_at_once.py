"""Join at once: a ``pylb hello`` container from the image, whose HEALTHCHECK
says ``starting`` for its first 10 s, gets traffic as soon as it listens:
pylb probes it itself instead of waiting for Docker to call it healthy.

pylb runs in-process (the library and Docker discovery, reaching containers
on their bridge network); the container is the image's, with the image's
HEALTHCHECK. Traffic only to 127.0.0.1 and to these containers; bounded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
import trio

import pylb
from pylb.discovery import open_docker_discovery
from tests.discovery.docker_kit import LoadStats, load
from tests.image.image_kit import IMAGE, Box, Built, adocker, listening_since, wait_serving

pytestmark = pytest.mark.timeout(300)


class Arrivals:
    """Events for the first answer of each backend (``LoadStats.on_new``), and what to do then."""

    def __init__(self, nursery: trio.Nursery, then: Callable[[str], Awaitable[None]]) -> None:
        self.nursery, self.then = nursery, then
        self.events: dict[str, trio.Event] = {}

    def __call__(self, body: str) -> None:
        self.events.setdefault(body, trio.Event()).set()
        self.nursery.start_soon(self.then, body)

    async def wait(self, body: str) -> None:
        await self.events.setdefault(body, trio.Event()).wait()


async def test_a_container_gets_traffic_while_its_healthcheck_still_says_starting(box: Box, pylb_image: Built) -> None:
    network = await box.network()
    host = f"{box.prefix}join.test"
    run = ["--network", network, "--label", f"pylb.host={host}", IMAGE, "hello"]
    first = await box.run("web1", *run)
    async with pylb.open_balancer(bind="127.0.0.1:0") as lb, open_docker_discovery(lb, own="") as watcher:
        port = lb.addresses[0].port
        await wait_serving(port, host)  # the first joined by probe too: no waiting for its healthy
        stats, stop = LoadStats(), trio.Event()
        health_when_first_served: dict[str, str] = {}
        async with trio.open_nursery() as nursery:

            async def note_health(body: str) -> None:
                short = body.removeprefix("Hello from ").partition(":")[0]
                health_when_first_served[short] = await adocker("inspect", "-f", "{{.State.Health.Status}}", short)
                noted.set()

            noted = trio.Event()
            arrivals = Arrivals(nursery, note_health)
            stats.on_new = arrivals
            nursery.start_soon(load, port, host, 10, stop, stats, 60)
            with trio.fail_after(20):
                await arrivals.wait(first.hello)
            started = time.time()
            second = await box.run("web2", *run)
            with trio.fail_after(30):
                await arrivals.wait(second.hello)
                while second.short not in health_when_first_served:
                    await noted.wait()
                    noted = trio.Event()
            listening = await listening_since(second.id)
            await trio.sleep(1)
            stop.set()
    served = stats.first_seen[second.hello]
    print(
        f"\njoin at once: `docker run` of a pylb hello container (image HEALTHCHECK, interval 10 s) under load: "
        f"listening {listening - started:.2f} s after `docker run` began, first request served by it "
        f"{served - listening:.3f} s after it listened ({served - started:.2f} s after `docker run` began); "
        f"its health was {health_when_first_served[second.short]!r} then; {stats.total} requests, "
        f"{len(stats.failures)} failed; pylb joined {watcher.joiner.admitted} containers by probe"
    )
    assert health_when_first_served[second.short] == "starting", "it got traffic only once Docker said healthy"
    assert not stats.failures, stats.failures[:5]
