"""Balancing end to end: roundrobin, weights, leastconn, hot swaps, keep-alive."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import trio
from e2e_kit import Backend, Peer, echo_response, open_backend, open_echo, port_of, proxied, request_bytes, served_by

import pylb
from pylb.testing import open_hello, open_hellos

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers


async def _client(port: int, n: int, seen: Counter[str]) -> None:
    async with await Peer.connect(port) as peer:
        for i in range(n):
            resp = await peer.request("GET", f"/{i}")
            assert resp.status == 200, resp
            seen[served_by(resp)] += 1


async def test_roundrobin_1000_requests_over_10_keepalive_connections_split_exactly() -> None:
    async with open_hellos(2) as hellos, pylb.open_balancer([h.backend for h in hellos]) as lb:
        seen: Counter[str] = Counter()
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(_client, port_of(lb.url), 100, seen)
        assert seen == {"hello-1": 500, "hello-2": 500}
        assert [h.requests for h in hellos] == [500, 500]
        assert lb.statistics()["requests"] == 1000


async def test_weights_3_to_1_are_smooth_and_exact() -> None:
    async with open_hello("a") as a, open_hello("b") as b:
        backends = [pylb.Backend.parse(f"127.0.0.1:{a.backend.port},weight=3"), f"127.0.0.1:{b.backend.port}"]
        async with pylb.open_balancer(backends) as lb, await Peer.connect(port_of(lb.url)) as peer:
            order = [served_by(await peer.request()) for _ in range(400)]
    # smooth weighted round robin: a a b a, repeated, never b twice nor a four times in a row
    assert order[:8] == ["a", "a", "b", "a", "a", "a", "b", "a"]
    assert order == ["a", "a", "b", "a"] * 100
    assert Counter(order) == {"a": 300, "b": 100}
    assert (a.requests, b.requests) == (300, 100)


async def test_weight_survives_cli_style_text_in_set_backends() -> None:
    async with open_hello("a") as a, open_hello("b") as b, pylb.open_balancer([a.backend, b.backend]) as lb:
        lb.set_backends([f"127.0.0.1:{a.backend.port}", f"127.0.0.1:{b.backend.port},weight=3"])
        async with await Peer.connect(port_of(lb.url)) as peer:
            order = [served_by(await peer.request()) for _ in range(40)]
    assert Counter(order) == {"a": 10, "b": 30}


async def test_leastconn_sends_most_requests_to_the_fast_backend() -> None:
    seen: Counter[str] = Counter()
    async with (
        open_hello("slow", delay=0.2) as slow,
        open_hello("fast") as fast,
        pylb.open_balancer([slow.backend, fast.backend], balance="leastconn") as lb,
        trio.open_nursery() as nursery,
    ):
        for _ in range(4):
            nursery.start_soon(_client, port_of(lb.url), 25, seen)
    assert sum(seen.values()) == 100
    assert seen["fast"] > 3 * seen["slow"], seen
    assert (slow.requests, fast.requests) == (seen["slow"], seen["fast"])


async def test_roundrobin_with_a_slow_backend_still_alternates() -> None:
    # The contrast that makes the leastconn test meaningful.
    seen: Counter[str] = Counter()
    async with (
        open_hello("slow", delay=0.05) as slow,
        open_hello("fast") as fast,
        pylb.open_balancer([slow.backend, fast.backend]) as lb,
        trio.open_nursery() as nursery,
    ):
        for _ in range(4):
            nursery.start_soon(_client, port_of(lb.url), 5, seen)
    assert seen == {"slow": 10, "fast": 10}


async def test_set_backends_100_swaps_during_10000_requests_lose_nothing() -> None:
    clients, per_client, swaps_wanted = 8, 1250, 100
    async with open_hellos(4) as hellos:
        by_name = {h.name: h for h in hellos}
        pools = [list(c) for c in itertools.combinations(sorted(by_name), 2)]  # 6 different pairs
        generations: list[set[str]] = [set(pools[0])]
        async with pylb.open_balancer([by_name[n].backend for n in pools[0]]) as lb:
            done = 0
            failures: list[str] = []

            def swap_now() -> None:
                names = pools[len(generations) % len(pools)]
                lb.set_backends([by_name[n].backend for n in names])
                generations.append(set(names))

            async def client(k: int) -> None:
                nonlocal done
                try:
                    peer = await Peer.connect(port_of(lb.url))
                except OSError as exc:
                    failures.append(f"client {k}: connect: {exc!r}")
                    return
                async with peer:
                    for i in range(per_client):
                        started = len(generations) - 1
                        try:
                            resp = await peer.request("GET", f"/{k}/{i}")
                        except Exception as exc:
                            failures.append(f"client {k} request {i}: {exc!r}")
                            return
                        ended = len(generations) - 1
                        allowed = set().union(*generations[started : ended + 1])
                        if resp.status != 200:
                            failures.append(f"client {k} request {i}: {resp.status} {resp.body[:200]!r}")
                        elif served_by(resp) not in allowed:
                            failures.append(f"request {i} went to {served_by(resp)}, pools were {allowed}")
                        done += 1
                        if done % (clients * per_client // swaps_wanted) == 0:
                            swap_now()

            async with trio.open_nursery() as nursery:
                for k in range(clients):
                    nursery.start_soon(client, k)
            assert failures == []
            assert done == clients * per_client
            assert len(generations) - 1 == swaps_wanted
            assert lb.statistics()["errors"] == {}
            assert sum(h.requests for h in hellos) == clients * per_client
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


async def test_after_set_backends_returns_the_removed_backend_gets_no_new_request() -> None:
    async with open_hellos(2) as (a, b), pylb.open_balancer([a.backend]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            for _ in range(5):
                assert served_by(await peer.request()) == "hello-1"
            result = lb.set_backends([b.backend])
            assert result.removed == (a.backend,) and result.added == (b.backend,)
            before = a.requests
            # same client connection (its idle backend connection went to hello-1)
            for _ in range(20):
                assert served_by(await peer.request()) == "hello-2"
        async with await Peer.connect(port_of(lb.url)) as peer:
            for _ in range(20):
                assert served_by(await peer.request()) == "hello-2"
        assert a.requests == before == 5


async def test_a_removed_backend_finishes_its_request_in_flight() -> None:
    arrived, release = trio.Event(), trio.Event()

    async def held(server: Backend, peer: Peer) -> None:
        while (req := await server.next_request(peer)) is not None:
            arrived.set()
            await release.wait()
            await peer.send(echo_response("old")(req))

    async with open_backend(held, "old") as old, open_hello("new") as new, pylb.open_balancer([old.backend]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            await peer.send(request_bytes())
            await arrived.wait()
            lb.set_backends([new.backend])
            assert lb.statistics()["pool"]["draining"] != []  # type: ignore[index]
            release.set()
            resp = await peer.read_response()
            assert resp.status == 200 and served_by(resp) == "old"
            assert served_by(await peer.request()) == "new"
        assert lb.statistics()["pool"]["draining"] == []  # type: ignore[index]
        assert old.requests == 1


async def test_keepalive_on_both_sides_reuses_backend_connections() -> None:
    async with open_hellos(2) as hellos, pylb.open_balancer([h.backend for h in hellos]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            for _ in range(200):
                assert (await peer.request()).status == 200
        upstream = lb.statistics()["upstream"]
        assert upstream["dials"] <= 2, upstream  # type: ignore[index]
        assert upstream["reuses"] >= 198, upstream  # type: ignore[index]
        # new client connections, one request each, still reuse the backend connections
        for _ in range(20):
            async with await Peer.connect(port_of(lb.url)) as peer:
                assert (await peer.request()).status == 200
        assert lb.statistics()["upstream"]["dials"] <= 2  # type: ignore[index]


async def test_pipelined_requests_are_answered_in_order_and_balanced_one_by_one() -> None:
    async with open_echo("e1") as e1, open_echo("e2") as e2, proxied([e1.backend, e2.backend]) as (_lb, peer):
        body = b"pipelined body"
        batch = b"".join(
            request_bytes("POST" if i % 3 == 0 else "GET", f"/p{i}", body=body if i % 3 == 0 else b"") for i in range(9)
        )
        await peer.send(batch)
        responses = [await peer.read_response() for _ in range(9)]
        # and the connection is still good afterwards
        assert (await peer.request("GET", "/after")).json()["target"] == "/after"
    assert [r.json()["target"] for r in responses] == [f"/p{i}" for i in range(9)]
    assert [r.json()["body_length"] for r in responses] == [len(body) if i % 3 == 0 else 0 for i in range(9)]
    assert [served_by(r) for r in responses] == ["e1", "e2"] * 4 + ["e1"]
    assert e1.requests + e2.requests == 10


async def test_set_backends_closes_idle_connections_to_the_removed_backend() -> None:
    closed = trio.Event()

    async def handler(server: Backend, peer: Peer) -> None:
        try:
            while (req := await server.next_request(peer)) is not None:
                await peer.send(echo_response("old")(req))
        finally:
            closed.set()

    async with open_backend(handler) as old, open_hello("new") as new, pylb.open_balancer([old.backend]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            assert served_by(await peer.request()) == "old"
        assert lb.statistics()["upstream"]["idle"] == 1  # type: ignore[index]
        lb.set_backends([new.backend])
        await closed.wait()  # the backend saw its idle connection closed
        assert lb.statistics()["upstream"]["idle"] == 0  # type: ignore[index]
