"""Backends that fail (issue 7): refusing, hanging on connect, closing without
an answer, resetting mid-response, answering slowly, and closing idle
keep-alive connections while the client sends. Real sockets on 127.0.0.1;
a mock clock (memory streams) only where timing must be exact: the connect
timeout without the kernel's help, and timeouts firing before their time."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing

import pylb
from pylb.core.errors import ConnectTimeout
from pylb.testing import MemoryNetwork, MemoryStream, open_hello
from tests.e2e.e2e_kit import (
    Backend,
    Peer,
    Truncated,
    free_port,
    open_backend,
    parse_head,
    port_of,
    proxied,
    request_bytes,
    reset,
    response_bytes,
)
from tests.faults.faultkit import NO_CHECKS, hanging_port

pytestmark = [pytest.mark.usefixtures("driver"), pytest.mark.timeout(60)]
GUARD = 20  # seconds: a hang fails the test, it is not a speed assertion


def backend_stats(lb: pylb.Balancer) -> dict[str, dict[str, object]]:
    return {b["backend"]: b for b in lb.statistics()["pool"]["backends"]}  # type: ignore[index]


# --------------------------------------------------------------------------- 1. refusing


async def test_a_refusing_backend_gives_502() -> None:
    with trio.fail_after(GUARD):
        async with proxied([f"127.0.0.1:{free_port()}"]) as (lb, peer):
            resp = await peer.request()
            assert resp.status == 502
            assert b"ECONNREFUSED" not in resp.body  # why goes to the log, not to the client
            assert await peer.at_eof()
            assert lb.statistics()["errors"] == {502: 1}
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


async def test_a_refusing_backend_is_redispatched_to_a_live_one() -> None:
    dead = f"127.0.0.1:{free_port()}"
    with trio.fail_after(GUARD):
        async with open_hello("live") as hello, pylb.open_balancer([dead, hello.backend], health=NO_CHECKS) as lb:
            for _ in range(6):  # fresh connections: round robin offers the dead one first half of the time
                async with await Peer.connect(port_of(lb.url)) as peer:
                    resp = await peer.request()
                    assert (resp.status, resp.body) == (200, b"Hello from live\n")
            assert hello.requests == 6
            stats = backend_stats(lb)
            assert stats[dead]["failures"] >= 1  # it was tried, and the request went on
            assert lb.statistics()["errors"] == {}


# --------------------------------------------------------------------------- 2. hanging on connect


async def test_a_backend_hanging_on_connect_gives_504_after_the_connect_timeout() -> None:
    with hanging_port() as port, trio.fail_after(GUARD):
        async with proxied([f"127.0.0.1:{port}"], timeouts=pylb.Timeouts(connect=0.5)) as (lb, peer):
            start = trio.current_time()
            resp = await peer.request()
            elapsed = trio.current_time() - start
            assert resp.status == 504, resp.body
            assert 0.45 <= elapsed < 3.0, elapsed
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


async def test_a_backend_hanging_on_connect_is_redispatched_to_a_live_one() -> None:
    with hanging_port() as port, trio.fail_after(GUARD):
        hung = f"127.0.0.1:{port}"
        async with (
            open_hello("live") as hello,
            pylb.open_balancer([hung, hello.backend], timeouts=pylb.Timeouts(connect=0.5), health=NO_CHECKS) as lb,
        ):
            slow = 0
            for _ in range(4):
                async with await Peer.connect(port_of(lb.url)) as peer:
                    start = trio.current_time()
                    resp = await peer.request()
                    slow += trio.current_time() - start >= 0.45
                    assert (resp.status, resp.body) == (200, b"Hello from live\n")
            assert slow >= 1  # at least one request waited for the hung connect, then went on
            assert backend_stats(lb)[hung]["failures"] >= 1
            assert lb.statistics()["errors"] == {}


async def _never_connects(backend: pylb.Backend, timeout: float) -> MemoryStream:
    """A dialer honouring the timeout like pylb.net.stream.dial, for a
    backend whose connect never completes."""
    with trio.move_on_after(timeout):
        await trio.sleep_forever()
    raise ConnectTimeout(f"connect to {backend} timed out after {timeout:g}s")


async def _answer_ok(stream: trio.abc.Stream) -> None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return
        buf += data
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await stream.aclose()


@pytest.mark.parametrize("live", [False, True], ids=["alone", "beside-a-live-one"])
async def test_connect_timeout_on_a_mock_clock(autojump_clock: trio.testing.MockClock, live: bool) -> None:
    """The same promise as above without relying on the kernel: 504 after the
    connect timeout, or redispatch to a live backend."""
    hung, ok = pylb.Backend("10.0.0.1", 80), pylb.Backend("10.0.0.2", 80)
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.add(ok, _answer_ok)

        async def dial(backend: pylb.Backend, timeout: float) -> MemoryStream:
            return await (_never_connects if backend == hung else net.dial)(backend, timeout)

        config = pylb.Config(binds=(), backends=(hung, ok) if live else (hung,), timeouts=pylb.Timeouts(connect=5.0))
        lb = pylb.Balancer(config, dialer=dial, health=NO_CHECKS)
        await nursery.start(lb.run)
        statuses = []
        for _ in range(2 if live else 1):
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(lb.serve_stream, server, ("192.0.2.9", 40000))
            start = trio.current_time()
            await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            answer = b""
            while data := await client.receive_some(65536):
                answer += data
            statuses.append((int(answer[9:12]), trio.current_time() - start))
        nursery.cancel_scope.cancel()
    if live:
        assert [s for s, _ in statuses] == [200, 200]
        assert max(t for _, t in statuses) >= 5.0  # one waited for the hung connect first
    else:
        ((status, took),) = statuses
        assert status == 504 and 5.0 <= took < 6.0


# --------------------------------------------------------------------------- 3. closing, resetting, slow


async def _close_without_answer(server: Backend, peer: Peer) -> None:
    await server.next_request(peer)  # then the kit closes the connection (FIN)


async def _reset_without_answer(server: Backend, peer: Peer) -> None:
    if await server.next_request(peer) is not None:
        reset(peer.stream)  # type: ignore[arg-type]


@pytest.mark.parametrize("handler", [_close_without_answer, _reset_without_answer], ids=["fin", "rst"])
async def test_a_backend_closing_without_answering_gives_502(handler: object) -> None:
    with trio.fail_after(GUARD):
        async with open_backend(handler) as backend, proxied([backend.backend]) as (lb, peer):  # type: ignore[arg-type]
            resp = await peer.request("GET", "/once")
            assert resp.status == 502
            assert await peer.at_eof()
            assert backend.requests == 1  # a GET on a fresh connection: not retried
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


@pytest.mark.parametrize("handler", [_close_without_answer, _reset_without_answer], ids=["fin", "rst"])
async def test_a_request_a_backend_closes_unanswered_goes_to_another_backend(handler: object) -> None:
    # A backend going away (scaled down) may close connections the kernel had accepted for it:
    # a request with no body that may be replayed goes to another backend; a POST does not.
    with trio.fail_after(GUARD):
        async with (
            open_backend(handler) as dying,  # type: ignore[arg-type]
            open_hello("live") as hello,
            pylb.open_balancer([dying.backend, hello.backend], health=NO_CHECKS) as lb,
        ):
            for method in ("GET", "HEAD", "DELETE", "GET"):  # fresh connections: round robin offers both
                async with await Peer.connect(port_of(lb.url)) as peer:
                    resp = await peer.request(method, "/x")
                    assert resp.status == 200, (method, resp.body)
            assert dying.requests >= 1  # it was tried, and every request went on
            assert hello.requests == 4
            assert lb.statistics()["errors"] == {}
            statuses = []
            for _ in range(2):  # one of the two POSTs meets the dying backend: never replayed
                async with await Peer.connect(port_of(lb.url)) as peer:
                    statuses.append((await peer.request("POST", "/x", body=b"")).status)
            assert sorted(statuses) == [200, 502]
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


HALF = 500
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CUTS = {
    # the head and half of the declared length
    "content-length": (response_bytes(200, "OK", [("Content-Length", str(2 * HALF))], b"a" * HALF, length=False), HALF),
    # whole chunks, but never the last one
    "chunked-between-chunks": (CHUNKED_HEAD + b"1f4\r\n" + b"b" * HALF + b"\r\n", 0),
    # inside a chunk's data
    "chunked-inside-a-chunk": (CHUNKED_HEAD + b"3e8\r\n" + b"c" * HALF, 0),
}


def _cut_after_client_saw_it(response: bytes, how: str, go: trio.Event) -> object:
    """Sends ``response`` (incomplete), waits until the client has read it
    through pylb, then resets (SO_LINGER 0) or closes (FIN)."""

    async def handler(server: Backend, peer: Peer) -> None:
        if await server.next_request(peer) is None:
            return
        await peer.send(response)
        await go.wait()
        if how == "rst":
            reset(peer.stream)  # type: ignore[arg-type]

    return handler


@pytest.mark.parametrize("how", ["rst", "fin"])
@pytest.mark.parametrize("cut", sorted(CUTS))
async def test_a_response_cut_mid_body_is_aborted_never_clean(cut: str, how: str) -> None:
    response, body_seen = CUTS[cut]
    go = trio.Event()
    with trio.fail_after(GUARD):
        handler = _cut_after_client_saw_it(response, how, go)
        async with open_backend(handler) as backend, proxied([backend.backend]) as (lb, peer):  # type: ignore[arg-type]
            await peer.send(request_bytes())
            line, headers = parse_head(await peer.read_head())
            assert line == b"HTTP/1.1 200 OK"  # the response started: pylb can no longer answer 502
            if cut == "content-length":
                assert await peer.read_exact(body_seen) == b"a" * HALF
                go.set()
                with pytest.raises(Truncated):
                    await peer.read_exact(HALF)  # the rest never comes: reset or EOF, not a clean end
            else:
                assert ("Transfer-Encoding", "chunked") in headers
                size = (await peer.read_line()).strip()
                await peer.read_exact(HALF + 2 if size == b"1f4" else HALF)  # a whole chunk, or half of one
                go.set()
                with pytest.raises(Truncated):
                    await peer.read_chunked()  # never the last chunk
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]
            assert lb.upstream.statistics()["idle"] == 0  # the broken backend connection was not kept


def _slow(delays: dict[str, float], pieces: int = 1) -> object:
    """Answers ``/NAME`` after ``delays[NAME]`` seconds, its body in
    ``pieces`` sends 0.2 s apart; keep-alive."""

    async def handler(server: Backend, peer: Peer) -> None:
        while (req := await server.next_request(peer)) is not None:
            name = req.target.strip("/")
            await trio.sleep(delays.get(name, 0.0))
            body = name.encode() * 40
            step = len(body) // pieces
            await peer.send(response_bytes(200, "OK", [("Content-Length", str(len(body)))], length=False))
            for i in range(pieces):
                if i:
                    await trio.sleep(0.2)
                await peer.send(body[i * step : len(body) if i == pieces - 1 else (i + 1) * step])

    return handler


async def test_a_slow_answer_within_the_server_timeout_is_relayed() -> None:
    with trio.fail_after(GUARD):
        backend_handler = _slow({"slowish": 0.1})
        timeouts = pylb.Timeouts(server=0.5)
        async with open_backend(backend_handler) as backend, proxied([backend.backend], timeouts=timeouts) as (_, peer):  # type: ignore[arg-type]
            resp = await peer.request("GET", "/slowish")
            assert (resp.status, resp.body) == (200, b"slowish" * 40)


async def test_a_slow_body_whose_every_read_is_within_the_server_timeout_is_relayed() -> None:
    # 4 pieces 0.2 s apart: 0.6 s in all, more than the 0.5 s server timeout,
    # which bounds each read of the body, not the whole of it.
    with trio.fail_after(GUARD):
        backend_handler = _slow({}, pieces=4)
        timeouts = pylb.Timeouts(server=0.5)
        async with open_backend(backend_handler) as backend, proxied([backend.backend], timeouts=timeouts) as (_, peer):  # type: ignore[arg-type]
            start = trio.current_time()
            resp = await peer.request("GET", "/trickle")
            assert (resp.status, resp.body) == (200, b"trickle" * 40)
            assert trio.current_time() - start >= 0.55


async def test_a_slow_answer_beyond_the_server_timeout_is_504_and_its_late_answer_is_dropped() -> None:
    with trio.fail_after(GUARD):
        backend_handler = _slow({"late": 2.0})
        async with (
            open_backend(backend_handler) as backend,
            pylb.open_balancer([backend.backend], timeouts=pylb.Timeouts(server=0.5), health=NO_CHECKS) as lb,
        ):
            async with await Peer.connect(port_of(lb.url)) as peer:
                start = trio.current_time()
                resp = await peer.request("GET", "/late")
                assert resp.status == 504
                assert 0.45 <= trio.current_time() - start < 1.5  # the watchdog ticks every 0.25 s
                assert await peer.at_eof()
            async with await Peer.connect(port_of(lb.url)) as peer:
                resp = await peer.request("GET", "/fast")
                assert (resp.status, resp.body) == (200, b"fast" * 40)  # never the late answer to /late
            assert backend.connections == 2  # the timed-out backend connection was closed, not reused


# --------------------------------------------------------------------------- 4. keep-alive closed by the backend


def _one_answer_per_connection(closed: trio.Event | None = None) -> object:
    """Answers one request, keep-alive by its head, then closes the idle
    connection (as a backend's keep-alive timeout does) and says so."""

    async def handler(server: Backend, peer: Peer) -> None:
        req = await server.next_request(peer)
        if req is not None:
            await peer.send(response_bytes(200, "OK", [], f"{req.method} {req.target}".encode()))
        await peer.stream.aclose()
        if closed is not None:
            closed.set()

    return handler


async def test_a_get_on_a_backend_connection_closed_while_idle_is_retried_on_a_fresh_one() -> None:
    closed = trio.Event()
    with trio.fail_after(GUARD):
        handler = _one_answer_per_connection(closed)
        async with open_backend(handler) as backend, proxied([backend.backend]) as (lb, peer):  # type: ignore[arg-type]
            assert (await peer.request("GET", "/first")).body == b"GET /first"
            await closed.wait()  # the idle backend connection is closed now
            resp = await peer.request("GET", "/second")
            assert (resp.status, resp.body) == (200, b"GET /second")
            assert backend.connections == 2
            assert [m.target for m in backend.seen] == ["/first", "/second"]
            assert lb.statistics()["errors"] == {}


async def test_a_post_on_a_backend_connection_seen_closed_goes_on_a_fresh_one_once() -> None:
    closed = trio.Event()
    with trio.fail_after(GUARD):
        handler = _one_answer_per_connection(closed)
        async with open_backend(handler) as backend, proxied([backend.backend]) as (_, peer):  # type: ignore[arg-type]
            assert (await peer.request("GET", "/first")).status == 200
            await closed.wait()
            resp = await peer.request("POST", "/pay", body=b"amount=1")
            assert (resp.status, resp.body) == (200, b"POST /pay")
            assert [m.target for m in backend.seen].count("/pay") == 1


async def test_a_post_racing_the_backend_closing_its_idle_connection_is_never_sent_twice() -> None:
    """The backend closes each connection right after its first answer, while
    the client already sends its POST: the POST gets 200 (the closed
    connection was noticed before sending) or 502, and reaches the backend
    at most once, exactly when the answer is 200."""
    outcomes: dict[int, int] = {}
    with trio.fail_after(GUARD):
        async with (
            open_backend(_one_answer_per_connection()) as backend,  # type: ignore[arg-type]
            pylb.open_balancer([backend.backend], health=NO_CHECKS) as lb,
        ):
            for i in range(25):
                async with await Peer.connect(port_of(lb.url)) as peer:
                    assert (await peer.request("GET", f"/get-{i}")).status == 200  # GETs are retried: always 200
                    resp = await peer.request("POST", f"/post-{i}", body=b"x" * 100)
                    outcomes[resp.status] = outcomes.get(resp.status, 0) + 1
                    seen = [m.target for m in backend.seen].count(f"/post-{i}")
                    assert resp.status in (200, 502), resp.status
                    assert seen == (1 if resp.status == 200 else 0), (i, resp.status, seen)
                    if resp.status == 502:
                        assert await peer.at_eof()
            assert sum(outcomes.values()) == 25
            print(f"POST outcomes by status: {outcomes}")


async def _answer_once_then_read_and_drop_the_next(server: Backend, peer: Peer) -> None:
    if await server.next_request(peer) is None:
        return
    await peer.send(response_bytes(200, "OK", [], b"first"))
    await server.next_request(peer)  # read (say, a payment made), then the process dies: no answer


async def test_a_post_whose_reused_connection_dies_unanswered_is_502_and_never_replayed() -> None:
    with trio.fail_after(GUARD):
        async with (
            open_backend(_answer_once_then_read_and_drop_the_next) as backend,
            proxied([backend.backend]) as (lb, peer),
        ):
            assert (await peer.request("GET", "/first")).status == 200
            resp = await peer.request("POST", "/pay", body=b"amount=1")
            assert resp.status == 502
            assert await peer.at_eof()
            assert [m.target for m in backend.seen].count("/pay") == 1
            assert backend.connections == 1  # no second connection carried the POST
            assert lb.statistics()["pool"]["in_flight"] == 0  # type: ignore[index]


# --------------------------------------------------------------------------- timeouts are lower bounds


async def _answer_after(delay: float, stream: trio.abc.Stream) -> None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return
        buf += data
    await trio.sleep(delay)
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await stream.aclose()


@pytest.mark.parametrize("which", ["server", "request_head"])
async def test_a_timeout_never_fires_before_its_time(autojump_clock: trio.testing.MockClock, which: str) -> None:
    """Timeouts of 1 s; the backend answers (or the client finishes its head)
    0.9 s after the phase began, which itself began 0.2 s after a watchdog
    tick: it must be served."""
    backend = pylb.Backend("10.0.0.1", 80)
    delay = 0.9 if which == "server" else 0.0
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.add(backend, lambda stream: _answer_after(delay, stream))
        timeouts = pylb.Timeouts(server=1.0, request_head=1.0)
        lb = pylb.Balancer(
            pylb.Config(binds=(), backends=(backend,), timeouts=timeouts), dialer=net.dial, health=NO_CHECKS
        )
        await nursery.start(lb.run)  # the watchdog ticks now, then every 0.25 s
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(lb.serve_stream, server, ("192.0.2.9", 40000))
        await trio.sleep(0.2)
        head = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        if which == "server":
            await client.send_all(head)
        else:
            await client.send_all(head[:1])
            await trio.sleep(0.9)
            with contextlib.suppress(trio.BrokenResourceError):  # closed after an early 408
                await client.send_all(head[1:])
        answer = b""
        while data := await client.receive_some(65536):
            answer += data
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:40]
