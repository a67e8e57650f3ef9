"""The watcher's loop against a fake engine: events, coalescing, the stopping
set, faults and backoff. Real threads, no Docker."""

from __future__ import annotations

import copy
import itertools
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trustme
from fake_engines import END, FakeStream, Target
from fakes import cid, container

from pylb.discovery import DockerWatcher, open_docker_discovery


class FakeDocker:
    """A daemon: containers the test edits, event streams it can end."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.containers: dict[str, dict[str, Any]] = {}
        self.streams: list[FakeStream] = []
        self.connect_error: Exception | None = None
        self.list_error: Exception | None = None
        self.connects = 0
        self.listings = 0

    def add(self, attrs: dict[str, Any]) -> str:
        with self.lock:
            self.containers[attrs["Id"]] = attrs
        return str(attrs["Id"])

    def remove(self, ident: str) -> None:
        with self.lock:
            del self.containers[ident]

    def emit(self, action: str, ident: str, kind: str = "container", **attributes: str) -> None:
        actor = {"ID": ident, "Attributes": attributes}
        for stream in self.streams:
            if not stream.closed:
                stream.queue.put({"Type": kind, "Action": action, "Actor": actor})

    def end_streams(self, error: Exception | None = None) -> None:
        for stream in self.streams:
            stream.queue.put(error or END)

    def connect(self) -> FakeEngine:
        self.connects += 1
        if self.connect_error is not None:
            raise self.connect_error
        return FakeEngine(self)


class FakeEngine:
    def __init__(self, docker: FakeDocker) -> None:
        self.docker = docker

    def events(self, filters: Mapping[str, list[str]]) -> FakeStream:
        assert set(filters["type"]) == {"container", "network"}
        stream = FakeStream()
        self.docker.streams.append(stream)
        return stream

    def containers(self) -> list[dict[str, Any]]:
        self.docker.listings += 1
        if self.docker.list_error is not None:
            raise self.docker.list_error
        with self.docker.lock:
            return copy.deepcopy(list(self.docker.containers.values()))

    def inspect(self, ident: str) -> dict[str, Any] | None:
        with self.docker.lock:
            return copy.deepcopy(self.docker.containers.get(ident))

    def close(self) -> None:
        pass


def web(name: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("labels", {"pylb.port": "80"})
    return container(name, **kwargs)


def address(name: str) -> str:
    return f"{web(name)['NetworkSettings']['Networks']['bridge']['IPAddress']}:80"


def has(*names: str) -> Any:
    wanted = {address(n) for n in names}
    return lambda snapshot: {str(b) for s in snapshot.services for b in s.backends} == wanted


@asynccontextmanager
async def watching(docker: FakeDocker, target: Target, **kwargs: Any) -> AsyncIterator[DockerWatcher]:
    kwargs.setdefault("coalesce", 0.01)
    kwargs.setdefault("backoff", (0.01, 0.05))
    with trio.fail_after(10):
        async with open_docker_discovery(target, connect=docker.connect, own="", **kwargs) as watcher:
            yield watcher


async def test_first_listing_then_events_rebuild_the_world() -> None:
    docker, target = FakeDocker(), Target()
    docker.add(web("web-1"))
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
        assert target.backends() == {address("web-1")}
        docker.add(web("web-2"))
        docker.emit("start", cid("web-2"))
        await watcher.wait_until(has("web-1", "web-2"))
        assert target.backends() == {address("web-1"), address("web-2")}
        docker.remove(cid("web-1"))
        docker.emit("die", cid("web-1"))
        await watcher.wait_until(has("web-2"))
        stats = watcher.statistics()
        assert stats["connected"] is True and stats["backends"] == 1 and stats["faults"] == 0
        assert "connected backends=1" in repr(watcher)


async def test_a_burst_of_events_is_one_listing_and_unchanged_worlds_are_not_published() -> None:
    docker, target = FakeDocker(), Target()
    docker.add(web("web-1"))
    async with watching(docker, target, coalesce=0.2) as watcher:
        await watcher.wait_synced()
        listings = docker.listings
        for _ in range(50):
            docker.emit("health_status: healthy", cid("web-1"))
        docker.emit("connect", "network-id", kind="network", container=cid("web-1"))
        with trio.move_on_after(0.6):
            while docker.listings < listings + 2:
                await trio.sleep(0.01)
        assert docker.listings == listings + 1
        assert watcher.events == 51
        assert len(target.swaps) == 1  # the same world twice is published once


async def test_kill_takes_a_container_out_at_once_before_any_listing() -> None:
    docker, target = FakeDocker(), Target()
    docker.add(web("web-1"))
    docker.add(web("web-2"))
    async with watching(docker, target, coalesce=30) as watcher:  # no relisting during this test
        await watcher.wait_synced()
        listings = docker.listings
        docker.emit("kill", cid("web-1"), signal="15")
        await watcher.wait_until(has("web-2"))
        assert docker.listings == listings
        assert target.backends() == {address("web-2")}
        assert watcher.stopping == {cid("web-1")}


@pytest.mark.parametrize(
    ("signal", "stop_signal", "leaves"),
    [
        ("9", None, True),
        ("15", None, True),
        ("2", None, True),
        ("1", None, False),  # SIGHUP: reload, the container stays
        ("10", None, False),
        ("28", "SIGWINCH", True),  # the container's own stop signal
        ("28", "28", True),
    ],
)
async def test_which_kill_signals_stop_a_container(signal: str, stop_signal: str | None, leaves: bool) -> None:
    docker, target = FakeDocker(), Target()
    docker.add(web("web-1", stop_signal=stop_signal))
    docker.add(web("web-2"))
    async with watching(docker, target, coalesce=30) as watcher:
        await watcher.wait_synced()
        docker.emit("kill", cid("web-1"), signal=signal)
        docker.emit("kill", cid("web-2"), signal="9")
        await watcher.wait_until(lambda s: address("web-2") not in {str(b) for x in s.services for b in x.backends})
        assert (address("web-1") not in target.backends()) is leaves


async def test_a_restarted_container_comes_back() -> None:
    docker, target = FakeDocker(), Target()
    docker.add(web("web-1"))
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
        docker.emit("kill", cid("web-1"), signal="15")
        await watcher.wait_until(has())
        docker.emit("die", cid("web-1"))
        docker.emit("stop", cid("web-1"))
        docker.emit("start", cid("web-1"))
        await watcher.wait_until(has("web-1"))
        assert not watcher.stopping


async def test_daemon_away_at_start_means_503_until_the_first_listing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pylb.discovery")
    docker, target = FakeDocker(), Target()
    docker.add(web("web-1"))
    docker.connect_error = ConnectionRefusedError(111, "Connection refused")
    async with watching(docker, target, backoff=(0.01, 0.02)) as watcher:
        while docker.connects < 5:
            await trio.sleep(0.01)
        assert target.pool.snapshot is None and target.swaps == []
        docker.connect_error = None
        await watcher.wait_until(has("web-1"))
    refusals = [r for r in caplog.records if "refuses connections" in r.getMessage()]
    assert len(refusals) == 1, "the same fault is logged once, not on every retry"
    assert any("reconnected" in r.getMessage() for r in caplog.records)


async def test_stream_end_keeps_the_pool_reconnects_and_resyncs() -> None:
    docker, target = FakeDocker(), Target()
    docker.add(web("web-1"))
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
        docker.connect_error = OSError("daemon going away")
        docker.end_streams()
        while watcher.connected or docker.connects < 3:
            await trio.sleep(0.01)
        assert target.backends() == {address("web-1")}, "a fault never empties the pool"
        docker.remove(cid("web-1"))  # changes while disconnected
        docker.add(web("web-2"))
        docker.connect_error = None
        await watcher.wait_until(has("web-2"))
        assert watcher.sessions >= 2


async def test_api_errors_never_empty_the_pool() -> None:
    docker, target = FakeDocker(), Target()
    docker.add(web("web-1"))
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
        docker.list_error = RuntimeError("500 Server Error: Internal Server Error")
        docker.emit("start", cid("web-1"))
        while watcher.faults < 3:
            await trio.sleep(0.01)
        assert target.backends() == {address("web-1")}
        assert "RuntimeError: 500 Server Error" in str(watcher.statistics()["last_fault"])
        docker.list_error = None
        await watcher.wait_until(lambda s: watcher.connected)


async def test_backoff_is_capped() -> None:
    docker, target = FakeDocker(), Target()
    docker.connect_error = ConnectionRefusedError(111, "Connection refused")
    stamps: list[float] = []
    original = docker.connect

    def connect() -> FakeEngine:
        stamps.append(time.monotonic())
        return original()

    async with open_docker_discovery(target, connect=connect, own="", backoff=(0.01, 0.08)):
        with trio.fail_after(5):
            while len(stamps) < 9:
                await trio.sleep(0.01)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] < 0.06
    assert max(gaps) < 0.3  # capped at 0.08 s (plus scheduling)
    assert gaps[-1] >= 0.07  # grew to the cap


async def test_permission_denied_prints_the_fix_once(caplog: pytest.LogCaptureFixture) -> None:
    docker, target = FakeDocker(), Target()
    error = ConnectionError("('Connection aborted.', PermissionError(13, 'Permission denied'))")
    error.__cause__ = PermissionError(13, "Permission denied")
    docker.connect_error = error
    async with watching(docker, target):
        while docker.connects < 4:
            await trio.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "pylb.discovery"]
    assert len(lines) == 1
    assert "permission denied on the Docker socket" in lines[0]
    assert "--group-add $(stat -c %g /var/run/docker.sock)" in lines[0] and "docker-socket-proxy" in lines[0]


async def test_warnings_are_logged_once_and_never_hold_env_values(caplog: pytest.LogCaptureFixture) -> None:
    docker, target = FakeDocker(), Target()
    docker.add(web("bad", labels={}, env={"VIRTUAL_HOST": "hunter2 hunter2"}))
    docker.add(web("web-1"))
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
        for _ in range(3):
            docker.emit("start", cid("web-1"))
            listings = docker.listings
            while docker.listings == listings:
                await trio.sleep(0.01)
        await watcher.wait_until(has("web-1"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert text.count("container bad skipped: env VIRTUAL_HOST is not valid") == 1
    assert "hunter2" not in text and "hunter2" not in repr(watcher.statistics())


async def test_certificates_go_to_the_cert_store_when_they_change() -> None:
    ca = trustme.CA()
    pem = ca.issue_cert("a.test").private_key_and_cert_chain_pem.bytes().decode()
    calls: list[tuple[str, ...]] = []

    class Store:
        def replace_dynamic(self, bundles: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
            calls.append(tuple(b.fingerprint for b in bundles))
            return calls[-1], ()

    docker, target = FakeDocker(), Target(certs=Store())
    docker.add(web("a-1", env={"SSL_CERT": pem, "VIRTUAL_HOST": "a.test"}))
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
        docker.add(web("b-1"))
        docker.emit("start", cid("b-1"))
        await watcher.wait_until(has("a-1", "b-1"))
        assert len(calls) == 1 and len(calls[0]) == 1
        docker.remove(cid("a-1"))
        docker.emit("destroy", cid("a-1"))
        await watcher.wait_until(has("b-1"))
        assert calls[-1] == ()


async def test_certificates_without_a_cert_store_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    pem = trustme.CA().issue_cert("a.test").private_key_and_cert_chain_pem.bytes().decode()
    docker, target = FakeDocker(), Target(certs=None)
    docker.add(web("a-1", env={"SSL_CERT": pem, "VIRTUAL_HOST": "a.test"}))
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
        docker.emit("start", cid("a-1"))
        docker.emit("start", cid("a-1"))
        await watcher.wait_until(has("a-1"))
    lines = [r.getMessage() for r in caplog.records if "no https listener" in r.getMessage()]
    assert len(lines) == 1


async def test_cancelling_closes_the_event_stream() -> None:
    docker, target = FakeDocker(), Target()
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
    assert docker.streams and all(s.closed for s in docker.streams)


async def test_own_container_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    from pylb.discovery import own

    me = container("pylb", networks={"front": "10.5.0.2"})
    docker, target = FakeDocker(), Target()
    docker.add(me)
    docker.add(web("web-1", networks={"front": "10.5.0.3", "bridge": "172.17.0.3"}))
    evidence = own.Evidence(mountinfo=f"1 2 0:3 /var/lib/docker/containers/{me['Id']}/hostname /etc/hostname rw")
    monkeypatch.setattr(own, "read_evidence", lambda environ=None: evidence)
    with trio.fail_after(5):
        async with open_docker_discovery(target, connect=docker.connect, coalesce=0.01) as watcher:
            await watcher.wait_synced()
    assert target.backends() == {"10.5.0.3:80"}


async def test_a_container_still_starting_its_healthcheck_joins_when_pylbs_probe_passes() -> None:
    """Docker would say healthy after its first interval (10 s or 30 s by
    default); pylb's own probe lets the container in as soon as it listens."""
    docker, target = FakeDocker(), Target()
    with socket.socket() as sock:  # a port nothing listens on, yet
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    starting = web("web-1", labels={"pylb.port": str(port)}, networks={"bridge": "127.0.0.1"}, health="starting")
    docker.add(starting)
    async with watching(docker, target) as watcher:
        await watcher.wait_synced()
        assert target.backends() == set() and watcher.pending == ("web-1",)
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, lambda s: s.aclose(), listeners)
            await watcher.wait_until(lambda s: bool(s.services))
            nursery.cancel_scope.cancel()
        assert target.backends() == {f"127.0.0.1:{port}"} and watcher.statistics()["joined_by_probe"] == 1
        docker.add(web("web-1", labels={"pylb.port": str(port)}, networks={"bridge": "127.0.0.1"}, health="unhealthy"))
        docker.emit("health_status: unhealthy", cid("web-1"))
        await watcher.wait_until(lambda s: not s.services)  # unhealthy keeps it out, probe or not


async def test_each_change_is_one_line_naming_the_container_and_an_event_of_the_balancer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A backend added or removed is one log line naming its container and
    service (never its env), and the balancer's stats page lists it."""
    import pylb

    caplog.set_level(logging.INFO, "pylb.discovery")
    docker = FakeDocker()
    docker.add(web("web-1", env={"SECRET": "hunter2"}))
    async with pylb.open_balancer() as lb, watching(docker, lb) as watcher:
        await watcher.wait_until(has("web-1"))
        docker.add(web("web-2"))
        docker.emit("start", cid("web-2"))
        await watcher.wait_until(has("web-1", "web-2"))
        docker.remove(cid("web-1"))
        docker.emit("die", cid("web-1"))
        await watcher.wait_until(has("web-2"))
        events = [e["text"] for e in lb.statistics()["events"]]
        names = {b["address"]: b["name"] for b in lb.statistics()["backends"]}
    lines = [r.getMessage() for r in caplog.records if r.name == "pylb.discovery"]
    added = [line for line in lines if " added to " in line]
    removed = [line for line in lines if " removed from " in line]
    assert any(line.startswith(f"docker: backend web-1 ({address('web-1')}) added to service") for line in added)
    assert any(line.startswith(f"docker: backend web-2 ({address('web-2')}) added to service") for line in added)
    assert any(line.startswith(f"docker: backend web-1 ({address('web-1')}) removed from") for line in removed)
    assert events == [*added, *removed] and len(events) == 3, events
    assert names == {address("web-2"): "web-2"}
    assert "hunter2" not in "\n".join(lines + events)
