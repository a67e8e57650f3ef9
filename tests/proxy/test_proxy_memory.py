"""The proxy loop over memory streams on trio's MockClock: timeouts and
backend faults, tested instantly and deterministically."""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import h11
import trio
import trio.testing

from pylb import Backend, Balancer, Config, Timeouts
from pylb.core.health import HealthCheck
from pylb.testing import MemoryNetwork

A, B = Backend("10.0.0.1", 80), Backend("10.0.0.2", 80)
NO_CHECKS = HealthCheck(enabled=False)
CLIENT = ("192.0.2.9", 40000)


def responder(name: str, close_after: int = 0) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    """A backend answering each request with its name and the head it got."""

    async def handle(stream: trio.abc.Stream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):  # health checks hang up
            await serve(stream)

    async def serve(stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        served = 0
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    seen = repr(event.headers.raw_items()).encode()
                    body = name.encode() + b"\n" + seen
                    headers = [("Content-Length", str(len(body))), ("X-Served-By", name)]
                    await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
                    await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    served += 1
                    if close_after and served >= close_after:
                        return
                    continue
                if isinstance(event, h11.EndOfMessage):
                    conn.start_next_cycle()
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return

    return handle


async def silent(stream: trio.abc.Stream) -> None:
    await trio.sleep_forever()


async def hang_up(stream: trio.abc.Stream) -> None:
    await stream.receive_some(65536)
    await stream.aclose()


class Client:
    """A test client on a memory stream, parsing answers with h11."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        status, headers, body = 0, {}, b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, {k.lower(): v for k, v in event.headers.raw_items()}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                return status, headers, body
            else:
                raise AssertionError(event)

    async def get(self, target: str = "/") -> tuple[int, dict[bytes, bytes], bytes]:
        await self.send(self.h11.send(h11.Request(method="GET", target=target, headers=[("Host", "a.test")])))
        self.h11.send(h11.EndOfMessage())
        return await self.response()

    async def closed(self) -> bool:
        return await self.stream.receive_some(1) == b""


@asynccontextmanager
async def proxy(
    backends: dict[Backend, Callable[[trio.abc.Stream], Awaitable[None]]], timeouts: Timeouts | None = None
) -> AsyncIterator[tuple[Client, Balancer, MemoryNetwork]]:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        for backend, handler in backends.items():
            net.add(backend, handler)
        config = Config(binds=(), backends=tuple(backends) or (A,), timeouts=timeouts or Timeouts())
        lb = Balancer(config, dialer=net.dial, health=NO_CHECKS)
        await nursery.start(lb.run)
        client_side, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(lb.serve_stream, server_side, CLIENT)
        yield Client(client_side), lb, net
        nursery.cancel_scope.cancel()


async def test_requests_alternate_and_carry_forwarding_headers(autojump_clock: trio.testing.MockClock) -> None:
    async with proxy({A: responder("a"), B: responder("b")}) as (client, lb, net):
        answers = [await client.get() for _ in range(4)]
        assert [h[b"x-served-by"] for _, h, _ in answers] == [b"a", b"b", b"a", b"b"]
        seen = answers[0][2]
        assert b"(b'X-Forwarded-For', b'192.0.2.9')" in seen
        assert b"(b'X-Forwarded-Proto', b'http')" in seen
        assert b"(b'X-Forwarded-Host', b'a.test')" in seen
        assert len(net.dials) == 2  # one backend connection each, reused
        assert lb.statistics()["upstream"] == {"idle": 2, "dials": 2, "reuses": 2}


async def test_silent_backend_gets_504_after_the_server_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with proxy({A: silent}, Timeouts(server=30)) as (client, lb, _):
        start = trio.current_time()
        status, _, body = await client.get()
        assert status == 504
        assert b"did not answer in time" not in body  # why goes to the log; the page says the status
        assert 30 <= trio.current_time() - start <= 31
        assert await client.closed()
        assert lb.pool.statistics()["backends"][0]["failures"] == 1


async def test_slowloris_head_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    async with proxy({A: responder("a")}, Timeouts(request_head=10, client=600)) as (client, _, net):
        start = trio.current_time()
        await client.send(b"GET / HTTP/1.1\r\nHost: a")
        status, _, _ = await client.response()
        assert status == 408
        assert 10 <= trio.current_time() - start <= 11
        assert net.dials == []


async def test_idle_keepalive_client_is_closed_quietly(autojump_clock: trio.testing.MockClock) -> None:
    async with proxy({A: responder("a")}, Timeouts(client=5)) as (client, _, _):
        assert (await client.get())[0] == 200
        start = trio.current_time()
        assert await client.closed()
        assert 5 <= trio.current_time() - start <= 6


async def test_stale_backend_connection_is_retried_once_on_a_fresh_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with proxy({A: responder("a", close_after=1)}) as (client, _, net):
        assert (await client.get())[0] == 200
        await trio.sleep(1)  # the backend's close reaches the idle connection
        status, headers, _ = await client.get()
        assert (status, headers[b"x-served-by"]) == (200, b"a")
        assert len(net.dials) == 2


async def test_backend_hanging_up_without_answer_is_502(autojump_clock: trio.testing.MockClock) -> None:
    async with proxy({A: hang_up}) as (client, _, _):
        status, _, body = await client.get()
        assert status == 502
        assert b"closed the connection" not in body  # why goes to the log; the page says the status


async def test_refused_backend_is_502(autojump_clock: trio.testing.MockClock) -> None:
    async with proxy({}) as (client, _, _):
        status, _, body = await client.get()
        assert status == 502
        assert b"ECONNREFUSED" not in body  # why goes to the log; the page says the status


async def test_no_backend_is_503_and_the_connection_stays(autojump_clock: trio.testing.MockClock) -> None:
    async with proxy({A: responder("a")}) as (client, lb, _):
        lb.set_backends([])
        status, headers, _ = await client.get()
        assert status == 503
        assert headers[b"connection"] == b"keep-alive"
        lb.set_backends([A])
        assert (await client.get())[0] == 200


async def test_pipelined_requests_are_answered_in_order_each_balanced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with proxy({A: responder("a"), B: responder("b")}) as (client, _, _):
        await client.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i for i in range(4)))
        served = []
        for _ in range(4):
            client.h11.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
            client.h11.send(h11.EndOfMessage())
            served.append((await client.response())[1][b"x-served-by"])
        assert served == [b"a", b"b", b"a", b"b"]


async def test_connect_failure_is_redispatched_to_another_backend(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.add(B, responder("b"))  # A refuses: nothing is registered for it
        # active checks on (so that a backend marked down can come back), but far apart: the
        # failures that take A out here are the requests' own connects
        lb = Balancer(Config(binds=(), backends=(A, B)), dialer=net.dial, health=HealthCheck(inter=3600))
        await nursery.start(lb.run)
        client_side, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(lb.serve_stream, server_side, CLIENT)
        client = Client(client_side)
        answers = [await client.get() for _ in range(6)]
        assert [(status, h[b"x-served-by"]) for status, h, _ in answers] == [(200, b"b")] * 6
        failures = {s["backend"]: s["failures"] for s in lb.pool.statistics()["backends"]}  # type: ignore[index, union-attr]
        assert failures == {str(A): 2, str(B): 0}  # with the first check's, fall=3: A is down, no more tries
        assert [s["healthy"] for s in lb.pool.statistics()["backends"]] == [False, True]  # type: ignore[index, union-attr]
        nursery.cancel_scope.cancel()


async def test_active_checks_take_a_dead_backend_out_and_bring_it_back(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.add(B, responder("b"))
        check = HealthCheck(inter=2, rise=2, fall=3)
        lb = Balancer(Config(binds=(), backends=(A, B)), dialer=net.dial, health=check)
        await nursery.start(lb.run)
        states = {str(s.backend): s for s in lb.pool.states()}
        await trio.sleep(2 * 2 + 1)  # three rounds: at 0, 2 and 4 s
        assert (states[str(A)].healthy, states[str(B)].healthy) == (False, True)
        client_side, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(lb.serve_stream, server_side, CLIENT)
        client = Client(client_side)
        assert [(await client.get())[1][b"x-served-by"] for _ in range(3)] == [b"b", b"b", b"b"]
        assert states[str(A)].failures == 0  # no request was sent to the dead backend
        net.add(A, responder("a"))  # A comes back
        await trio.sleep(2 * 2)
        assert states[str(A)].healthy
        assert {(await client.get())[1][b"x-served-by"] for _ in range(4)} == {b"a", b"b"}
        lb.set_backends([])
        status, _, _ = await client.get()
        assert status == 503
        nursery.cancel_scope.cancel()


async def test_all_backends_down_is_an_immediate_503(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        lb = Balancer(Config(binds=(), backends=(A, B)), dialer=net.dial, health=HealthCheck(inter=1, fall=2))
        await nursery.start(lb.run)
        await trio.sleep(1.5)
        client_side, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(lb.serve_stream, server_side, CLIENT)
        start = trio.current_time()
        status, _, body = await Client(client_side).get()
        assert (status, trio.current_time() - start) == (503, 0)
        assert b"no backend up" not in body  # why goes to the log; the page says the status
        nursery.cancel_scope.cancel()


async def test_http_checks_take_out_a_backend_answering_503(autojump_clock: trio.testing.MockClock) -> None:
    async def unwell(stream: trio.abc.Stream) -> None:
        head = await stream.receive_some(65536)
        seen.append(head.split(b"\r\n")[0])
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")

    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.add(A, unwell)
        net.add(B, responder("b"))
        check = HealthCheck(inter=1, rise=1, fall=2, http=("GET", "/health"))
        lb = Balancer(Config(binds=(), backends=(A, B)), dialer=net.dial, health=check)
        await nursery.start(lb.run)
        await trio.sleep(1.5)
        states = {str(s.backend): s.healthy for s in lb.pool.states()}
        assert states == {str(A): False, str(B): True}
        assert seen[0] == b"GET /health HTTP/1.1"
        nursery.cancel_scope.cancel()


async def test_without_active_checks_a_failing_backend_is_never_marked_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.add(B, responder("b"))
        lb = Balancer(Config(binds=(), backends=(A, B)), dialer=net.dial, health=NO_CHECKS)
        await nursery.start(lb.run)
        client_side, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(lb.serve_stream, server_side, CLIENT)
        client = Client(client_side)
        assert [(await client.get())[0] for _ in range(6)] == [200] * 6
        net.add(A, responder("a"))  # A comes back: nothing has to notice, it was never taken out
        assert {(await client.get())[1][b"x-served-by"] for _ in range(4)} == {b"a", b"b"}
        nursery.cancel_scope.cancel()


async def reads_whole_body(stream: trio.abc.Stream) -> None:
    """Answers each request once its whole body has arrived."""
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.EndOfMessage):
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")])))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            conn.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            return


async def test_a_slow_upload_is_not_a_slow_backend(autojump_clock: trio.testing.MockClock) -> None:
    async with proxy({A: reads_whole_body}, Timeouts(server=1, client=5)) as (client, _, _):
        await client.send(b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\n\r\n")
        for piece in (b"ab", b"cd", b"ef"):  # 2 s of upload with a 1 s server timeout
            await trio.sleep(0.7)
            await client.send(piece)
        client.h11.send(h11.Request(method="POST", target="/up", headers=[("Host", "a"), ("Content-Length", "6")]))
        client.h11.send(h11.Data(data=b"abcdef"))
        client.h11.send(h11.EndOfMessage())
        status, _, _ = await client.response()
        assert status == 200


async def test_a_response_with_too_many_header_lines_is_502_not_431(autojump_clock: trio.testing.MockClock) -> None:
    async def chatty(stream: trio.abc.Stream) -> None:
        await stream.receive_some(65536)
        fields = b"".join(b"X-%d: v\r\n" % i for i in range(150))
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n")

    async with proxy({A: chatty}) as (client, _, _):
        status, _, body = await client.get()
        assert status == 502
        assert b"more than 100 header lines" not in body  # why goes to the log; the page says the status


async def test_a_service_can_bring_its_own_checks(autojump_clock: trio.testing.MockClock) -> None:
    from pylb import Service, Snapshot

    asked: list[Backend] = []

    def unwell(backend: Backend) -> Callable[[trio.abc.Stream], Awaitable[None]]:
        async def handle(stream: trio.abc.Stream) -> None:
            asked.append(backend)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.receive_some(65536)
                await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")

        return handle

    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.add(A, unwell(A))
        net.add(B, unwell(B))
        lb = Balancer(Config(binds=()), dialer=net.dial, health=NO_CHECKS)  # the balancer checks nothing...
        await nursery.start(lb.run)
        checked = HealthCheck(inter=1, rise=1, fall=1, http=("GET", "/health"))
        lb.swap(Snapshot((Service("a", (A,), check=checked), Service("b", (B,))), default="b"))  # ...but "a" does
        await trio.sleep(2.5)
        healthy = {str(s.backend): s.healthy for s in lb.pool.states()}
        assert healthy == {str(A): False, str(B): True}
        assert set(asked) == {A}
        nursery.cancel_scope.cancel()
