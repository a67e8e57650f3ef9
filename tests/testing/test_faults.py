"""Faults on live connections, seen from a client of the test balancer (trio).

Each test shows what a user sees: the status pylb answers, the bytes that
arrive, which backend served, and, for delays, that at least the injected
delay passed (a lower bound, never an upper one).
"""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

import pylb
from pylb.testing import open_backends, open_test_balancer
from pylb.testing.faults import Down, Latency, LimitData, ResetPeer, Timeout

NO_CHECKS = pylb.HealthCheck(enabled=False)


async def test_downstream_latency_delays_the_answer_of_that_backend_only() -> None:
    async with open_backends(2) as (one, two), open_test_balancer([one, two], health=NO_CHECKS) as lb:
        async with httpx.AsyncClient() as client:
            with lb.fault(one, Latency(200)):
                start = trio.current_time()
                first = await client.get(lb.url)
                slow = trio.current_time() - start
                second = await client.get(lb.url)
            assert (first.headers["X-Served-By"], second.headers["X-Served-By"]) == ("backend-1", "backend-2")
            assert slow >= 0.2
            assert lb.served == ["backend-1", "backend-2"]


async def test_upstream_latency_delays_the_request_on_its_way_to_the_backend() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS) as lb:
        async with httpx.AsyncClient() as client:
            async with lb.fault(one, Latency(150), "upstream"):
                start = trio.current_time()
                assert (await client.get(lb.url)).status_code == 200
                assert trio.current_time() - start >= 0.15


async def test_a_fault_applies_to_a_backend_connection_already_open_and_its_removal_restores_service() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS) as lb:
        async with httpx.AsyncClient() as client:
            assert (await client.get(lb.url)).status_code == 200
            assert lb.statistics()["backends"]["backend-1"]["open"] == 1  # pylb keeps it for the next request
            with lb.fault(one, Latency(200)):
                start = trio.current_time()
                assert (await client.get(lb.url)).status_code == 200
                assert trio.current_time() - start >= 0.2
            start = trio.current_time()
            assert (await client.get(lb.url)).text == "Hello from backend-1\n"
        relay = lb.statistics()["backends"]["backend-1"]
        assert relay["accepted"] == 1  # the three requests went over the one connection
        assert relay["faults"] == []


async def test_reset_peer_gives_the_client_a_502_from_pylb() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS) as lb:
        async with httpx.AsyncClient() as client:
            with lb.fault(one, ResetPeer()):
                response = await client.get(lb.url)
            assert response.status_code == 502
            assert response.headers.get("X-Served-By") is None  # pylb's own answer
            assert (await client.get(lb.url)).status_code == 200  # removed: served again
        assert [r.status for r in lb.records] == [502, 200]


async def test_reset_peer_on_one_backend_sends_a_get_to_the_other() -> None:
    async with open_backends(2) as (one, two), open_test_balancer([one, two], health=NO_CHECKS) as lb:
        async with httpx.AsyncClient() as client:
            with lb.fault(one, ResetPeer()):
                response = await client.get(lb.url)  # roundrobin picks backend-1 first
            assert response.status_code == 200
            assert response.headers["X-Served-By"] == "backend-2"


async def test_limit_data_cuts_a_response_short_and_the_client_sees_it() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS) as lb:
        one.respond(body=b"x" * 100_000)
        async with httpx.AsyncClient() as client:
            with lb.fault(one, LimitData(2000)):
                with pytest.raises(httpx.HTTPError):  # never a short body that looks complete
                    await client.get(lb.url)
            assert len((await client.get(lb.url)).content) == 100_000


async def test_down_refuses_connections_pylb_redispatches_then_marks_the_backend_down() -> None:
    checks = pylb.HealthCheck(inter=0.2, rise=1, fall=2)
    async with open_backends(2) as (one, two), open_test_balancer([one, two], health=checks) as lb:
        async with httpx.AsyncClient() as client:
            with lb.fault(one, Down()):
                answers = [(await client.get(lb.url)).headers["X-Served-By"] for _ in range(4)]
                assert answers == ["backend-2"] * 4  # refused connects go to the other backend
                stats = await lb.wait_until(lambda s: not s["backends"]["backend-1"]["healthy"])
                assert stats["backends"]["backend-1"]["down"] is True
            await lb.wait_until(lambda s: s["backends"]["backend-1"]["healthy"])  # back at the same address
            answers = {(await client.get(lb.url)).headers["X-Served-By"] for _ in range(2)}
            assert answers == {"backend-1", "backend-2"}


async def test_down_closes_the_connections_already_open() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS) as lb:
        async with httpx.AsyncClient() as client:
            assert (await client.get(lb.url)).status_code == 200
            assert lb.statistics()["backends"]["backend-1"]["open"] == 1
            with lb.fault(one, Down()):
                await lb.wait_until(lambda s: s["backends"]["backend-1"]["open"] == 0)
                assert (await client.get(lb.url)).status_code in (502, 503)  # refused, and no other backend


async def test_timeout_keeps_the_backend_silent_until_pylb_answers_504() -> None:
    timeouts = pylb.Timeouts(server=0.5)
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS, timeouts=timeouts) as lb:
        async with httpx.AsyncClient() as client:
            with lb.fault(one, Timeout()):
                start = trio.current_time()
                response = await client.get(lb.url)
            assert response.status_code == 504
            assert trio.current_time() - start >= 0.5
            assert (await client.get(lb.url)).status_code == 200


async def test_a_timeout_with_a_duration_closes_the_connection_then() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS) as lb:
        async with httpx.AsyncClient() as client:
            with lb.fault(one, Timeout(100)):
                start = trio.current_time()
                response = await client.get(lb.url)
            # nothing came back and the connection closed: pylb answers the client itself
            assert response.status_code == 502
            assert trio.current_time() - start >= 0.1


async def test_faults_are_checked_and_name_the_backends() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS) as lb:
        with pytest.raises(pylb.ConfigError, match="'sideways' must be 'upstream' or 'downstream'"):
            lb.fault(one, Latency(1), "sideways")  # type: ignore[arg-type]
        with pytest.raises(pylb.ConfigError, match=r"not a backend of this balancer \(known: backend-1\)"):
            lb.fault("127.0.0.1:9", Down())
        with lb.fault("backend-1", Latency(1)) as scope:  # by name, too
            assert "active" in repr(scope)
            faults = lb.statistics()["backends"]["backend-1"]["faults"]
            assert faults == ["<Applied Latency(ms=1, jitter_ms=0.0) downstream>"]


async def test_a_hung_backend_on_a_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    # every wait of pylb and of the kit is on trio's clock: pylb's 30 s server timeout passes instantly
    timeouts = pylb.Timeouts(server=30, connect=3600)
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS, timeouts=timeouts) as lb:
        async with httpx.AsyncClient(timeout=None) as client:
            with lb.fault(one, Timeout()):
                start = trio.current_time()
                response = await client.get(lb.url)
            assert response.status_code == 504
            assert trio.current_time() - start >= 30
