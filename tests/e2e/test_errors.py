"""pylb's own error answers (502, 503, 504) and responses cut short."""

from __future__ import annotations

import pytest
import trio
from e2e_kit import (
    Backend,
    Message,
    Peer,
    Truncated,
    chunked,
    free_port,
    open_backend,
    port_of,
    proxied,
    request_bytes,
    reset,
    response_bytes,
)

import pylb
from pylb.testing import open_hello

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers


def assert_error_page(resp: Message, status: int, reason: str) -> None:
    assert resp.start_line == f"HTTP/1.1 {status} {reason}".encode(), resp.start_line
    assert resp.header(
        "content-type",
    ).startswith("text/html")  # type: ignore[union-attr]
    assert resp.header("content-length") == str(len(resp.body))
    text = resp.body.decode()
    assert "<html>" in text and f"{status} {reason}" in text, text
    assert len(resp.body) < 2048


async def test_502_when_the_backend_refuses_connections() -> None:
    async with pylb.open_balancer([f"127.0.0.1:{free_port()}"]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            assert_error_page(await peer.request(), 502, "Bad Gateway")
        assert lb.statistics()["errors"] == {502: 1}


async def _close_without_answer(server: Backend, peer: Peer) -> None:
    await server.next_request(peer)


async def test_502_when_the_backend_closes_without_answering() -> None:
    async with open_backend(_close_without_answer) as backend, proxied([backend.backend]) as (_lb, peer):
        assert_error_page(await peer.request(), 502, "Bad Gateway")
    assert backend.requests >= 1


async def _garbage(server: Backend, peer: Peer) -> None:
    if await server.next_request(peer) is not None:
        await peer.send(b"this is not HTTP\r\n\r\n")


async def test_502_when_the_backend_answers_garbage() -> None:
    async with open_backend(_garbage) as backend, proxied([backend.backend]) as (_lb, peer):
        assert_error_page(await peer.request(), 502, "Bad Gateway")


async def test_503_when_there_are_no_backends() -> None:
    async with open_hello("h") as hello, pylb.open_balancer([hello.backend]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            assert (await peer.request()).status == 200
            lb.set_backends([])
            assert_error_page(await peer.request(), 503, "Service Unavailable")
            lb.set_backends([hello.backend])
        async with await Peer.connect(port_of(lb.url)) as peer:
            assert (await peer.request()).status == 200
    assert hello.requests == 2


async def test_503_from_an_empty_balancer_keeps_the_connection() -> None:
    async with pylb.open_balancer([]) as lb, open_hello("h") as hello, await Peer.connect(port_of(lb.url)) as peer:
        assert_error_page(await peer.request(), 503, "Service Unavailable")
        lb.set_backends([hello.backend])
        assert (await peer.request()).status == 200


async def _never_answer(server: Backend, peer: Peer) -> None:
    await server.next_request(peer)
    await trio.sleep_forever()


async def test_504_when_the_backend_never_answers() -> None:
    async with (
        open_backend(_never_answer) as backend,
        proxied([backend.backend], timeouts=pylb.Timeouts(server=0.5)) as (lb, peer),
    ):
        assert_error_page(await peer.request(), 504, "Gateway Timeout")
        assert lb.statistics()["errors"] == {504: 1}
        assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


def _cut(response: bytes, how: str):
    async def handler(server: Backend, peer: Peer) -> None:
        if await server.next_request(peer) is None:
            return
        await peer.send(response)
        if how == "reset":
            reset(peer.stream)  # type: ignore[arg-type]
        # "close": return, the kit closes the connection cleanly (FIN)

    return handler


CUT_RESPONSES = {
    "content-length": response_bytes(200, "OK", [("Content-Length", "100000")], b"x" * 1000, length=False),
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"y" * 1000)[:-5],
}


@pytest.mark.parametrize("how", ["reset", "close"])
@pytest.mark.parametrize("framing", sorted(CUT_RESPONSES))
async def test_a_response_cut_short_never_looks_complete(framing: str, how: str) -> None:
    async with open_backend(_cut(CUT_RESPONSES[framing], how)) as backend, pylb.open_balancer([backend.backend]) as lb:
        async with await Peer.connect(port_of(lb.url)) as peer:
            await peer.send(request_bytes())
            with pytest.raises(Truncated):
                await peer.read_response()
        async with await Peer.connect(port_of(lb.url)) as peer:
            await peer.send(request_bytes())
            raw = b""
            with pytest.raises(Truncated):  # a reset, not a clean end
                raw = await peer.read_to_eof()
            assert not raw.endswith(b"0\r\n\r\n")
        assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


async def test_an_until_close_response_reset_by_the_backend_is_reset_to_the_client() -> None:
    response = b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 5000
    async with open_backend(_cut(response, "reset")) as backend, proxied([backend.backend]) as (_lb, peer):
        await peer.send(request_bytes())
        with pytest.raises(Truncated):
            await peer.read_to_eof()


async def _answer_once_then_close_idle(server: Backend, peer: Peer) -> None:
    req = await server.next_request(peer)
    if req is not None:
        await peer.send(response_bytes(200, "OK", [], f"{server.connections}".encode()))
    # returns: the connection closes while idle, as a backend's keep-alive timeout does


async def test_a_get_on_a_backend_connection_closed_while_idle_is_retried() -> None:
    async with open_backend(_answer_once_then_close_idle) as backend, proxied([backend.backend]) as (_lb, peer):
        for _ in range(4):
            resp = await peer.request()
            assert resp.status == 200
    assert backend.requests == 4


def _answer_once_then_drop_the_next() -> tuple[list[str], object]:
    seen: list[str] = []

    async def handler(server: Backend, peer: Peer) -> None:
        first = await server.next_request(peer)
        if first is None:
            return
        seen.append(f"{first.method} {first.target}")
        await peer.send(response_bytes(200, "OK", [], b"ok"))
        second = await server.next_request(peer)
        if second is not None:  # processed (say, charged a card), then the process died
            seen.append(f"{second.method} {second.target}")

    return seen, handler


async def test_a_post_is_not_replayed_when_its_backend_connection_dies_unanswered() -> None:
    seen, handler = _answer_once_then_drop_the_next()
    async with open_backend(handler) as backend, proxied([backend.backend]) as (_lb, peer):  # type: ignore[arg-type]
        assert (await peer.request("GET", "/warm")).status == 200
        resp = await peer.request("POST", "/charge", body=b"amount=100")
    assert seen.count("POST /charge") == 1, seen
    assert resp.status == 502
