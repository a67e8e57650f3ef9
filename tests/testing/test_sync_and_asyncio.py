"""The kit from synchronous code and from asyncio: trio runs in a thread."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from typing import Any

import httpx
import pytest

import pylb
import pylb.testing
from pylb.testing import run_backends, run_balancer
from pylb.testing.faults import Latency


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["X-Served-By"], response.read().decode()


def refused(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_run_balancer_in_plain_synchronous_code() -> None:
    with run_backends(2) as backends, run_balancer(backends, health=pylb.HealthCheck(enabled=False)) as lb:
        assert [get(lb.url)[1] for _ in range(4)] == ["backend-1", "backend-2", "backend-1", "backend-2"]
        assert lb.served == ["backend-1", "backend-2", "backend-1", "backend-2"]
        assert [r.backend for r in lb.records][:2] == [backends[0].backend, backends[1].backend]
        result = lb.set_backends([backends[1]])
        assert result.removed == (backends[0].backend,)
        assert {get(lb.url)[1] for _ in range(2)} == {"backend-2"}
        stats = lb.wait_until(lambda s: s["served"].get("backend-2") == 4)
        assert stats["backends"]["backend-2"]["served"] == 4
        with lb.fault(backends[1], Latency(50)):
            assert get(lb.url)[0] == 200
        urls = [lb.url, backends[0].url]
    assert all(refused(url) for url in urls)  # everything stopped with the blocks


def test_wait_until_gives_up_with_the_statistics() -> None:
    with run_backends(1) as backends, run_balancer(backends) as lb:
        with pytest.raises(TimeoutError, match=r"still false after 0.05 s; statistics: \{"):
            lb.wait_until(lambda s: s["requests"] > 0, timeout=0.05)


def test_the_trio_api_from_asyncio_names_the_way_in() -> None:
    async def main() -> None:
        async with pylb.open_balancer([]):
            pass

    with pytest.raises(RuntimeError) as caught:
        asyncio.run(main())
    assert str(caught.value) == (
        "pylb.open_balancer runs under trio, not asyncio: from asyncio or synchronous code use "
        "`with pylb.testing.run_balancer(...)` (it runs trio in a thread of its own)"
    )


@pytest.mark.parametrize(
    ("call", "name", "way_in"),
    [
        (lambda: pylb.testing.open_backends(1), "pylb.testing.open_backends", "run_backends"),
        (lambda: pylb.testing.open_hello(), "pylb.testing.open_hello", "run_backends"),
        (lambda: pylb.testing.open_test_balancer([]), "pylb.testing.open_test_balancer", "run_balancer"),
    ],
)
def test_the_trio_kit_from_asyncio_names_its_way_in(call: Any, name: str, way_in: str) -> None:
    async def main() -> None:
        async with call():
            pass

    with pytest.raises(RuntimeError) as caught:
        asyncio.run(main())
    assert str(caught.value).startswith(f"{name} runs under trio, not asyncio: ")
    assert f"`with pylb.testing.{way_in}(...)`" in str(caught.value)


def test_run_balancer_serves_an_asyncio_program() -> None:
    async def main() -> list[str]:
        with run_backends(2) as backends, run_balancer(backends) as lb:
            async with httpx.AsyncClient() as client:
                answers = await asyncio.gather(*(client.get(lb.url) for _ in range(4)))
            await asyncio.to_thread(lb.wait_until, lambda s: s["requests"] == 4)
            return sorted(r.headers["X-Served-By"] for r in answers)

    assert asyncio.run(main()) == ["backend-1", "backend-1", "backend-2", "backend-2"]
