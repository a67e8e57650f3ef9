"""pylb's own error answers say the status and its reason, and no more: no 502, 503 or 504
page or header names a backend's address or port, or an internal error string, whatever
failed (a refused connect, a reset, a close before the answer, a connect or answer timeout,
no backend, a response that is not HTTP). Real sockets on 127.0.0.1, on both drivers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio

import pylb
from tests.e2e.e2e_kit import Backend, Peer, free_port, open_backend, port_of, reset
from tests.faults.faultkit import NO_CHECKS, hanging_port

pytestmark = pytest.mark.timeout(60)
GUARD = 20  # seconds: a hang fails the test, it is not a speed assertion
SHORT = pylb.Timeouts(connect=0.5, server=0.5)
# What a page must not say: pylb's internal words for what went wrong.
INTERNAL = re.compile(rb"errno|econn|refused|reset|timed out|closed the connection|cannot connect|backend",
                      re.IGNORECASE)  # fmt: skip


@asynccontextmanager
async def balancer(backends: list[str], lanes: bool) -> AsyncIterator[pylb.Balancer]:
    """A balancer in front of ``backends`` (none: an empty pool), lanes on or off."""
    config = pylb.Config(
        binds=(pylb.Bind.parse("127.0.0.1:0"),),
        backends=tuple(pylb.Backend.parse(b) for b in backends),
        timeouts=SHORT,
        lanes=lanes,
    )
    lb = pylb.Balancer(config, health=NO_CHECKS)
    async with trio.open_nursery() as nursery:
        await nursery.start(lb.run)
        try:
            yield lb
        finally:
            nursery.cancel_scope.cancel()


async def resets(server: Backend, peer: Peer) -> None:
    await server.next_request(peer)
    reset(peer.stream)  # type: ignore[arg-type]


async def closes(server: Backend, peer: Peer) -> None:
    await server.next_request(peer)


async def never_answers(server: Backend, peer: Peer) -> None:
    await server.next_request(peer)
    await trio.sleep_forever()


async def answers_garbage(server: Backend, peer: Peer) -> None:
    await server.next_request(peer)
    await peer.send(b"ICY 200 OK\r\nicy-name: 10.0.0.5:80\r\n\r\n")


FAILING_BACKENDS: dict[str, Callable[[Backend, Peer], Awaitable[None]]] = {
    "resets": resets, "closes": closes, "never answers": never_answers, "garbage": answers_garbage,
}  # fmt: skip


async def _error_page(port: int) -> bytes:
    async with await Peer.connect(port) as peer:
        resp = await peer.request()
    return resp.raw_head + resp.raw_body


def _assert_says_no_more(page: bytes, status: int, address: str | None) -> None:
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), page
    host, _, port = (address or "").rpartition(":")
    for secret in (address.encode(), host.encode(), port.encode()) if address else ():
        assert secret not in page, f"the page names {secret!r}: {page!r}"
    assert b"10.0.0.5" not in page  # what the garbage answer said
    assert INTERNAL.search(page) is None, f"the page says what went wrong inside: {page!r}"
    assert b"<h1>%d " % status in body


@pytest.mark.parametrize("lanes", [True, False], ids=["lanes", "tasks"])
@pytest.mark.parametrize("behaviour", list(FAILING_BACKENDS))
async def test_a_failing_backend_is_not_named_in_the_page(behaviour: str, lanes: bool) -> None:
    with trio.fail_after(GUARD):
        async with open_backend(FAILING_BACKENDS[behaviour]) as backend:
            address = f"127.0.0.1:{backend.port}"
            async with balancer([address], lanes) as lb:
                page = await _error_page(port_of(lb.url))
    _assert_says_no_more(page, 504 if behaviour == "never answers" else 502, address)


@pytest.mark.parametrize("lanes", [True, False], ids=["lanes", "tasks"])
async def test_a_refused_connect_is_not_named_in_the_page(lanes: bool) -> None:
    address = f"127.0.0.1:{free_port()}"
    with trio.fail_after(GUARD):
        async with balancer([address], lanes) as lb:
            page = await _error_page(port_of(lb.url))
    _assert_says_no_more(page, 502, address)


@pytest.mark.parametrize("lanes", [True, False], ids=["lanes", "tasks"])
async def test_a_connect_timeout_is_not_named_in_the_page(lanes: bool) -> None:
    with hanging_port() as port, trio.fail_after(GUARD):
        address = f"127.0.0.1:{port}"
        async with balancer([address], lanes) as lb:
            page = await _error_page(port_of(lb.url))
    _assert_says_no_more(page, 504, address)


@pytest.mark.parametrize("lanes", [True, False], ids=["lanes", "tasks"])
async def test_no_backend_is_a_plain_503(lanes: bool) -> None:
    with trio.fail_after(GUARD):
        async with balancer([], lanes) as lb:
            page = await _error_page(port_of(lb.url))
    _assert_says_no_more(page, 503, None)


@pytest.mark.parametrize("lanes", [True, False], ids=["lanes", "tasks"])
async def test_a_refused_head_is_logged_readably_and_never_with_a_header_value(
    lanes: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The log line of a 400 says what was wrong in plain words (not h11's ``bytearray(b'...')``);
    for a bad header line, only the field's name: a malformed ``Authorization :`` line must not put
    the credential in the log."""
    caplog.set_level("INFO", logger="pylb")
    heads = [
        b"GET / HTTP/1.1\r\nHost: a.test\r\nAuthorization : Bearer s3cr3t-t0ken\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nAuthorization Bearer s3cr3t-t0ken\r\n\r\n",  # no colon at all
        b"GET / HTTP/1.1\r\nHost: a.test\r\nCookie=s3cr3t=abc:1\r\n\r\n",  # a colon, after the value
    ]
    with trio.fail_after(GUARD):
        async with balancer([], lanes) as lb:
            for head in heads:
                async with await Peer.connect(port_of(lb.url)) as peer:
                    await peer.send(head)
                    assert (await peer.read_head()).startswith(b"HTTP/1.1 400 ")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("400 ")]
    assert len(lines) == 4, lines
    assert all("bytearray" not in line and "s3cr3t" not in line for line in lines), lines
    assert lines[0].endswith("illegal header line (field 'Authorization'; its value is not logged)"), lines
    assert lines[1].endswith("illegal request line: 'GET /\\x01 HTTP/1.1'"), lines
    nameless = "illegal header line (no field name before a colon; the line is not logged)"
    assert lines[2].endswith(nameless) and lines[3].endswith(nameless), lines
