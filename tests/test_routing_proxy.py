"""Virtual hosts end to end: real sockets, hello backends, a WebSocket echo."""

import subprocess
import sys
from functools import partial

import pytest
import trio
import wsproto
import wsproto.events as ws

import pylb
from pylb import Backend, Route, Service, Snapshot
from pylb.core.routing import parse_virtual_host
from pylb.testing import open_hellos
from tests.conftest import run_pylb

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers


async def exchange(port: int, raw: bytes, responses: int = 1) -> list[tuple[bytes, bytes]]:
    """Send raw bytes on one connection; return (status line, body) of each response."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        buf, out = b"", []
        while len(out) < responses:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                assert data, f"closed after {out}"
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = int(next(x.split(b":")[1] for x in lines if x.lower().startswith(b"content-length")))
            while len(buf) < length:
                buf += await stream.receive_some(65536)
            out.append((head.split(b"\r\n")[0], buf[:length]))
            buf = buf[length:]
        return out


def get(host: str, path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


@pytest.fixture
async def vhosts():  # type: ignore[no-untyped-def]
    async with open_hellos(4) as (a, b, api, fallback):
        snapshot = Snapshot(
            (
                Service("a", (a.backend,)),
                Service("b", (b.backend,)),
                Service("api", (api.backend,)),
                Service("default", (fallback.backend,)),
            ),
            default="default",
            routes=(
                *parse_virtual_host("a.test, *.a.test", "a"),
                *parse_virtual_host("b.test", "b"),
                *parse_virtual_host("a.test/api, b.test/api/*", "api"),
            ),
        )
        async with pylb.open_balancer() as lb:
            lb.swap(snapshot)
            yield lb


@pytest.mark.parametrize(
    ("host", "path", "served_by"),
    [
        ("a.test", "/", b"hello-1"),
        ("A.TEST.", "/x", b"hello-1"),
        ("a.test:8080", "/", b"hello-1"),
        ("www.a.test", "/", b"hello-1"),
        ("b.test", "/", b"hello-2"),
        ("a.test", "/api/v1?q=1", b"hello-3"),
        ("a.test", "/apix", b"hello-1"),
        ("b.test", "/api", b"hello-3"),
        ("c.test", "/", b"hello-4"),
    ],
)
async def test_requests_reach_the_service_their_host_and_path_name(vhosts, host, path, served_by) -> None:  # type: ignore[no-untyped-def]
    ((status, body),) = await exchange(vhosts.addresses[0].port, get(host, path))
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"Hello from " + served_by + b"\n"


async def test_each_request_on_a_keepalive_connection_is_routed_on_its_own_pipelined_too(vhosts) -> None:  # type: ignore[no-untyped-def]
    raw = get("a.test") + get("b.test") + get("a.test", "/api") + get("zzz.test")
    bodies = [body for _, body in await exchange(vhosts.addresses[0].port, raw, responses=4)]
    assert bodies == [b"Hello from hello-%d\n" % i for i in (1, 2, 3, 4)]


async def test_absolute_form_is_routed_by_its_authority(vhosts) -> None:  # type: ignore[no-untyped-def]
    raw = b"GET http://b.test/ HTTP/1.0\r\n\r\n"  # HTTP/1.0: no Host needed
    ((_, body),) = await exchange(vhosts.addresses[0].port, raw)
    assert body == b"Hello from hello-2\n"


async def test_absolute_form_naming_another_host_than_host_is_refused(vhosts) -> None:  # type: ignore[no-untyped-def]
    # RFC 9112 3.2.2: the target wins, but a backend reading Host would disagree with pylb's routing
    raw = b"GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"
    ((status, _),) = await exchange(vhosts.addresses[0].port, raw)
    assert status == b"HTTP/1.1 400 Bad Request"


async def test_unrouted_host_without_default_is_503_and_the_page_does_not_echo_it() -> None:
    async with open_hellos(1) as (a,), pylb.open_balancer() as lb:
        lb.swap(Snapshot((Service("a", (a.backend,)),), routes=(Route("a.test", service="a"),)))
        ((status, body),) = await exchange(lb.addresses[0].port, get("<b>.test"))
        assert status == b"HTTP/1.1 400 Bad Request"  # not a valid host name at all
        ((status, body),) = await exchange(lb.addresses[0].port, get("other.test"))
        assert status == b"HTTP/1.1 503 Service Unavailable"
        assert b"other.test" not in body  # the reason goes to the log, not to the client
        assert a.requests == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n",
    ],
)
async def test_missing_double_or_invalid_host_is_400(vhosts, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    ((status, _),) = await exchange(vhosts.addresses[0].port, raw)
    assert status == b"HTTP/1.1 400 Bad Request"


async def websocket_echo(stream: trio.SocketStream) -> None:
    conn = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    async with stream:
        while True:
            data = await stream.receive_some(65536)
            conn.receive_data(data or None)
            for event in conn.events():
                if isinstance(event, ws.Request):
                    await stream.send_all(conn.send(ws.AcceptConnection()))
                elif isinstance(event, ws.TextMessage):
                    await stream.send_all(conn.send(ws.Message(data="echo: " + event.data)))
                elif isinstance(event, ws.CloseConnection):
                    await stream.send_all(conn.send(event.response()))
                    return
            if not data:
                return


async def test_websocket_echo_through_pylb_outlives_the_client_timeout() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, websocket_echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        timeouts = pylb.Timeouts(client=0.5, server=0.5)
        async with pylb.open_balancer([Backend("127.0.0.1", port)], timeouts=timeouts) as lb:
            stream = await trio.open_tcp_stream("127.0.0.1", lb.addresses[0].port)
            client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(client.send(ws.Request(host="ws.test", target="/chat")))
            replies: list[object] = []
            for message in ("one", "two"):
                while not any(isinstance(e, ws.AcceptConnection) for e in replies) and message == "one":
                    client.receive_data(await stream.receive_some(65536))
                    replies += list(client.events())
                await trio.sleep(1.0)  # longer than the client and server timeouts: the tunnel has its own
                await stream.send_all(client.send(ws.Message(data=message)))
                got: list[object] = []
                while not any(isinstance(e, ws.TextMessage) for e in got):
                    client.receive_data(await stream.receive_some(65536))
                    got += list(client.events())
                assert [e.data for e in got if isinstance(e, ws.TextMessage)] == [f"echo: {message}"]
            await stream.send_all(client.send(ws.CloseConnection(code=1000)))
            client.receive_data(await stream.receive_some(65536))
            assert any(isinstance(e, ws.CloseConnection) for e in client.events())
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_cli_routes_from_the_routes_env() -> None:
    async with open_hellos(3) as (a, b, c):
        args = ["--bind", "127.0.0.1:0", "--backend", str(c.backend)]
        with run_pylb(*args, env={"ROUTES": f"a.test={a.backend};b.test/x={b.backend};"}) as lb:
            for host, path, name in (
                ("a.test", "/", "hello-1"),
                ("b.test", "/x/y", "hello-2"),
                ("b.test", "/", "hello-3"),
            ):
                ((_, body),) = await exchange(lb.port, get(host, path))
                assert body == f"Hello from {name}\n".encode()


async def test_cli_route_flag_wins_over_routes_env() -> None:
    async with open_hellos(2) as (a, b):
        args = ["--bind", "127.0.0.1:0", "--route", f"a.test={a.backend}"]
        with run_pylb(*args, env={"ROUTES": f"a.test={b.backend}"}) as lb:
            ((_, body),) = await exchange(lb.port, get("a.test"))
            assert body == b"Hello from hello-1\n"
            ((status, body),) = await exchange(lb.port, get("b.test"))
            assert status == b"HTTP/1.1 503 Service Unavailable"


def test_cli_bad_route_is_one_line_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pylb", "--route", "a*b.test=127.0.0.1:1"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("pylb: error: --route: ")
