"""The seed's walkthrough with pylb's own image, end to end: a real engine,
real containers from the ``pylb`` image (scripts/build-image), nothing mocked.

Outside CI these skip when Docker is unavailable; with CI=true they fail.
Ports are published on 127.0.0.1 only; container names carry a per-run
prefix; everything a test creates is removed by id when it ends. Every wait
is bounded by its own deadline; the pytest timeout is a backstop that leaves
room for a cold first build of the image (debootstrap) in the first test.
"""

from __future__ import annotations

import itertools
import os
import shutil
import ssl
import tempfile
import time
from pathlib import Path

import pytest
import trio
import trustme

from tests.discovery.docker_kit import HttpClient, LoadStats, get_once, in_ci, load
from tests.image.image_kit import (
    IMAGE,
    SOCKET,
    Box,
    Built,
    Container,
    adocker,
    awk_newlines,
    docker,
    https_get,
    logs,
    published,
    wait_serving,
)

pytestmark = pytest.mark.timeout(900)


async def answers(port: int, count: int, host: str = "localhost") -> list[str]:
    """``count`` GETs over one keep-alive connection: the bodies."""
    client = HttpClient(port, host)
    bodies = []
    try:
        for _ in range(count):
            with trio.fail_after(10):
                status, body = await client.get()
            assert status == 200, (status, body)
            bodies.append(body.decode().strip())
    finally:
        await client.close()
    return bodies


async def separate_answers(port: int, count: int, host: str = "localhost") -> list[str]:
    """``count`` GETs, each on a connection of its own (``curl`` in a loop)."""
    bodies = []
    for _ in range(count):
        with trio.fail_after(10):
            status, body = await get_once(port, host)
        assert status == 200, (status, body)
        bodies.append(body)
    return bodies


def alternating(bodies: list[str]) -> bool:
    return all(a != b for a, b in itertools.pairwise(bodies))


# -- a. the seed's first example: links, and recreating the balancer to add web3 ----------------


async def test_links_alternate_and_a_third_needs_a_new_balancer(box: Box, pylb_image: Built) -> None:
    web1 = await box.run("web1", IMAGE, "hello")
    web2 = await box.run("web2", IMAGE, "hello")
    links = ["--link", f"{web1.name}:web1", "--link", f"{web2.name}:web2"]
    lb = await box.run("lb", "-p", "127.0.0.1::80", *links, IMAGE)
    port = published(lb, 80)
    took, _ = await wait_serving(port)
    print(f"\nlinks: the balancer served {took:.2f} s after `docker run -d ... pylb` returned")

    bodies = await answers(port, 8)
    assert set(bodies) == {web1.hello, web2.hello}, bodies
    assert alternating(bodies), bodies
    fresh = await separate_answers(port, 8)  # curl in a loop: a connection each
    assert set(fresh) == {web1.hello, web2.hello}, fresh
    output = logs(lb)
    assert "--discover auto: links" in output, output

    # "We need to remove the current haproxy container and create a new one linking to all three"
    web3 = await box.run("web3", IMAGE, "hello")
    await box.remove(lb)
    lb = await box.run("lb", "-p", "127.0.0.1::80", *links, "--link", f"{web3.name}:web3", IMAGE)
    port = published(lb, 80)
    took, _ = await wait_serving(port)
    bodies = await answers(port, 9)
    assert set(bodies) == {web1.hello, web2.hello, web3.hello}, bodies
    assert alternating(bodies), bodies
    print(f"links: the recreated balancer (three links) served {took:.2f} s after `docker run`; fresh: {fresh}")


# -- b. the better way: the Docker socket, scaling with docker run / docker stop, no restart -----


async def test_socket_discovery_scales_1_3_1_under_load_without_failures(box: Box) -> None:
    if not os.path.exists(SOCKET):
        reason = f"{SOCKET} is missing (the balancer container mounts it)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    network = await box.network()
    host = f"web.{box.prefix}test"
    web = ["--network", network, "-l", "pylb.port=80", "-e", f"VIRTUAL_HOST={host}", IMAGE, "hello"]
    first = await box.run("web-1", *web)
    lb = await box.run(
        "lb", "--network", network, "-p", "127.0.0.1::80", "-v", f"{SOCKET}:{SOCKET}:ro", IMAGE
    )  # the image's default command: --discover auto, which finds the socket
    port = published(lb, 80)
    joined, _ = await wait_serving(port, host, timeout=40)  # a pylb hello joins once healthy
    assert "--discover auto: docker" in logs(lb)

    stats, stop = LoadStats(), trio.Event()
    phases: list[str] = []
    started = time.monotonic()
    more: list[Container] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(load, port, host, 10, stop, stats, 60)
        await trio.sleep(1)
        async with trio.open_nursery() as up:
            for index in (2, 3):

                async def scale_up(index: int = index) -> None:
                    more.append(await box.run(f"web-{index}", *web))

                up.start_soon(scale_up)
        up_at = time.monotonic()
        with trio.fail_after(40):
            while not {c.hello for c in more} <= set(stats.served_by):
                await trio.sleep(0.05)
        phases.append(f"3 serving {time.monotonic() - up_at:.1f} s after `docker run` returned")
        await trio.sleep(1)
        async with trio.open_nursery() as down:
            for container in more:
                down.start_soon(adocker, "stop", container.id)
        phases.append(f"back to 1 at {time.monotonic() - started:.1f} s (`docker stop` returned)")
        await trio.sleep(1.5)
        stop.set()
    duration = time.monotonic() - started
    assert docker("inspect", "-f", "{{.State.Running}} {{.RestartCount}}", lb.id) == "true 0"
    print(
        f"\nsocket: first backend served {joined:.1f} s after the balancer started; scaling 1 -> 3 -> 1 under "
        f"10 keep-alive connections: {stats.total} requests in {duration:.1f} s, {len(stats.failures)} failed; "
        f"{'; '.join(phases)}; served by {dict(stats.served_by)}"
    )
    assert not stats.failures, stats.failures[:5]
    assert set(stats.served_by) == {first.hello} | {c.hello for c in more}
    assert stats.ok > 100


# -- c. SSL_CERT as the seed passes it -----------------------------------------------------------


async def test_ssl_cert_from_awk_serves_https_on_443_and_http_on_80(box: Box) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    pem = leaf.private_key_pem.bytes() + b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    with tempfile.TemporaryDirectory(prefix="pylb-image-tls-") as folder:
        cert = Path(folder) / "cert.pem"  # "cp private.key cert.pem; cat public.crt >> cert.pem"
        cert.write_bytes(pem)
        value = awk_newlines(cert.read_text())  # SSL_CERT="$(awk 1 ORS='\\n' cert.pem)"
        if shutil.which("awk"):  # the shell hands awk ORS=\\n; awk makes it backslash and n
            real = await trio.run_process(["awk", "1", "ORS=\\\\n", str(cert)], capture_stdout=True)
            assert real.stdout.decode() == value
    assert "\n" not in value and value.count("\\n") == pem.count(b"\n")

    web1 = await box.run("web1", IMAGE, "hello")
    lb = await box.run(
        "lb",
        "-p",
        "127.0.0.1::80",
        "-p",
        "127.0.0.1::443",
        "--link",
        f"{web1.name}:web1",
        "-e",
        f"SSL_CERT={value}",
        IMAGE,
    )
    http_port, https_port = published(lb, 80), published(lb, 443)
    took, body = await wait_serving(http_port)
    assert body == web1.hello

    context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())  # trusts only the test CA
    status, body, version = await trio.to_thread.run_sync(https_get, https_port, context)
    assert (status, body) == (200, web1.hello)
    assert version in ("TLSv1.2", "TLSv1.3")
    assert (await get_once(http_port, "localhost")) == (200, web1.hello)  # 80 still serves
    strict = ssl.create_default_context()  # the system CAs only: the test CA is not among them
    with pytest.raises(ssl.SSLCertVerificationError):
        await trio.to_thread.run_sync(https_get, https_port, strict)
    print(f"\nSSL_CERT: https on 443 ({version}) and http on 80; served {took:.2f} s after `docker run`")


# -- d. docker stop of the balancer under load ----------------------------------------------------


async def test_docker_stop_drains_requests_in_flight_and_exits_0(box: Box) -> None:
    slow = await box.run("slow", IMAGE, "hello", "--delay", "0.5")
    lb = await box.run("lb", "-p", "127.0.0.1::80", "--link", f"{slow.name}:web", IMAGE)
    port = published(lb, 80)
    await wait_serving(port)

    results: list[tuple[float, float, str]] = []  # (started, ended, outcome)
    stopping = trio.Event()

    async def client() -> None:
        http = HttpClient(port, "localhost")
        try:
            while not stopping.is_set():
                started = time.monotonic()
                try:
                    with trio.fail_after(15):
                        status, body = await http.get()
                    outcome = "ok" if status == 200 else f"{status} {body[:100]!r}"
                except (OSError, EOFError, trio.BrokenResourceError, trio.TooSlowError, ValueError) as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                    await http.close()
                results.append((started, time.monotonic(), outcome))
                if outcome != "ok":
                    return
        finally:
            await http.close()

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(client)
        await trio.sleep(1.8)  # each connection has a request in flight (0.5 s each)
        stop_began = time.monotonic()
        stopping.set()  # no new requests from here on: only the ones in flight
        await adocker("stop", lb.id, timeout=30)
        stopped = time.monotonic()
    exit_code = docker("inspect", "-f", "{{.State.ExitCode}}", lb.id)
    in_flight = [r for r in results if r[0] < stop_began < r[1]]
    failed = [r for r in results if r[0] < stop_began and r[2] != "ok"]
    print(
        f"\ndocker stop under load: {len(results)} requests, {len(in_flight)} in flight when `docker stop` began, "
        f"{len(failed)} failed; `docker stop` took {stopped - stop_began:.2f} s; exit code {exit_code}"
    )
    assert not failed, failed[:5]
    assert len(in_flight) >= 5
    assert exit_code == "0", logs(lb, 20)
    assert stopped - stop_began < 9, "pylb did not stop before docker's SIGKILL deadline (10 s)"


# -- e. the image's HEALTHCHECK --------------------------------------------------------------------


async def test_healthcheck_makes_balancer_and_hello_healthy(box: Box) -> None:
    check = docker("image", "inspect", IMAGE, "--format", "{{json .Config.Healthcheck}}")
    assert check == '{"Test":["CMD","pylb","healthcheck"],"Interval":10000000000,"Timeout":3000000000}'
    web = await box.run("web", IMAGE, "hello")
    web8080 = await box.run("web8080", IMAGE, "hello", "--bind", "0.0.0.0:8080")  # PID 1's --bind is read
    lb = await box.run("lb", "--link", f"{web.name}:web", IMAGE)
    watched = [web, web8080, lb]
    if os.path.exists(SOCKET):  # docs/image.md's non-root mode: a user in the socket's group, port 80 as is
        group = str(os.stat(SOCKET).st_gid)
        socket_mount = ["-v", f"{SOCKET}:{SOCKET}:ro"]
        nonroot = await box.run("nonroot", "--user", "10001:10001", "--group-add", group, *socket_mount, IMAGE)
        watched.append(nonroot)
    started = time.monotonic()
    ids = [c.id for c in watched]
    states: dict[str, str] = {}
    with trio.fail_after(40):
        while True:
            for container in watched:
                states[container.name] = await adocker("inspect", "-f", "{{.State.Health.Status}}", container.id)
            if set(states.values()) == {"healthy"}:
                break
            assert "unhealthy" not in states.values(), (states, docker("inspect", "-f", "{{json .State.Health}}", *ids))
            await trio.sleep(0.5)
    took = time.monotonic() - started
    log = docker("inspect", "-f", "{{(index .State.Health.Log 0).Output}}", lb.id)
    assert log.strip() == "pylb healthcheck: healthy: http://127.0.0.1:80/ answered 200 OK", log
    if len(watched) == 4:
        assert "--discover auto: docker" in logs(watched[3]), logs(watched[3])
        assert docker("exec", watched[3].id, "id", "-u") == "10001"
    print(f"\nHEALTHCHECK: balancer and hellos healthy {took:.1f} s after `docker run` (interval 10 s)")
