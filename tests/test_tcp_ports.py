"""Discovered TCP listeners (TCP_PORTS): opened, retargeted and closed as
snapshots change, over real sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import re
import socket
import ssl

import pytest
import trio
import trustme

import pylb
from pylb import Backend, HealthCheck, Service, Snapshot, TcpPort
from pylb.core.models import PortSet
from pylb.net import tcpports
from tests.conftest import read_until, run_pylb
from tests.test_tcp import backend, echo, named, read_all

NO_CHECKS = HealthCheck(enabled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def world(port: int, backends: list[Backend], tls: bool = False, service: str | None = None) -> Snapshot:
    """A snapshot with one discovered TCP listener on ``port``."""
    name = service or f"tcp:{port}"
    return Snapshot((Service(name, tuple(backends)),), tcp_ports=(TcpPort(port, name, tls),))


async def greeting(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        with trio.fail_after(5):
            return await stream.receive_some(10)


async def refused(port: int) -> bool:
    return await refused_at("127.0.0.1", port)


async def refused_at(host: str, port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError:
        return True
    await stream.aclose()
    return False


async def test_a_snapshot_opens_balances_and_closes_a_tcp_port() -> None:
    port = free_port()
    async with backend(named(b"a")) as a, backend(named(b"b")) as b, backend(echo) as e:
        async with pylb.open_balancer(health=NO_CHECKS, tcp_drain=1.0) as lb:
            assert await refused(port)
            lb.swap(world(port, [a, b]))
            assert lb.tcp_ports.ports == {port: TcpPort(port, f"tcp:{port}")}
            assert sorted([await greeting(port) for _ in range(4)]) == [b"a", b"a", b"b", b"b"]
            stats = lb.statistics()["tcp"]
            assert isinstance(stats, dict)
            assert stats["ports"] == {port: f"tcp:{port}"} and stats["connections"] == 4

            lb.swap(world(port, [e]))  # same port, new backends: the listener stays
            kept = await trio.open_tcp_stream("127.0.0.1", port)
            await kept.send_all(b"ping")
            assert await kept.receive_some(10) == b"ping"

            lb.swap(Snapshot())  # no container lists the port any more
            assert lb.tcp_ports.ports == {}
            assert await refused(port)
            await kept.send_all(b"still")  # an open connection goes on...
            assert await kept.receive_some(10) == b"still"
            with trio.fail_after(5):
                assert await read_all(kept) == b""  # ...until the drain timeout (its backend left)

            lb.swap(world(port, [a]))  # and the port can come back
            assert await greeting(port) == b"a"
    assert await refused(port)  # closed with the balancer


async def test_a_renamed_service_keeps_its_listener() -> None:
    port = free_port()
    async with backend(named(b"a")) as a, backend(named(b"b")) as b:
        async with pylb.open_balancer(health=NO_CHECKS) as lb:
            lb.swap(world(port, [a]))
            first = await trio.open_tcp_stream("127.0.0.1", port)
            assert await first.receive_some(10) == b"a"
            lb.swap(world(port, [b], service="tcp:renamed"))
            assert lb.tcp_ports.ports == {port: TcpPort(port, "tcp:renamed")}
            assert await greeting(port) == b"b"
            await first.aclose()


async def test_ssl_ports_terminate_tls_with_pylbs_certificate() -> None:
    ca = trustme.CA()
    port = free_port()
    async with backend(echo) as e:
        async with pylb.open_balancer(tls=ca, health=NO_CHECKS) as lb:
            lb.swap(world(port, [e], tls=True))
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
            stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_hostname="localhost")
            await stream.send_all(b"over tls")
            assert await stream.receive_some(100) == b"over tls"
            await stream.aclose()

            lb.swap(world(port, [e], tls=False))  # /ssl dropped: the port reopens as plain TCP
            plain = await trio.open_tcp_stream("127.0.0.1", port)
            await plain.send_all(b"plain")
            assert await plain.receive_some(100) == b"plain"
            await plain.aclose()


async def test_ports_that_cannot_open_are_one_warning_each_and_retried(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tcpports, "RETRY", 0.1)
    caplog.set_level(logging.INFO, "pylb")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    no_cert = free_port()
    async with backend(named(b"a")) as a:
        async with pylb.open_balancer(health=NO_CHECKS) as lb:
            own = lb.addresses[0].port
            wanted = (TcpPort(taken, "t"), TcpPort(own, "t"), TcpPort(no_cert, "t", tls=True))
            snapshot = Snapshot((Service("t", (a,)),), tcp_ports=wanted)
            lb.swap(snapshot)
            lb.swap(snapshot)  # the same problems again: no new warning
            await trio.sleep(0.3)  # nor from the retries
            problems = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert sorted(problems) == sorted(
                [
                    f"tcp port {taken} (service t) not opened on tcp://127.0.0.1:{taken}: Address already in use "
                    "(choose another port); retrying",
                    f"tcp port {own} (service t) not opened: it is one of pylb's own listeners; list another port in "
                    "TCP_PORTS; retrying",
                    f"tcp port {no_cert}/ssl (service t) not opened: pylb has no certificate to terminate TLS "
                    "with; give pylb one (SSL_CERT, DEFAULT_SSL_CERT or --ssl-cert) or list the port without "
                    "/ssl; retrying",
                ]
            )
            assert lb.tcp_ports.ports == {}
            busy.close()  # the port is free now: a retry opens it, with no new snapshot
            with trio.fail_after(5):
                while taken not in lb.tcp_ports.ports:
                    await trio.sleep(0.05)
            assert await greeting(taken) == b"a"
            assert f"tcp port {taken} (service t) opened on tcp://127.0.0.1:{taken}" in caplog.messages


async def test_only_allowed_ports_open_and_at_most_max_ports(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tcpports, "MAX_PORTS", 2)
    caplog.set_level(logging.WARNING, "pylb")
    ports = sorted(free_port() for _ in range(3))
    allowed = PortSet.parse(f"{ports[0]}-{ports[2]}")
    async with backend(named(b"a")) as a:
        config = pylb.Config(binds=(pylb.Bind.parse("127.0.0.1:0"),), health_check=NO_CHECKS, tcp_ports=allowed)
        lb = pylb.Balancer(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(lb.run)
            wanted = (TcpPort(22, "t"), *(TcpPort(p, "t") for p in ports))
            lb.swap(Snapshot((Service("t", (a,)),), tcp_ports=wanted))
            assert sorted(lb.tcp_ports.ports) == ports[:2]
            assert await greeting(ports[0]) == b"a" and await greeting(ports[1]) == b"a"
            assert await refused(ports[2]) and await refused(22)
            assert sorted(caplog.messages) == [
                f"tcp port 22 (service t) not opened: --tcp-ports {allowed} does not allow it; allow it on pylb "
                f"(--tcp-ports 22,{allowed}) if the containers asking for it are trusted",
                f"tcp port {ports[2]} (service t) not opened: pylb already listens on 2 ports for containers, its "
                "most; retrying",
            ]
            nursery.cancel_scope.cancel()


async def test_containers_cannot_open_ports_with_tcp_ports_none() -> None:
    port = free_port()
    async with backend(named(b"a")) as a:
        config = pylb.Config(
            binds=(pylb.Bind.parse("127.0.0.1:0"),), health_check=NO_CHECKS, tcp_ports=PortSet.parse("none")
        )
        lb = pylb.Balancer(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(lb.run)
            lb.swap(world(port, [a]))
            assert lb.tcp_ports.ports == {} and await refused(port)
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("where", ["service", "balancer"])
async def test_tcp_ports_never_get_an_http_check(where: str) -> None:
    """An HTTP check (the service's HTTP_CHECK, or pylb's own --http-check)
    sent to sshd or a database would mark every backend down: TCP ports get
    a TCP connect at the same pace."""
    fast = HealthCheck(inter=0.05, rise=1, fall=1)
    http = fast.with_http("GET /health")
    port = free_port()
    async with backend(named(b"banner")) as b:
        async with pylb.open_balancer(health=http if where == "balancer" else fast) as lb:
            service = Service(f"tcp:{port}", (b,), check=http if where == "service" else None)
            lb.swap(Snapshot((service,), tcp_ports=(TcpPort(port, service.name),)))
            await trio.sleep(0.5)  # ten checks
            assert await greeting(port) == b"banner"
            pool = lb.statistics()["pool"]
            assert "down" not in repr(pool), pool


async def test_a_snapshot_swapped_before_run_opens_its_ports_at_start() -> None:
    port = free_port()
    async with backend(named(b"a")) as a:
        lb = pylb.Balancer(pylb.Config(binds=(pylb.Bind.parse("127.0.0.1:0"),), health_check=NO_CHECKS))
        lb.swap(world(port, [a]))
        async with trio.open_nursery() as nursery:
            await nursery.start(lb.run)
            assert await greeting(port) == b"a"
            nursery.cancel_scope.cancel()
    assert await refused(port)


async def says_a(stream: trio.SocketStream) -> None:
    """Sends b"a" and closes: nothing left for pylb to relay when the test
    (whose trio loop is blocked while run_pylb stops pylb) ends it."""
    async with stream:
        await stream.send_all(b"a")


def link_env(alias: str, backend: Backend, env: dict[str, str]) -> dict[str, str]:
    """What ``docker run --link`` sets for a container listening on 127.0.0.1 (a test stands in for it)."""
    prefix = alias.upper()
    found = {
        f"{prefix}_NAME": f"/lb/{alias}",
        f"{prefix}_PORT": f"tcp://{backend.host}:{backend.port}",
        f"{prefix}_PORT_{backend.port}_TCP_ADDR": backend.host,
        f"{prefix}_PORT_{backend.port}_TCP_PORT": str(backend.port),
    }
    return found | {f"{prefix}_ENV_{key}": value for key, value in env.items()}


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_cli_links_with_tcp_ports_open_the_port_in_every_worker(workers: str) -> None:
    async with backend(says_a) as a:
        # A linked container listing its own port in TCP_PORTS: pylb listens on that port number.
        env = link_env("db", a, {"TCP_PORTS": str(a.port)})
        # The backend already holds a.port on 127.0.0.1; pylb listens on the same port on 127.0.0.2.
        with run_pylb(
            "--discover", "links", "--workers", workers, "--bind", "127.0.0.2:0", "--health-check", "none", env=env
        ) as running:
            with trio.fail_after(10):
                while await refused_at("127.0.0.2", a.port):  # the workers open it once the links are read
                    await trio.sleep(0.05)
            for _ in range(4):  # whichever worker the kernel picks, it has the port and the backend
                stream = await trio.open_tcp_stream("127.0.0.2", a.port)
                with trio.fail_after(10):
                    assert await stream.receive_some(10) == b"a"
                await stream.aclose()
            assert running.proc.poll() is None
            # Each worker opens it: a worker that could not would say so, and take no connection.
            opened = re.compile(rf"(worker \d: )?{re.escape(f'tcp port {a.port} (service tcp:{a.port}) opened on')}")
            seen = [m[1] for line in running.lines if (m := opened.search(line))]
            while len(seen) < int(workers):
                seen.append(read_until(running.proc, opened.pattern)[0][1])
            assert sorted(seen, key=str) == ([None] if workers == "1" else ["worker 0: ", "worker 1: "])
