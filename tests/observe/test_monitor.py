"""MONITOR_URI: pylb answers it itself, on both drivers; ``pylb healthcheck`` asks it.

200 while pylb serves; 503 while no backend of the default service is up
(HAProxy's ``monitor fail if nbsrv lt 1``) and while it drains. Requests
for other paths go to the backends as before.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio
import trio.testing

import pylb
from pylb.core.health import HealthCheck
from pylb.testing import open_hellos
from tests.e2e.e2e_kit import Peer, port_of
from tests.observe.kit import free_port, get, hello
from tests.observe.kit import pylb as run_pylb

pytestmark = pytest.mark.usefixtures("driver")
NO_CHECKS = HealthCheck(enabled=False)


async def ask(lb: pylb.Balancer, path: str = "/ping", method: str = "GET") -> tuple[int, bytes]:
    peer = await Peer.connect(port_of(lb.url))
    try:
        await peer.send(f"{method} {path} HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n".encode())
        answer = await peer.read_response(method)
        return answer.status, answer.body
    finally:
        await peer.aclose()


async def test_200_while_a_backend_is_up_503_when_none_and_other_paths_still_proxied() -> None:
    async with open_hellos(1) as hellos, pylb.open_balancer(
        [hellos[0].backend], monitor_uri="/ping", health=NO_CHECKS, stats="127.0.0.1:0"
    ) as lb:
        assert await ask(lb) == (200, b"OK: serving\n")
        status, body = await ask(lb, "/")
        assert status == 200 and b"hello-1" in body
        assert await ask(lb, "/ping?x=1") == (200, b"Hello from hello-1\n")  # not the monitor URI: proxied
        assert (await ask(lb, "/ping", "HEAD"))[0] == 200
        lb.set_backends([])
        status, body = await ask(lb)
        assert status == 503 and b"no backend up" in body
        assert sum(row["monitor"] for row in lb.statistics()["listeners"]) == 3
        assert hellos[0].requests == 2  # the monitor URI never reached the backend


async def test_503_when_the_default_services_backends_are_down() -> None:
    async with trio.open_nursery() as nursery:
        dead = trio.socket.socket()
        await dead.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
        port = dead.getsockname()[1]
        check = HealthCheck(inter=0.05, fall=1, rise=1)
        async with pylb.open_balancer([f"127.0.0.1:{port}"], monitor_uri="/health", health=check) as lb:
            with trio.fail_after(10):
                while lb.pool.states()[0].healthy:
                    await trio.sleep(0.05)
            assert (await ask(lb, "/health"))[0] == 503
        dead.close()
        nursery.cancel_scope.cancel()


async def test_503_while_draining() -> None:
    """A monitor request whose head was on its way when the drain began (the
    connection not idle, so kept) gets 503 and Connection: close."""
    async with open_hellos(1) as hellos, pylb.open_balancer(
        [hellos[0].backend], monitor_uri="/ping", health=NO_CHECKS
    ) as lb:
        peer = await Peer.connect(port_of(lb.url))
        await peer.send(b"GET /ping HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await peer.read_response()).status == 200
        await peer.send(b"GET /ping HTTP/1.1\r\nHo")  # half a head: the connection is busy, not idle
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lb.drain, 5.0)
            await trio.testing.wait_all_tasks_blocked()  # the drain began (it says so before it waits)
            assert lb.draining
            await peer.send(b"st: a\r\n\r\n")
            answer = await peer.read_response()
            assert answer.status == 503 and answer.header("connection") == "close"
            await peer.aclose()


def test_healthcheck_asks_the_monitor_uri(driver: str) -> None:
    if driver == "task":
        pytest.skip("one run is enough: the CLI")
    with hello("web1") as web:
        with run_pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}", "--health-check", "none",
                      MONITOR_URI="/ping") as lb:  # fmt: skip
            done = _healthcheck(lb.url, MONITOR_URI="/ping")
            assert done.returncode == 0 and "/ping (MONITOR_URI)" not in done.stderr
            assert "answered 200 OK" in done.stderr
    with run_pylb("--bind", "127.0.0.1:0", "--backend", "127.0.0.1:9", "--health-check", "inter 50 fall 1",
                  MONITOR_URI="/ping") as lb:  # fmt: skip
        for _ in range(100):  # the dead backend is marked down after its first failed check
            done = _healthcheck(lb.url, MONITOR_URI="/ping")
            if done.returncode == 1:
                break
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"pylb healthcheck: unhealthy: {lb.url}/ping (MONITOR_URI) answered 503 Service Unavailable"
        )


def test_monitor_port_opens_a_listener_that_answers_it(driver: str) -> None:
    if driver == "task":
        pytest.skip("one run is enough: the CLI")
    port = free_port()
    with hello("web1") as web, run_pylb(
        "--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}",
        MONITOR_URI="/up", MONITOR_PORT=str(port),
    ):  # fmt: skip
        status, _, body = get(f"http://127.0.0.1:{port}/up")
        assert (status, body) == (200, b"OK: serving\n")
        done = _healthcheck(None, MONITOR_URI="/up", MONITOR_PORT=str(port), PYLB_BIND="127.0.0.1:1")
        assert done.returncode == 0, done.stderr
        assert f"http://127.0.0.1:{port}/up answered 200 OK" in done.stderr


def _healthcheck(url: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    from tests.observe.kit import _env

    args = ["--url", f"{url}{env['MONITOR_URI']}"] if url else []
    return subprocess.run(
        [sys.executable, "-m", "pylb", "healthcheck", *args],
        capture_output=True, text=True, timeout=30, env=_env(**env), stdin=subprocess.DEVNULL,
    )  # fmt: skip
