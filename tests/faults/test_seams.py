"""No failed idempotent request at any seam (issue 14): backend connections
that end before any byte of the answer, on both drivers (``--lanes true``:
the readiness loop first; ``--lanes false``: a task per connection), over
HTTP and HTTPS.

Black-box: scripted raw-socket backends on 127.0.0.1 (``seamkit.Scripted``)
log every request they read and every connection they end; the tests look
only at what the client got (status, body bytes, which backend answered),
what each backend read, and ``lb.statistics()`` (which backends pylb chose).

The rules checked (docs/protections.md, issue 14):
- a request that may be replayed (GET, HEAD, DELETE, PUT with no body or a
  small body held whole) whose backend connection, reused or new, closes or
  resets before any byte of the answer goes to another connection or backend
  within ``--retries``: the client gets the healthy backend's 200, and the
  dying backend was tried;
- a request that may not be replayed (POST, or a body already streamed)
  reaches the backends at most once; if the one it reached never answered,
  the client gets a 502;
- a backend that closes idle keep-alive connections while stopping (as
  ``pylb hello`` does on SIGTERM) costs no request.

Seams: (a) a reused keep-alive connection the backend ended (closed, reset,
half-closed while idle; or read the next request and then closed or reset);
(b) a new connection accepted and then closed or reset before any answer,
or reset in the accept queue by a listener closing; (c) a connect refused by
a backend removed from the pool while requests to it were in flight; (d) a
large request the backend read only part of; (e) backends that answer and
then half-close, shut their read side, or reset; (f) a backend draining
(``HelloServer.drain``, what ``pylb hello`` does on SIGTERM) under keep-alive
load; (g) ``--retries`` bounds when every backend dies.

Not reachable from here: a *partial send* by pylb itself of a request that
may be replayed (the fast lane handing a request over with bytes still to
send). On Linux loopback the kernel sizes a new connection's send buffer at
about 4 MiB (tcp_wmem autotuning), while such a request is at most the
16 KiB head plus a body pylb holds whole (64 KiB), so pylb's send() always
takes it at once; (d) makes the backend take only part of it instead.
"""

from __future__ import annotations

import contextlib
import functools

import pytest
import trio

import pylb
from pylb.net.hello import HelloServer
from tests.e2e.e2e_kit import HOST, Message, Peer, Truncated, free_port, request_bytes
from tests.faults.faultkit import hanging_port
from tests.faults.seamkit import (
    ALL_METHODS,
    DRIVERS,
    NOT_REPLAYABLE,
    REPLAYABLE,
    SCHEMES,
    Load,
    Scripted,
    ask,
    connect,
    in_flight,
    label,
    open_lb,
    picks,
    scripted,
    shown,
)

pytestmark = pytest.mark.timeout(120)
GUARD = 60  # seconds per test: a hang fails the test; no assertion is about speed

drivers = pytest.mark.parametrize("driver", list(DRIVERS))
schemes = pytest.mark.parametrize("scheme", SCHEMES)


def replayable(method: str, body: bytes) -> bool:
    return (method, body) in REPLAYABLE


def expected_body(backend: Scripted, method: str, target: str, body: bytes) -> bytes:
    return b"" if method == "HEAD" else f"{backend.name} {method} {target} {len(body)}\n".encode()


def copies(target: str, *backends: Scripted) -> int:
    """Copies of the request for ``target`` that reached the backends' code
    (whole or in part)."""
    return sum(len(b.copies(target)) + b.partial_copies(target) for b in backends)


class Verdicts:
    """Problems found, one line each, asserted at the end of a test so that
    one run reports every method that failed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def served_by_healthy(
        self, what: str, resp: Message, healthy: Scripted, method: str, target: str, body: bytes
    ) -> None:
        """A 200 from ``healthy`` with its exact answer, read once there."""
        want = expected_body(healthy, method, target, body)
        if (resp.status, resp.header("x-served-by"), resp.body) != (200, healthy.name, want):
            self.add(f"{what}: got {shown(resp)} from {resp.header('x-served-by')}, wanted 200 from {healthy.name}")
        whole = [s for s in healthy.copies(target) if s.complete]
        if len(whole) != 1:
            cut = len(healthy.copies(target)) - len(whole)
            more = f" (and {cut} times its head without its whole body)" if cut else ""
            self.add(f"{what}: {healthy.name} read it whole {len(whole)} times{more}, wanted once")

    def never_twice(self, what: str, resp: Message, target: str, *backends: Scripted, must_fail: bool = False) -> None:
        """A request that may not be replayed: at most one copy reached the
        backends; a 200 only from the one that read it, else a 502."""
        sent = copies(target, *backends)
        if sent > 1:
            self.add(f"{what}: reached the backends {sent} times (a request that may not be replayed)")
        if resp.status == 200 and not must_fail:
            name = resp.header("x-served-by")
            answered = [s for b in backends if b.name == name for s in b.copies(target) if s.answered]
            if len(answered) != 1:
                self.add(f"{what}: a 200 from {name}, which did not answer it once ({answered})")
        elif resp.status != 502:
            wanted = "502" if must_fail else "200 or 502"
            self.add(f"{what}: got {shown(resp)}, wanted {wanted}")

    def tried(self, what: str, tried: bool, dying: str) -> None:
        if not tried:
            self.add(f"{what}: pylb never chose {dying} for it (the test's premise: it must meet the dying backend)")

    def check(self) -> None:
        assert not self.lines, "\n".join(self.lines)


async def warm(peer: Peer, dying: Scripted, healthy: Scripted) -> None:
    """GETs on the client connection until pylb holds an idle keep-alive
    connection to each backend and the last GET went to ``healthy``: round
    robin then sends the next request to ``dying``, on its idle connection."""
    served = []
    for i in range(4):
        resp = await ask(peer, "GET", f"/warm-{i}")
        assert resp.status == 200, f"warm-up: {shown(resp)}"
        served.append(resp.header("x-served-by"))
        if dying.name in served and served[-1] == healthy.name:
            return
    raise AssertionError(f"round robin did not alternate between the two backends: {served}")


# --------------------------------------------------------------------------- (a) a reused connection


@pytest.mark.parametrize("how", ["fin", "rst", "linger", "read-fin", "read-rst"])
@schemes
@drivers
async def test_a_reused_connection_the_backend_ended_sends_the_request_to_another_backend(
    driver: str, scheme: str, how: str
) -> None:
    """The dying backend answered a first request on a keep-alive connection;
    then, stopping, it refuses connects and ends that idle connection: closes
    or resets it (the client's request finds it dead when sent), half-closes
    it and keeps reading (``linger``), or reads the next request and closes
    or resets unanswered (found when waiting for the answer). A request that
    may be replayed gets the healthy backend's 200; so does a POST that never
    reached the dying backend (pylb sends a POST only on a connection checked
    open); a POST the dying backend read gets a 502, never a second copy."""
    verdicts = Verdicts()
    with trio.fail_after(GUARD):
        for method, body in ALL_METHODS:
            dying, healthy = Scripted("dying"), Scripted("healthy")
            async with scripted(dying, healthy), open_lb([dying.backend, healthy.backend], driver=driver) as lb:
                peer = await connect(lb, scheme)
                await warm(peer, dying, healthy)
                before = picks(lb, dying.backend)
                dying.die(how)
                target = f"/a/{how}/{label(method, body)}"
                resp = await ask(peer, method, target, body)
                what = f"{label(method, body)} ({driver}, {scheme}, reused connection {how})"
                verdicts.tried(what, picks(lb, dying.backend) > before, dying.name)
                if replayable(method, body):
                    verdicts.served_by_healthy(what, resp, healthy, method, target, body)
                    if any(s.answered for s in dying.copies(target)):
                        verdicts.add(f"{what}: the dying backend answered it")
                elif how in ("read-fin", "read-rst"):  # the dying backend read the POST
                    verdicts.never_twice(what, resp, target, dying, healthy, must_fail=True)
                else:  # the connection was seen closed before the POST: it never reached the dying backend
                    verdicts.served_by_healthy(what, resp, healthy, method, target, body)
                    verdicts.never_twice(what, resp, target, dying, healthy)
                await peer.aclose()
    verdicts.check()


# --------------------------------------------------------------------------- (b) a new connection


@pytest.mark.parametrize("how", ["accept-fin", "accept-rst", "read-fin", "read-rst", "queued-reset"])
@schemes
@drivers
async def test_b_a_new_connection_closed_before_any_answer_sends_the_request_to_another_backend(
    driver: str, scheme: str, how: str
) -> None:
    """A backend going away: it accepts a connection and closes or resets it
    at once, or reads the request and then closes or resets; or its listener
    closes with pylb's connection still in the accept queue (the kernel
    resets it: a stopping container). No byte of an answer came, so a
    request that may be replayed goes to the healthy backend; a POST goes at
    most once (a 502 when it may have been read)."""
    verdicts = Verdicts()
    with trio.fail_after(GUARD):
        for method, body in ALL_METHODS:
            queued = how == "queued-reset"
            dying = Scripted("dying", accepting=False) if queued else Scripted("dying", on_accept=how)
            healthy = Scripted("healthy")
            async with (
                scripted(dying, healthy),
                open_lb([dying.backend, healthy.backend], driver=driver) as lb,
                trio.open_nursery() as nursery,
            ):
                if queued:
                    nursery.start_soon(dying.reset_queued)
                peer = await connect(lb, scheme)
                target = f"/b/{how}/{label(method, body)}"
                resp = await ask(peer, method, target, body)  # a fresh pylb: round robin starts with the dying one
                what = f"{label(method, body)} ({driver}, {scheme}, new connection {how})"
                verdicts.tried(what, picks(lb, dying.backend) >= 1 and dying.accepted + dying.queued >= 1, dying.name)
                if replayable(method, body):
                    verdicts.served_by_healthy(what, resp, healthy, method, target, body)
                else:
                    verdicts.never_twice(what, resp, target, dying, healthy, must_fail=how.startswith("read"))
                await peer.aclose()
                nursery.cancel_scope.cancel()
    verdicts.check()


# --------------------------------------------------------------------------- (c) a refused connect after a swap


@pytest.mark.parametrize("swap", ["set_backends", "renamed"])
@schemes
@drivers
async def test_c_a_connect_refused_by_a_backend_just_removed_from_the_pool_goes_to_the_new_one(
    driver: str, scheme: str, swap: str
) -> None:
    """Requests are in flight to a backend, connecting (its accept queue is
    full, so the kernel drops the SYNs and connect waits), when the pool is
    swapped without it and it stops listening: the SYN pylb sends again a
    second later is refused. Nothing was sent, so every request, POST
    included, goes to the backend that is in the pool now.

    ``set_backends``: the default service keeps its name. ``renamed``: the
    new snapshot names the default service otherwise, as Docker discovery's
    does when two containers without routes (merged into a service named
    ``default``) become one (a service named after it): the seam issue 14
    measured with ``docker stop`` through the image (``502 cannot connect to
    172.17.0.2:80: ECONNREFUSED``).

    pylb shows no event when it has chosen a backend for a request, so the
    test waits for the dying backend's in-flight count in ``lb.statistics()``
    (polled every 10 ms, bounded by the guard)."""
    verdicts = Verdicts()
    healthy = Scripted("healthy")
    results: dict[str, Message] = {}
    with trio.fail_after(GUARD), contextlib.ExitStack() as hang:
        dying = pylb.Backend(HOST, hang.enter_context(hanging_port()))
        async with scripted(healthy), open_lb([dying], driver=driver) as lb, trio.open_nursery() as nursery:

            async def client(method: str, body: bytes, target: str) -> None:
                peer = await connect(lb, scheme)
                results[target] = await ask(peer, method, target, body)
                await peer.aclose()

            targets = {}
            for method, body in ALL_METHODS:
                target = f"/c/{swap}/{label(method, body)}"
                targets[target] = (method, body)
                nursery.start_soon(client, method, body, target)
            while in_flight(lb, dying) < len(ALL_METHODS):
                await trio.sleep(0.01)
            if swap == "set_backends":
                lb.set_backends([healthy.backend])
            else:
                lb.swap(pylb.Snapshot((pylb.Service("seam-healthy", (healthy.backend,)),), "seam-healthy"))
            hang.close()  # the dying backend's listener closes: its SYNs are refused from now on
    for target, (method, body) in targets.items():
        what = f"{label(method, body)} ({driver}, {scheme}, refused after {swap})"
        verdicts.served_by_healthy(what, results[target], healthy, method, target, body)
    verdicts.check()


# --------------------------------------------------------------------------- (d) a request read in part

FILLER = [(f"X-Filler-{i}", "f" * 240) for i in range(50)]  # a head of about 13 KB (limits: 16 KiB, 100 lines)


@pytest.mark.parametrize("how", ["partial-rst", "partial-fin"])
@pytest.mark.parametrize("conn", ["reused", "new"])
@schemes
@drivers
async def test_d_a_large_request_the_backend_read_only_in_part_goes_to_another_backend(
    driver: str, scheme: str, conn: str, how: str
) -> None:
    """A request with a 13 KB head to a backend with a small receive buffer
    that reads its first KiB and then resets, or half-closes leaving the rest
    unread; on a reused keep-alive connection (the backend dying) or a new
    one. No byte of an answer came: a request that may be replayed gets the
    healthy backend's 200; a POST gets a 502 and no second copy."""
    verdicts = Verdicts()
    with trio.fail_after(GUARD):
        for method, body in ALL_METHODS:
            dying = Scripted("dying", on_accept=how if conn == "new" else "serve", rcvbuf=1024)
            healthy = Scripted("healthy")
            async with scripted(dying, healthy), open_lb([dying.backend, healthy.backend], driver=driver) as lb:
                peer = await connect(lb, scheme)
                if conn == "reused":
                    await warm(peer, dying, healthy)
                    dying.die(how)
                before = picks(lb, dying.backend)
                target = f"/d/{conn}/{how}/{label(method, body)}"
                try:
                    await peer.send(request_bytes(method, target, FILLER, body))
                    resp = await peer.read_response(method)
                except (Truncated, trio.BrokenResourceError, OSError) as exc:
                    resp = Message(b"HTTP/1.1 000 " + repr(exc).encode(), [], b"")
                what = f"{label(method, body)} ({driver}, {scheme}, {conn} connection, {how})"
                verdicts.tried(what, picks(lb, dying.backend) > before, dying.name)
                if dying.partial_copies(target) < 1:
                    verdicts.add(f"{what}: the dying backend never read the start of it")
                if replayable(method, body):
                    verdicts.served_by_healthy(what, resp, healthy, method, target, body)
                else:
                    verdicts.never_twice(what, resp, target, dying, healthy, must_fail=True)
                await peer.aclose()
    verdicts.check()


@schemes
@drivers
async def test_d_a_streamed_body_the_backend_cut_is_a_502_and_never_replayed(driver: str, scheme: str) -> None:
    """A 4 MiB PUT: pylb streams its body (it cannot hold it), so it may not
    be replayed. The backend reads 256 KiB and resets: the client gets a 502,
    the healthy backend never sees the request."""
    big = bytes(range(256)) * (16 * 1024)  # 4 MiB
    with trio.fail_after(GUARD):
        dying = Scripted("dying", on_accept="partial-rst", partial_size=256 * 1024)
        healthy = Scripted("healthy")
        async with scripted(dying, healthy), open_lb([dying.backend, healthy.backend], driver=driver) as lb:
            peer = await connect(lb, scheme)
            target = "/d/streamed"

            async def upload() -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    await peer.send(request_bytes("PUT", target, body=big))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(upload)
                try:
                    resp = await peer.read_response("PUT")
                except Truncated as exc:
                    resp = Message(b"HTTP/1.1 000 " + repr(exc).encode(), [], b"")
                nursery.cancel_scope.cancel()
            verdicts = Verdicts()
            what = f"PUT 4 MiB ({driver}, {scheme})"
            verdicts.tried(what, dying.partial_copies(target) == 1, dying.name)
            verdicts.never_twice(what, resp, target, dying, healthy, must_fail=True)
            verdicts.check()
            await peer.aclose()


# --------------------------------------------------------------------------- (e) answers and half-closes


@pytest.mark.parametrize("how", ["answer-fin", "answer-shut-wr", "shut-rd-answer", "early-answer"])
@schemes
@drivers
async def test_e_a_backend_that_answers_and_half_closes_costs_no_request(driver: str, scheme: str, how: str) -> None:
    """Backends that answer and then end the connection in a way a keep-alive
    pool must notice: close at once after a keep-alive answer
    (``answer-fin``); half-close after it and keep reading, never answering
    again (``answer-shut-wr``: a request pylb sends there is read and left
    unanswered); shut the read side before answering (``shut-rd-answer``);
    answer before reading the body, with Connection: close, then reset
    (``early-answer``: the answer is in pylb's receive buffer before the
    reset). Beside a healthy backend, on one client connection: every request
    gets a 200 with the exact answer of the backend that answered it, once;
    a POST reaches the backends once."""
    verdicts = Verdicts()
    with trio.fail_after(GUARD):
        odd, healthy = Scripted("odd", on_accept=how), Scripted("healthy")
        async with scripted(odd, healthy), open_lb([odd.backend, healthy.backend], driver=driver) as lb:
            peer = await connect(lb, scheme)
            for i, (method, body) in enumerate(ALL_METHODS * 2):
                target = f"/e/{how}/{i}/{label(method, body)}"
                resp = await ask(peer, method, target, body)
                what = f"{label(method, body)} #{i} ({driver}, {scheme}, {how})"
                name = resp.header("x-served-by")
                by = {odd.name: odd, healthy.name: healthy}.get(name or "")
                answered = [s for b in (odd, healthy) for s in b.copies(target) if s.answered]
                if resp.status != 200 or by is None or len(answered) != 1:
                    verdicts.add(f"{what}: got {shown(resp)} from {name}; answered {len(answered)} times")
                else:
                    want = expected_body(by, method, target, answered[0].body)
                    if resp.body != want:
                        verdicts.add(f"{what}: body {resp.body!r}, wanted {want!r}")
                if not replayable(method, body) and copies(target, odd, healthy) != 1:
                    verdicts.add(f"{what}: a POST reached the backends {copies(target, odd, healthy)} times")
                if resp.status != 200 or resp.header("connection") == "close":
                    await peer.aclose()
                    peer = await connect(lb, scheme)
            if not any(s.answered for s in odd.seen):
                verdicts.add(f"{how}: the odd backend answered nothing (the test's premise)")
            await peer.aclose()
    verdicts.check()


# --------------------------------------------------------------------------- (f) draining under load


@pytest.mark.parametrize("pool", ["unchanged", "set_backends", "renamed"])
@schemes
@drivers
async def test_f_a_backend_draining_under_keep_alive_load_costs_no_request(driver: str, scheme: str, pool: str) -> None:
    """Two ``pylb hello`` servers (in process) behind pylb, six keep-alive
    clients sending GETs back to back; one hello drains as on SIGTERM
    (refuses connects, closes its idle keep-alive connections, answers what
    it is reading with Connection: close). Then the pool is left as it is
    (static ``--backend``s), or loses it as discovery would: ``set_backends``
    (the default service keeps its name), or a snapshot that also renames
    the default service (Docker discovery going from two containers without
    routes to one). Zero failed requests."""
    load = Load(limit=6000)
    first, second = HelloServer("hello-1"), HelloServer("hello-2")
    drained: list[bool] = []
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as backends:
            await backends.start(first.run, HOST, 0)
            await backends.start(second.run, HOST, 0)
            hellos = [pylb.Backend(HOST, first.port), pylb.Backend(HOST, second.port)]
            async with open_lb(hellos, driver=driver) as lb:
                async with trio.open_nursery() as nursery:
                    for index in range(6):
                        nursery.start_soon(load.client, functools.partial(connect, lb, scheme), f"{scheme}-{index}")
                    await load.reached(300)

                    async def drain() -> None:
                        drained.append(await first.drain(5.0))

                    nursery.start_soon(drain)
                    at_drain = load.total
                    await load.reached(at_drain + 30)  # discovery hears of it a little later
                    if pool == "set_backends":
                        lb.set_backends([hellos[1]])
                    elif pool == "renamed":
                        lb.swap(pylb.Snapshot((pylb.Service("hello-2", (hellos[1],)),), "hello-2"))
                    await load.reached(at_drain + 600)
                    load.stop.set()
            backends.cancel_scope.cancel()
    print(f"\n{driver} {scheme} {pool}: {load.report()}")
    assert drained == [True], "hello-1 did not drain within 5 s"
    assert load.served_by["hello-2"] > 0 and load.served_by["hello-1"] > 0, load.report()
    assert not load.failures, load.report() + "\n" + "\n".join(load.failures[:10])


# --------------------------------------------------------------------------- (g) --retries


@pytest.mark.parametrize("retries", [0, 1, 3])
@schemes
@drivers
async def test_g_with_every_backend_dying_the_client_gets_one_error_after_at_most_retries_plus_one_tries(
    driver: str, scheme: str, retries: int
) -> None:
    """Five backends that each read a request and close unanswered. With
    ``--retries N`` a request that may be replayed is tried N + 1 times (on
    other backends, or other connections) and the client gets one 502 (or
    503); a POST is tried once."""
    verdicts = Verdicts()
    dying = [Scripted(f"dying-{i}", on_accept="read-fin") for i in range(5)]
    with trio.fail_after(GUARD):
        async with scripted(*dying), open_lb([d.backend for d in dying], driver=driver, retries=retries) as lb:
            for method, body in (("GET", b""), REPLAYABLE[-1], *NOT_REPLAYABLE):
                peer = await connect(lb, scheme)
                target = f"/g/{retries}/{label(method, body)}"
                resp = await ask(peer, method, target, body)
                await peer.aclose()
                what = f"{label(method, body)} ({driver}, {scheme}, --retries {retries})"
                tries = copies(target, *dying)
                per_backend = [len(d.copies(target)) for d in dying]
                if resp.status not in (502, 503):
                    verdicts.add(f"{what}: got {shown(resp)}, wanted one 502 or 503")
                wanted = retries + 1 if replayable(method, body) else 1
                if tries != wanted:
                    verdicts.add(f"{what}: tried {tries} times {per_backend}, wanted {wanted}")
    verdicts.check()


@pytest.mark.parametrize("retries", [0, 1, 3])
@schemes
@drivers
async def test_g_with_every_backend_refusing_the_client_gets_one_error_after_retries_plus_one_connects(
    driver: str, scheme: str, retries: int
) -> None:
    """Five backends refusing connects: a request (any method: nothing is
    sent) is tried on ``--retries`` + 1 of them, then one 502 or 503."""
    verdicts = Verdicts()
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(free_port())
    refusing = [pylb.Backend(HOST, port) for port in sorted(ports)]
    with trio.fail_after(GUARD):
        async with open_lb(refusing, driver=driver, retries=retries) as lb:
            for method, body in (("GET", b""), *NOT_REPLAYABLE):
                before = sum(picks(lb, b) for b in refusing)
                peer = await connect(lb, scheme)
                resp = await ask(peer, method, f"/g/refused/{label(method, body)}", body)
                await peer.aclose()
                tries = sum(picks(lb, b) for b in refusing) - before
                what = f"{label(method, body)} ({driver}, {scheme}, --retries {retries}, refused)"
                if resp.status not in (502, 503):
                    verdicts.add(f"{what}: got {shown(resp)}, wanted one 502 or 503")
                if tries != retries + 1:
                    verdicts.add(f"{what}: pylb chose a backend {tries} times, wanted {retries + 1}")
    verdicts.check()
