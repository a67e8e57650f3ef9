"""A user's trio tests: the same kit as async context managers, and trio's MockClock.

Run: pip install 'pylb[testing]' pytest-trio httpx && python -m pytest examples/
Each test is marked ``@pytest.mark.trio`` (or set ``trio_mode = true`` in the
project's pytest settings).
"""

import httpx
import pytest
import trio
import trio.testing

import pylb
from pylb.testing import open_backends, open_test_balancer
from pylb.testing.faults import Latency, Timeout


@pytest.mark.trio
async def test_roundrobin_then_a_swap() -> None:
    async with open_backends(2) as (one, two), open_test_balancer([one, two]) as lb:
        async with httpx.AsyncClient() as client:
            assert [(await client.get(lb.url)).headers["X-Served-By"] for _ in range(2)] == ["backend-1", "backend-2"]
            lb.set_backends([two])  # atomic: no new request goes to backend-1
            assert (await client.get(lb.url)).headers["X-Served-By"] == "backend-2"
        stats = await lb.wait_until(lambda s: s["served"] == {"backend-1": 1, "backend-2": 2})
        assert stats["backends"]["backend-2"]["served"] == 2


@pytest.mark.trio
async def test_latency_on_the_request_path() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one]) as lb:
        async with httpx.AsyncClient() as client, lb.fault(one, Latency(100), "upstream"):
            start = trio.current_time()
            await client.get(lb.url)
            assert trio.current_time() - start >= 0.1


@pytest.mark.trio
async def test_a_30_second_timeout_in_no_time(autojump_clock: trio.testing.MockClock) -> None:
    timeouts = pylb.Timeouts(server=30, connect=3600)
    health = pylb.HealthCheck(enabled=False)
    async with open_backends(1) as (one,), open_test_balancer([one], timeouts=timeouts, health=health) as lb:
        async with httpx.AsyncClient(timeout=None) as client, lb.fault(one, Timeout()):
            start = trio.current_time()
            assert (await client.get(lb.url)).status_code == 504
            assert trio.current_time() - start >= 30  # on the mock clock: the test takes milliseconds
