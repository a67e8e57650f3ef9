"""Docker discovery against a real engine: containers from an image built
locally, pylb as a subprocess (the CLI) or in-process (the library).

Outside CI these skip when Docker is unavailable; with CI=true they fail.
Bounded everywhere; traffic only to 127.0.0.1 and to our own containers.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from docker_kit import (
    Container,
    DockerKit,
    LoadStats,
    docker,
    get_once,
    in_ci,
    load,
    wait_for_output,
    wait_served_by,
)

import pylb
from pylb.core.models import Snapshot
from pylb.core.pool import SwapResult
from pylb.discovery import DockerOptions, DockerWatcher, open_docker_discovery
from tests.conftest import run_pylb

pytestmark = pytest.mark.timeout(120)


def ip_of(container: Container) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container.id).split()[0]


def addresses(snapshot: Snapshot) -> set[str]:
    return {str(b) for s in snapshot.services for b in s.backends}


class Recorder:
    """A target that forwards to a balancer and notes when each backend left."""

    def __init__(self, lb: pylb.Balancer) -> None:
        self.lb = lb
        self.certs = lb.certs
        self.removed_at: dict[str, float] = {}

    def swap(self, snapshot: Snapshot) -> SwapResult:
        result = self.lb.swap(snapshot)
        now = time.monotonic()
        for backend in result.removed:
            self.removed_at.setdefault(str(backend), now)
        return result


@asynccontextmanager
async def balancer_with_discovery(**kwargs: object) -> AsyncIterator[tuple[pylb.Balancer, DockerWatcher, Recorder]]:
    options = kwargs.pop("options", None)
    async with pylb.open_balancer() as lb:
        recorder = Recorder(lb)
        async with open_docker_discovery(recorder, options, **kwargs) as watcher:  # type: ignore[arg-type]
            with trio.fail_after(20):
                await watcher.wait_synced()
            yield lb, watcher, recorder


# -- the library, in-process ---------------------------------------------------------------


async def test_two_labelled_containers_alternate(kit: DockerKit) -> None:
    host = kit.host("alternate")
    a = await kit.arun(labels={"pylb.host": host})
    b = await kit.arun(labels={"pylb.host": host})
    async with balancer_with_discovery() as (lb, watcher, _):
        wanted = {f"{ip_of(a)}:80", f"{ip_of(b)}:80"}
        with trio.fail_after(10):
            await watcher.wait_until(lambda s: wanted <= addresses(s))
        port = lb.addresses[0].port
        answers = [(await get_once(port, host))[1] for _ in range(6)]
    assert set(answers) == {a.short, b.short}
    assert all(x != y for x, y in itertools.pairwise(answers)), answers


async def test_a_container_with_a_healthcheck_joins_when_ready_and_leaves_when_unhealthy(kit: DockerKit) -> None:
    """While Docker says ``starting``, pylb's own probe decides; this container
    listens before it is ready, so it says when it is with an HTTP check
    (busybox httpd answers 404 for /ready until the file exists)."""
    host = kit.host("health")
    health = ["--health-cmd", "test -f /www/ready", "--health-interval", "250ms", "--health-retries", "1"]
    c = await kit.arun(labels={"pylb.host": host, "pylb.check.http": "GET /ready"}, extra=health)
    address = f"{ip_of(c)}:80"
    async with balancer_with_discovery() as (lb, watcher, _):
        assert address not in addresses(watcher.snapshot or Snapshot())
        assert (await get_once(lb.addresses[0].port, host))[0] == 503
        await kit.acommand("exec", c.id, "touch", "/www/ready")
        with trio.fail_after(10):
            await watcher.wait_until(lambda s: address in addresses(s))
        assert await get_once(lb.addresses[0].port, host) == (200, c.short)
        await kit.acommand("exec", c.id, "rm", "/www/ready")
        with trio.fail_after(10):
            await watcher.wait_until(lambda s: address not in addresses(s))


async def test_a_container_starting_its_healthcheck_joins_as_soon_as_it_answers(kit: DockerKit) -> None:
    """Docker's first check comes after a minute here: pylb's probe lets the container in long before."""
    host = kit.host("starting")
    health = ["--health-cmd", "true", "--health-interval", "60s"]
    c = await kit.arun(labels={"pylb.host": host}, extra=health)
    async with balancer_with_discovery() as (lb, watcher, _):
        with trio.fail_after(10):
            await watcher.wait_until(lambda s: f"{ip_of(c)}:80" in addresses(s))
        assert await get_once(lb.addresses[0].port, host) == (200, c.short)
        assert docker("inspect", "-f", "{{.State.Health.Status}}", c.id) == "starting"
        assert watcher.statistics()["joined_by_probe"] == 1


async def test_published_ports(kit: DockerKit) -> None:
    host = kit.host("published")
    c = await kit.arun(labels={"pylb.host": host}, extra=["-p", "127.0.0.1::80"])
    published = docker("port", c.id, "80/tcp").splitlines()[0]
    async with balancer_with_discovery(options=DockerOptions(use_published_ports=True)) as (lb, watcher, _):
        with trio.fail_after(10):
            snapshot = await watcher.wait_until(lambda s: published in addresses(s))
        assert published.startswith("127.0.0.1:") and published in addresses(snapshot)
        assert await get_once(lb.addresses[0].port, host) == (200, c.short)


def tcp_port_free() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def tcp_answer(port: int) -> str | None:
    """The page a container serves over a raw TCP connection through pylb's
    TCP listener (None: refused)."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return None
    async with stream:
        await stream.send_all(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(4096):
                data += chunk
    return data.partition(b"\r\n\r\n")[2].decode().strip()


async def test_tcp_ports_open_a_listener_that_follows_the_containers(kit: DockerKit) -> None:
    port = tcp_port_free()  # the containers listen on it, and so does pylb (on 127.0.0.1)
    serve = ["/bin/sh", "-c", f"hostname > /www/index.html; exec busybox httpd -f -p {port} -h /www"]
    a = await kit.arun(env={"TCP_PORTS": str(port)}, command=serve)
    b = await kit.arun(env={"TCP_PORTS": str(port)}, command=serve)
    async with balancer_with_discovery() as (_lb, watcher, _):
        wanted = {f"{ip_of(a)}:{port}", f"{ip_of(b)}:{port}"}
        with trio.fail_after(10):
            snapshot = await watcher.wait_until(lambda s: wanted <= addresses(s))
        assert [t.port for t in snapshot.tcp_ports] == [port]
        tcp_services = {t.service for t in snapshot.tcp_ports}
        http = {str(b) for s in snapshot.services if s.name not in tcp_services for b in s.backends}
        assert not http & wanted  # a TCP port is never an HTTP backend (the image's EXPOSE 80 is one)
        answers = [await tcp_answer(port) for _ in range(4)]
        assert sorted(answers) == sorted([a.short, b.short] * 2)  # type: ignore[type-var]

        gone = f"{ip_of(a)}:{port}"
        await kit.acommand("rm", "-f", a.id)
        with trio.fail_after(10):
            await watcher.wait_until(lambda s: gone not in addresses(s))
        assert {await tcp_answer(port) for _ in range(3)} == {b.short}

        await kit.acommand("rm", "-f", b.id)
        with trio.fail_after(10):
            await watcher.wait_until(lambda s: not s.tcp_ports)
        assert await tcp_answer(port) is None  # no container lists it: the port is closed


async def test_docker_kill_under_load_fails_nothing_after_the_kill_event(kit: DockerKit) -> None:
    host = kit.host("kill")
    containers = [await kit.arun(labels={"pylb.host": host}) for _ in range(3)]
    victim = containers[0]
    victim_address = f"{ip_of(victim)}:80"
    async with balancer_with_discovery() as (lb, watcher, recorder):
        with trio.fail_after(10):
            await watcher.wait_until(lambda s: len(addresses(s) & {f"{ip_of(c)}:80" for c in containers}) == 3)
        stats, stop = LoadStats(), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load, lb.addresses[0].port, host, 20, stop, stats)
            await trio.sleep(2)
            killed_at = time.monotonic()
            await kit.acommand("kill", victim.id)
            with trio.fail_after(10):
                await watcher.wait_until(lambda s: victim_address not in addresses(s))
            await trio.sleep(3)
            stop.set()
    removed_at = recorder.removed_at[victim_address]
    after = [f for f in stats.failures if f.started >= removed_at]
    print(
        f"\ndocker kill under load: {stats.total} requests, {len(stats.failures)} failed "
        f"({len(after)} started after pylb saw the kill, {removed_at - killed_at:.3f} s after `docker kill` began); "
        f"served by {dict(stats.served_by)}"
    )
    assert stats.ok > 100
    assert not after, after[:5]
    assert set(stats.served_by) == {c.short for c in containers}


# -- the CLI, as a subprocess -----------------------------------------------------------------


def pylb_cli(*extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run_pylb("--bind", "127.0.0.1:0", "--discover", "docker", *extra, env=env)


async def test_cli_a_new_container_serves_within_a_second(kit: DockerKit) -> None:
    host = kit.host("fast")
    with pylb_cli() as lb:
        with trio.fail_after(20):
            assert (await get_once(lb.port, host))[0] == 503  # pylb is up and synced: nothing there yet
            before_run = time.monotonic()
            c = await kit.arun(labels={"pylb.host": host})
            after_run = time.monotonic()
            await wait_served_by(lb.port, host, {c.short}, timeout=10)
        served = time.monotonic()
    print(
        f"\nnew container: `docker run` took {after_run - before_run:.3f} s; first request served by it "
        f"{served - after_run:.3f} s after `docker run` returned ({served - before_run:.3f} s after it began)"
    )
    assert served - after_run < 1.0


async def test_cli_scaling_1_5_1_under_load_fails_nothing(kit: DockerKit) -> None:
    host = kit.host("scale")
    service = f"{kit.prefix}-scale"
    labels = {"pylb.host": host, "pylb.service": service}
    first = await kit.arun(labels=labels)
    with pylb_cli() as lb:
        await wait_served_by(lb.port, host, {first.short})
        stats, stop = LoadStats(), trio.Event()
        phases: list[str] = []
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load, lb.port, host, 20, stop, stats)
            await trio.sleep(3)
            more: list[Container] = []

            async def scale_up() -> None:
                more.append(await kit.arun(labels=labels))

            async with trio.open_nursery() as up:
                for _ in range(4):
                    up.start_soon(scale_up)
            phases.append(f"scaled to 5 at {time.monotonic() - started:.1f} s")
            with trio.fail_after(10):
                while not {c.short for c in more} <= set(stats.served_by):
                    await trio.sleep(0.05)
            phases.append(f"all 5 serving at {time.monotonic() - started:.1f} s")
            await trio.sleep(4)
            async with trio.open_nursery() as down:
                for c in more:
                    down.start_soon(kit.acommand, "stop", "-t", "10", c.id)
            phases.append(f"scaled to 1 at {time.monotonic() - started:.1f} s (docker stop returned)")
            await trio.sleep(3)
            stop.set()
    duration = time.monotonic() - started
    print(
        f"\nscaling 1 -> 5 -> 1 under load: {stats.total} requests in {duration:.1f} s over 20 connections, "
        f"{len(stats.failures)} failed; {'; '.join(phases)}; served by {dict(stats.served_by)}"
    )
    assert not stats.failures, stats.failures[:5]
    assert len(stats.served_by) == 5 and stats.ok > 1000


async def test_cli_compose_labels_form_one_service_and_published_certificates_are_not_logged(kit: DockerKit) -> None:
    """Containers of one Compose service (by label) are one service; container
    env values never reach pylb's log."""
    host = kit.host("compose")
    labels = {"com.docker.compose.project": kit.prefix, "com.docker.compose.service": "web"}
    env = {"VIRTUAL_HOST": host, "SECRET_TOKEN": "hunter2-e2e", "VIRTUAL_HOST_WEIGHT": "hunter2-e2e"}
    bad = await kit.arun(labels=labels, env=env)
    good = [await kit.arun(labels=labels, env={"VIRTUAL_HOST": host}) for _ in range(2)]
    with pylb_cli() as lb:
        await wait_served_by(lb.port, host, {c.short for c in good})
        lb.proc.terminate()
        lb.proc.wait(15)
        assert lb.proc.stderr is not None
        log = "".join(lb.lines) + lb.proc.stderr.read()
    assert f"container {bad.name} skipped: env VIRTUAL_HOST_WEIGHT is not valid" in log
    assert "hunter2" not in log


# -- faults: the daemon away and back (a socket proxy we can cut), permissions ----------------


class SocketProxy:
    """A unix-socket relay to the real Docker socket that the test can cut
    (every connection closed, nothing listening) and restore."""

    def __init__(self, path: str, upstream: str) -> None:
        self.path, self.upstream = path, upstream
        self.scope: trio.CancelScope | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self.scope:
            sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(self.path):
                os.unlink(self.path)
            await sock.bind(self.path)
            sock.listen(16)
            listener = trio.SocketListener(sock)
            try:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    while True:
                        client = await listener.accept()
                        nursery.start_soon(self._relay, client)
            finally:
                sock.close()
                os.unlink(self.path)

    def cut(self) -> None:
        assert self.scope is not None
        self.scope.cancel()

    async def _relay(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_unix_socket(self.upstream)
        async with client, upstream, trio.open_nursery() as nursery:

            async def pump(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
                try:
                    async for data in source:
                        await sink.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, client, upstream)
            nursery.start_soon(pump, upstream, client)


async def test_daemon_away_keeps_the_pool_then_resyncs(kit: DockerKit, tmp_path: object) -> None:
    host = kit.host("away")
    path = os.path.join(tempfile.mkdtemp(prefix="pylb-proxy-"), "docker.sock")
    env = {"DOCKER_HOST": f"unix://{path}"}
    real = os.environ.get("DOCKER_HOST", "").strip() or "unix:///var/run/docker.sock"
    if not real.startswith("unix://"):
        reason = f"the socket proxy relays unix sockets; DOCKER_HOST is {real}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    proxy = SocketProxy(path, real.removeprefix("unix://"))
    a = await kit.arun(labels={"pylb.host": host})
    async with pylb.open_balancer() as lb, trio.open_nursery() as nursery:
        port = lb.addresses[0].port
        async with open_docker_discovery(lb, environ=env, backoff=(0.05, 0.4)) as watcher:
            # started before the daemon answers: 503 until the first listing
            assert (await get_once(port, host))[0] == 503
            await nursery.start(proxy.serve)
            with trio.fail_after(10):
                await watcher.wait_until(lambda s: f"{ip_of(a)}:80" in addresses(s))
            assert await get_once(port, host) == (200, a.short)

            proxy.cut()
            with trio.fail_after(10):
                while watcher.connected:
                    await trio.sleep(0.02)
            b = await kit.arun(labels={"pylb.host": host})  # changes while pylb cannot see them
            await kit.acommand("rm", "-f", a.id)
            assert await get_once(port, host) != (200, b.short)  # the last good pool stays
            assert watcher.statistics()["backends"] >= 1

            await nursery.start(proxy.serve)
            with trio.fail_after(10):
                snapshot = await watcher.wait_until(lambda s: f"{ip_of(b)}:80" in addresses(s))
            assert f"{ip_of(b)}:80" in addresses(snapshot)
            assert await get_once(port, host) == (200, b.short)
            assert watcher.faults >= 1 and watcher.sessions >= 2
            proxy.cut()


def test_permission_denied_on_the_socket_prints_the_fix() -> None:
    """A socket pylb may not open (mode 000, pylb without CAP_DAC_OVERRIDE);
    needs no daemon."""
    missing = [
        why
        for why, absent in (
            ("root", os.geteuid() != 0),
            ("setpriv (util-linux)", shutil.which("setpriv") is None),
            ("the docker Python package", importlib.util.find_spec("docker") is None),
        )
        if absent
    ]
    if missing:
        if in_ci():
            pytest.fail(f"this test needs {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")
    folder = tempfile.mkdtemp(prefix="pylb-denied-")
    path = os.path.join(folder, "docker.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    os.chmod(path, 0)
    drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
    env = {**os.environ, "DOCKER_HOST": f"unix://{path}"}
    try:
        auto = subprocess.run(
            [*drop, sys.executable, "-m", "pylb", "--bind", "127.0.0.1:0", "--discover", "auto"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert auto.returncode == 2
        assert "--discover auto: permission denied on the Docker socket" in auto.stderr
        assert "--group-add $(stat -c %g /var/run/docker.sock)" in auto.stderr
        proc = subprocess.Popen(
            [*drop, sys.executable, "-m", "pylb", "--bind", "127.0.0.1:0", "--discover", "docker"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        try:
            match = wait_for_output(proc, r"docker: permission denied on the Docker socket.*")
            assert "--group-add $(stat -c %g /var/run/docker.sock)" in match.group(0)
            assert "docker-socket-proxy" in match.group(0)
        finally:
            proc.kill()
            proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
    finally:
        listener.close()
        os.unlink(path)
        os.rmdir(folder)


# -- restarting dockerd: only where the test run started dockerd itself ------------------------


def _dockerd() -> tuple[int, list[str]]:
    """The pid and command line of the dockerd that serves DOCKER_HOST (or the
    default socket): the one to restart exactly as it was started."""
    wanted = os.environ.get("DOCKER_HOST", "").strip() or "unix:///var/run/docker.sock"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() != "dockerd":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                argv = [a.decode() for a in cmd.read().split(b"\0") if a]
        except OSError:
            continue
        if wanted in (_hosts(argv) or ["unix:///var/run/docker.sock"]):
            found.append((int(pid), argv))
    assert len(found) == 1, f"expected one dockerd serving {wanted}, found {found}"
    return found[0]


def _output_of(pid: int) -> str:
    """The file the daemon's standard output goes to (else /tmp/dockerd.log)."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        target = ""
    return target if target.startswith("/") and os.path.isfile(target) else "/tmp/dockerd.log"


def _hosts(argv: list[str]) -> list[str]:
    hosts = []
    for i, arg in enumerate(argv):
        if arg in ("-H", "--host") and i + 1 < len(argv):
            hosts.append(argv[i + 1])
        elif arg.startswith(("-H=", "--host=")):
            hosts.append(arg.split("=", 1)[1])
    return hosts


@pytest.mark.skipif(
    os.environ.get("PYLB_TEST_RESTART_DOCKERD") != "1",
    reason="restarts dockerd: only when the test run started it (PYLB_TEST_RESTART_DOCKERD=1, set by .ci/run)",
)
async def test_restarting_dockerd_keeps_serving_and_picks_up_changes(kit: DockerKit) -> None:
    host = kit.host("restart")
    a = await kit.arun(labels={"pylb.host": host}, extra=["--restart", "always"])
    live_restore = docker("info", "--format", "{{.LiveRestoreEnabled}}") == "true"
    with pylb_cli() as lb:
        await wait_served_by(lb.port, host, {a.short})
        pid, argv = _dockerd()
        output = _output_of(pid)
        stopped_at = time.monotonic()
        os.kill(pid, 15)
        with trio.fail_after(60):
            while os.path.exists(f"/proc/{pid}"):
                await trio.sleep(0.1)
        assert lb.proc.poll() is None, "pylb must outlive the daemon"
        during = (await get_once(lb.port, host))[0]
        if live_restore:  # containers keep running without the daemon: so does the service
            assert during == 200
        with open(output, "ab") as log:  # where its output went before
            subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        with trio.fail_after(60):
            while subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
                await trio.sleep(0.2)
        back_at = time.monotonic()
        b = await kit.arun(labels={"pylb.host": host})  # a change after the restart
        took = await wait_served_by(lb.port, host, {a.short, b.short}, timeout=30)
        assert lb.proc.poll() is None
    print(
        f"\ndockerd restart (live-restore {'on' if live_restore else 'off'}): daemon away "
        f"{back_at - stopped_at:.1f} s, pylb answered {during} meanwhile; the container started after the "
        f"restart served {took:.2f} s after `docker run` began"
    )
