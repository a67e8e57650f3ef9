"""The embedding API: ``pylb.serve`` in your nursery, ``open_balancer``."""

from __future__ import annotations

import functools
import socket

import pytest
import trio
from e2e_kit import Peer, open_echo, port_of, served_by

import pylb
from pylb.testing import open_hello, open_hellos


def _config(*binds: str, backends: tuple[pylb.Backend, ...] = ()) -> pylb.Config:
    return pylb.Config(binds=tuple(pylb.Bind.parse(b) for b in binds), backends=backends)


async def test_nursery_start_serve_returns_the_bound_addresses() -> None:
    async with open_hello("h") as hello, trio.open_nursery() as nursery:
        addresses = await nursery.start(pylb.serve, _config("127.0.0.1:0", backends=(hello.backend,)))
        assert len(addresses) == 1
        (address,) = addresses
        assert isinstance(address, pylb.BoundAddress)
        assert (address.scheme, address.host) == ("http", "127.0.0.1")
        assert address.port != 0
        assert address.url == f"http://127.0.0.1:{address.port}"
        async with await Peer.connect(address.port) as peer:
            resp = await peer.request()
            assert resp.status == 200 and served_by(resp) == "h"
        nursery.cancel_scope.cancel()
    assert hello.requests == 1


async def test_serve_with_two_listeners_each_resolved_and_named_in_x_forwarded_port() -> None:
    async with open_echo() as echo, trio.open_nursery() as nursery:
        config = _config("127.0.0.1:0", "http://127.0.0.1:0", backends=(echo.backend,))
        addresses = await nursery.start(pylb.serve, config)
        ports = [a.port for a in addresses]
        assert len(set(ports)) == 2 and 0 not in ports
        for port in ports:
            async with await Peer.connect(port) as peer:
                resp = await peer.request()
                assert f"X-Forwarded-Port: {port}\r\n" in resp.json()["head"]
        nursery.cancel_scope.cancel()


async def test_serve_with_your_own_pool_swapped_while_it_runs() -> None:
    pool = pylb.Pool()
    async with open_hellos(2) as (a, b), trio.open_nursery() as nursery:
        (address,) = await nursery.start(functools.partial(pylb.serve, _config("127.0.0.1:0"), pool=pool))
        async with await Peer.connect(address.port) as peer:
            assert (await peer.request()).status == 503
            pool.swap(pylb.Snapshot.of_backends([a.backend]))
            assert served_by(await peer.request()) == "hello-1"
            pool.swap(pylb.Snapshot.of_backends([b.backend]))
            assert served_by(await peer.request()) == "hello-2"
        nursery.cancel_scope.cancel()


async def test_cancelling_serve_closes_the_listener() -> None:
    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(pylb.serve, _config("127.0.0.1:0"))
        nursery.cancel_scope.cancel()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", address.port)


async def test_serve_on_a_port_in_use_raises_bind_error_from_start() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        async with trio.open_nursery() as nursery:
            with pytest.raises(pylb.BindError, match=str(port)):
                await nursery.start(pylb.serve, _config(f"127.0.0.1:{port}"))


async def test_open_balancer_on_a_port_in_use_raises_bind_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(pylb.BindError, match=str(port)):
            async with pylb.open_balancer(["127.0.0.1:9"], bind=f"127.0.0.1:{port}"):
                pass


async def test_open_balancer_rejects_bad_backend_text() -> None:
    with pytest.raises(pylb.ConfigError, match="nonsense"):
        async with pylb.open_balancer(["nonsense"]):
            pass


async def test_open_balancer_url_and_statistics() -> None:
    async with open_hello("h") as hello, pylb.open_balancer([hello.backend]) as lb:
        assert lb.url == lb.urls[0] and port_of(lb.url) != 0
        async with await Peer.connect(port_of(lb.url)) as peer:
            for _ in range(3):
                assert (await peer.request()).status == 200
        stats = lb.statistics()
        assert stats["requests"] == 3
        assert stats["errors"] == {}
        assert stats["pool"]["backends"][0]["requests"] == 3  # type: ignore[index]
        assert str(port_of(lb.url)) in repr(lb)
