"""The Swarm watcher's loop against a fake manager: events, polling (tasks have
no events), the stopping set by task id, faults, where pylb runs, and tasks
still starting joined by probe. Real threads, no Docker."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from fake_engines import END, FakeStream, Target
from fakes import cid, network, nid, service, task, task_ip

from pylb.discovery import SwarmWatcher, open_swarm_discovery
from pylb.discovery.swarm_watch import EVENT_FILTERS

WEB = service("shop_web", labels={"pylb.port": "80"}, networks=("front",))


class FakeSwarm:
    """A manager: services and tasks the test edits, event streams it can end."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.services: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.networks = [network("front"), network("back"), network("ingress", ingress=True)]
        self.containers: dict[str, dict[str, Any]] = {}
        self.streams: list[FakeStream] = []
        self.list_error: Exception | None = None
        self.listings = 0

    def add(self, *items: dict[str, Any]) -> None:
        with self.lock:
            for item in items:
                (self.services if "Spec" in item and "Mode" in item["Spec"] else self.tasks)[item["ID"]] = item

    def remove(self, ident: str) -> None:
        with self.lock:
            self.tasks.pop(ident, None)
            self.services.pop(ident, None)

    def emit(self, kind: str, action: str, ident: str, **attributes: str) -> None:
        for stream in self.streams:
            if not stream.closed:
                stream.queue.put({"Type": kind, "Action": action, "Actor": {"ID": ident, "Attributes": attributes}})

    def end_streams(self) -> None:
        for stream in self.streams:
            stream.queue.put(END)

    def connect(self) -> FakeManager:
        return FakeManager(self)


class FakeManager:
    def __init__(self, swarm: FakeSwarm) -> None:
        self.swarm = swarm

    def events(self, filters: Mapping[str, list[str]]) -> FakeStream:
        assert filters == EVENT_FILTERS
        stream = FakeStream()
        self.swarm.streams.append(stream)
        return stream

    def _listing(self, what: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        if self.swarm.list_error is not None:
            raise self.swarm.list_error
        with self.swarm.lock:
            return copy.deepcopy(list(what.values()))

    def services(self) -> list[dict[str, Any]]:
        self.swarm.listings += 1
        return self._listing(self.swarm.services)

    def tasks(self) -> list[dict[str, Any]]:
        return [t for t in self._listing(self.swarm.tasks) if t["DesiredState"] == "running"]

    def networks(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.swarm.networks)

    def containers(self) -> list[dict[str, Any]]:
        return self._listing(self.swarm.containers)

    def inspect(self, ident: str) -> dict[str, Any] | None:
        with self.swarm.lock:
            return copy.deepcopy(self.swarm.containers.get(ident))

    def close(self) -> None:
        pass


def addresses(*tasks: dict[str, Any], port: int = 80) -> set[str]:
    return {f"{task_ip(t)}:{port}" for t in tasks}


def has(*tasks: dict[str, Any]) -> Any:
    wanted = addresses(*tasks)
    return lambda snapshot: {str(b) for s in snapshot.services for b in s.backends} == wanted


@asynccontextmanager
async def watching(swarm: FakeSwarm, target: Target, **kwargs: Any) -> AsyncIterator[SwarmWatcher]:
    kwargs.setdefault("coalesce", 0.01)
    kwargs.setdefault("backoff", (0.01, 0.05))
    kwargs.setdefault("poll", 30)
    kwargs.setdefault("own", "")
    with trio.fail_after(10):
        async with open_swarm_discovery(target, connect=swarm.connect, **kwargs) as watcher:
            yield watcher


async def test_service_events_and_polling_rebuild_the_world() -> None:
    swarm, target = FakeSwarm(), Target()
    one, two, three = task(WEB, 1), task(WEB, 2), task(WEB, 3)
    swarm.add(WEB, one)
    async with watching(swarm, target, poll=0.05) as watcher:
        await watcher.wait_until(has(one))
        swarm.add(two)  # no event: tasks have none; the poll finds it
        await watcher.wait_until(has(one, two))
    async with watching(swarm, target, poll=30) as watcher:  # no polling during this block
        await watcher.wait_until(has(one, two))
        swarm.add(three)
        swarm.emit("service", "update", WEB["ID"], name="shop_web", **{"replicas.new": "3", "replicas.old": "2"})
        await watcher.wait_until(has(one, two, three))
        assert watcher.statistics()["backends"] == 3 and "SwarmWatcher" in repr(watcher)


async def test_a_tasks_container_killed_here_leaves_at_once_by_its_task_id() -> None:
    swarm, target = FakeSwarm(), Target()
    one, two = task(WEB, 1), task(WEB, 2)
    swarm.add(WEB, one, two)
    container = cid(f"container:{one['ID']}")
    async with watching(swarm, target, coalesce=30) as watcher:  # no relisting in this block
        await watcher.wait_until(has(one, two))
        listings = swarm.listings
        swarm.emit("container", "kill", container, signal="15", **{"com.docker.swarm.task.id": one["ID"]})
        await watcher.wait_until(has(two))
        assert watcher.stopping == {one["ID"]} and swarm.listings == listings
        swarm.emit("container", "kill", cid("plain"), signal="15")  # a container that is no task: nothing leaves
        swarm.emit("container", "kill", cid(two["ID"]), signal="1", **{"com.docker.swarm.task.id": two["ID"]})  # SIGHUP
        assert target.backends() == addresses(two)
    async with watching(swarm, target) as watcher:
        await watcher.wait_until(has(one, two))
        swarm.emit("container", "kill", container, signal="15", **{"com.docker.swarm.task.id": one["ID"]})
        await watcher.wait_until(has(two))
        swarm.add(dict(one, DesiredState="shutdown"))
        swarm.emit("container", "die", container, **{"com.docker.swarm.task.id": one["ID"]})
        while watcher.stopping:  # the listing no longer has it: forgotten
            await trio.sleep(0.01)
        assert target.backends() == addresses(two)


async def test_a_task_asked_to_stop_leaves_on_the_next_listing() -> None:
    swarm, target = FakeSwarm(), Target()
    one, two = task(WEB, 1), task(WEB, 2)
    swarm.add(WEB, one, two)
    async with watching(swarm, target, poll=0.05) as watcher:
        await watcher.wait_until(has(one, two))
        swarm.add(dict(two, DesiredState="shutdown"))  # scaled down: still running for now
        await watcher.wait_until(has(one))


async def test_errors_keep_the_pool_and_the_stream_end_resyncs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pylb.discovery")
    swarm, target = FakeSwarm(), Target()
    one, two = task(WEB, 1), task(WEB, 2)
    swarm.add(WEB, one)
    async with watching(swarm, target, poll=0.02) as watcher:
        await watcher.wait_until(has(one))
        swarm.list_error = RuntimeError("503 Server Error: This node is not a swarm manager")
        while watcher.faults < 3:
            await trio.sleep(0.01)
        assert target.backends() == addresses(one), "a fault never empties the pool"
        swarm.list_error = None
        swarm.add(two)
        await watcher.wait_until(has(one, two))
        swarm.end_streams()
        while watcher.sessions < 2:
            await trio.sleep(0.01)
        await watcher.wait_until(lambda _: watcher.connected)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("This node is not a swarm manager" in line for line in lines) == 1
    assert any(line.startswith("swarm: reconnected") for line in lines)
    assert sum("pylb runs in no container of the swarm" in line for line in lines) == 1  # own="": said once


async def test_pylb_finds_its_task_when_its_container_is_on_another_node(monkeypatch: pytest.MonkeyPatch) -> None:
    from pylb.discovery import own

    me = service("pylb", networks=("back",))
    mine = task(me, 1)
    front_only, both = WEB, service("api", labels={"pylb.port": "80"}, networks=("front", "back"))
    api = task(both, 1)
    swarm, target = FakeSwarm(), Target()
    swarm.add(me, mine, front_only, task(front_only, 1), both, api)
    container = mine["Status"]["ContainerStatus"]["ContainerID"]
    evidence = own.Evidence(mountinfo=f"1 2 0:3 /var/lib/docker/containers/{container}/hostname /etc/hostname rw")
    monkeypatch.setattr(own, "read_evidence", lambda environ=None: evidence)
    async with watching(swarm, target, own=None) as watcher:
        await watcher.wait_until(lambda s: bool(s.services))
    assert target.backends() == {f"{task_ip(api, 'back')}:80"}  # on pylb's network; pylb itself is no backend
    warnings = watcher.statistics()["warnings"]
    assert isinstance(warnings, list) and any("shop_web skipped: it shares no network with pylb" in w for w in warnings)


async def test_a_starting_task_joins_when_pylbs_probe_passes() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    web = service("shop_web", labels={"pylb.port": str(port)}, networks=("front",))
    ready, starting = (
        task(web, 1, ips={"front": "127.0.0.1"}),
        task(web, 2, state="starting", ips={"front": "127.0.0.2"}),
    )
    closed = task(web, 3, state="starting", ips={"front": "127.0.0.3"})  # nothing listens there
    swarm, target = FakeSwarm(), Target()
    swarm.add(web, starting, closed)
    async with watching(swarm, target) as watcher:
        await watcher.wait_synced()
        assert target.backends() == set() and set(watcher.pending) == {
            f"shop_web.2.{starting['ID'][:12]}",
            f"shop_web.3.{closed['ID'][:12]}",
        }
        async with trio.open_nursery() as nursery:
            second = (await trio.open_tcp_listeners(port, host="127.0.0.2"))[0]
            nursery.start_soon(trio.serve_listeners, lambda s: s.aclose(), [listener, second])
            with trio.fail_after(5):
                await watcher.wait_until(lambda s: bool(s.services))
            nursery.cancel_scope.cancel()
        assert target.backends() == {f"127.0.0.2:{port}"}
        assert watcher.statistics()["joined_by_probe"] == 1 and watcher.statistics()["pending"] == 1
        swarm.add(web, ready)
        swarm.emit("service", "update", web["ID"])
        await watcher.wait_until(lambda s: len(s.services[0].backends) == 2)


def test_event_filters_ask_for_services_nodes_networks_and_containers() -> None:
    assert set(EVENT_FILTERS["type"]) == {"service", "node", "network", "container"}
    assert {"create", "update", "remove", "kill", "stop", "health_status"} <= set(EVENT_FILTERS["event"])
    assert nid("front") != nid("back")


async def test_polling_hurries_while_a_task_is_scheduled_but_not_started() -> None:
    swarm, target = FakeSwarm(), Target()
    one, two = task(WEB, 1), task(WEB, 2)
    swarm.add(WEB, one, task(WEB, 2, state="preparing"))
    async with watching(swarm, target, poll=30) as watcher:
        await watcher.wait_until(has(one))
        swarm.add(two)  # its container started: no event says so
        with trio.fail_after(5):
            await watcher.wait_until(has(one, two))
        await trio.sleep(0.5)  # a hurried listing already due may still come
        listings = swarm.listings
        await trio.sleep(0.6)
        assert swarm.listings == listings  # nothing on its way: back to one listing per `poll`
