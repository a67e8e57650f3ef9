"""Programmable backends: what they answer, what they log, through pylb and not."""

from __future__ import annotations

import http.client

import httpx
import pytest
import trio

import pylb
from pylb.testing import open_backends, open_test_balancer

NO_CHECKS = pylb.HealthCheck(enabled=False)


async def test_a_backend_says_who_it_is_and_logs_what_it_received() -> None:
    async with open_backends(names=["web"]) as (web,), httpx.AsyncClient() as client:
        response = await client.post(web.url + "/orders?id=7", content=b"{}", headers={"X-Test": "1"})
        assert (response.status_code, response.text) == (200, "Hello from web\n")
        assert response.headers["X-Served-By"] == "web"
        (request,) = web.requests
        assert (request.method, request.target, request.body) == ("POST", "/orders?id=7", b"{}")
        assert request.header("x-test") == "1"


async def test_answers_for_the_next_n_requests_then_the_standing_one() -> None:
    async with open_backends(1) as (one,), httpx.AsyncClient() as client:
        one.respond(201, {"X-Kind": "standing"}, "made")
        one.respond(503, body="busy", times=2)
        answers = [(await client.get(one.url)) for _ in range(4)]
        assert [(r.status_code, r.text) for r in answers] == [(503, "busy")] * 2 + [(201, "made")] * 2
        assert answers[2].headers["X-Kind"] == "standing"
        one.respond()  # the default again
        assert (await client.get(one.url)).text == "Hello from backend-1\n"


async def test_a_delayed_answer_takes_at_least_its_delay() -> None:
    async with open_backends(1) as (one,), httpx.AsyncClient() as client:
        one.respond(delay_ms=150)
        start = trio.current_time()
        assert (await client.get(one.url)).status_code == 200
        assert trio.current_time() - start >= 0.15


def read_cut(port: int) -> tuple[int, bytes, BaseException]:
    """A GET whose body ends early: the status, the bytes read, the error."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    with pytest.raises((http.client.IncompleteRead, ConnectionResetError)) as caught:
        response.read()
    partial = caught.value.partial if isinstance(caught.value, http.client.IncompleteRead) else b""
    conn.close()
    return response.status, partial, caught.value


async def test_close_or_reset_mid_body_through_pylb() -> None:
    async with open_backends(1) as (one,), open_test_balancer([one], health=NO_CHECKS, relay=False) as lb:
        port = int(lb.url.rsplit(":", 1)[1])
        one.respond(body=b"a" * 1000, close_after=10, times=1)
        status, partial, error = await trio.to_thread.run_sync(read_cut, port)
        assert status == 200 and isinstance(error, (http.client.IncompleteRead, ConnectionResetError))
        assert len(partial) <= 10
        one.respond(body=b"b" * 1000, reset_after=10, times=1)
        status, partial, error = await trio.to_thread.run_sync(read_cut, port)
        assert status == 200 and len(partial) <= 10
        async with httpx.AsyncClient() as client:
            assert (await client.get(lb.url)).text == "Hello from backend-1\n"  # the next one is whole
        assert [r.target for r in one.requests] == ["/", "/", "/"]
        assert lb.statistics()["backends"]["backend-1"]["backend"] == str(one.backend)  # relay=False: by name too


async def test_bad_arguments_say_what_is_wrong() -> None:
    async with open_backends(1) as (one,):
        with pytest.raises(ValueError, match="close_after or reset_after, not both"):
            one.respond(close_after=1, reset_after=1)
        with pytest.raises(ValueError, match="times=0 must be at least 1"):
            one.respond(times=0)
    with pytest.raises(ValueError, match="2 backends but 3 names"):
        async with open_backends(2, names=["a", "b", "c"]):
            pass
