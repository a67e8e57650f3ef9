"""The balancer: listeners, the accept loops, and the pool they share.

Owns: binding listening sockets, the connection limit (MAXCONN), giving
each client connection to the fast lane (plain HTTP) or to a task of its
own (TLS, PROXY headers, TCP mode), and applying snapshot swaps to both the
pool and the backend connection pool; wiring what observes it (the records'
observer, the access log, the tally, the stats port: ``pylb.observe``) when
the settings ask for it, and nothing of it when they do not. Must not know:
where snapshots come from, the CLI, signals, or global logging setup.
"""

from __future__ import annotations

import errno
import logging
import secrets
import socket as stdsocket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from pylb.core.balancer import Cursor
from pylb.core.errors import ConfigError
from pylb.core.exchange import Exchange, Observer, Recorder, Site
from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Bind, Snapshot, TcpPort
from pylb.core.policy import hsts_header
from pylb.core.pool import Pool, SwapResult
from pylb.core.requestid import RequestIds
from pylb.net.fastlane import FastLane
from pylb.net.health import HealthChecker
from pylb.net.httptask import ClientConnection
from pylb.net.listeners import Listener, serve_connection
from pylb.net.relaylane import RelayLane
from pylb.net.settings import Settings, SettingsSource
from pylb.net.stream import accept, dial, listen_socket
from pylb.net.tcpports import TcpPorts
from pylb.net.tcpproxy import TcpContext
from pylb.net.timers import Watchdog
from pylb.net.upstream import Dialer, Upstream
from pylb.observe.accesslog import AccessLog, Live
from pylb.observe.events import EventFeed
from pylb.observe.hub import Observation, user_recorder
from pylb.observe.server import StatsServer
from pylb.observe.stats import Tally, present, report
from pylb.tls import CertBundle, CertStore, parse_pem_bundle, server_context

log = logging.getLogger("pylb")

_ACCEPT_CAPACITY_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class BindError(ConfigError):
    """A listening address could not be bound."""


@dataclass(frozen=True, slots=True)
class BoundAddress:
    """Where a listener actually listens (the real port when 0 was asked)."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"


class Balancer:
    """A running load balancer. Build it, then ``await nursery.start(lb.run)``;
    or use ``pylb.open_balancer`` which does both."""

    def __init__(
        self,
        config: Settings | SettingsSource,
        pool: Pool | None = None,
        observer: Observer | None = None,
        dialer: Dialer = dial,
        tls: ssl.SSLContext | None = None,
        health: HealthCheck | None = None,
        cursor: Cursor | None = None,
        fast_lane: bool = True,
    ) -> None:
        if not isinstance(config, Settings):
            if tls is None:
                config.check()
            config = config.settings()
        self.settings = config
        certificates = config.certificates
        self.certs: CertStore | None = server_context(certificates[0], certificates[1:]) if certificates else None
        for bundle in certificates:
            if bundle.expired:
                log.warning("certificate %s expired on %s; clients will refuse it", bundle.label, bundle.not_after)
        self.tls_context = tls if tls is not None else self.certs.context if self.certs else None
        for bind in config.listeners:
            if bind.scheme in ("https", "tls") and self.tls_context is None:
                raise ConfigError(f"listener {bind}: no certificate for TLS (give one, or an ssl context)")
        if pool is None:
            pool = Pool(config.snapshot, cursor)
        self.pool = pool
        self.watchdog = Watchdog()
        self.upstream = Upstream(
            pool.is_live, connect_timeout=config.timeouts.connect, dialer=dialer, clock=self.watchdog
        )
        self.observer = observer
        self.events = EventFeed(worker=config.worker)
        self.started = time.time()
        self.draining = False
        # Observability: records are made only when something reads them (an observer of the caller's,
        # the access log, the tally); with none of them the request path is what it was without it.
        tally = Tally() if config.collect or config.stats is not None else None
        access = AccessLog(config.access_log) if config.access_log != "off" else None
        if access is not None:
            access.skip_monitor(config.monitor_uri)
        self.observation: Observation | None = None
        self._recorder: Recorder | None = user_recorder(observer) if observer is not None else None
        if tally is not None or access is not None:
            self.observation = Observation(tally, access, observer, self._live)
            self._recorder = self.observation.recorder
        self.access_log = access
        self._stats_socket: stdsocket.socket | None = None
        self.stats_server: StatsServer | None = None
        self.health_check = health if health is not None else config.health
        self.health = HealthChecker(
            pool, self.health_check, dialer, min(config.timeouts.connect, self.health_check.inter), self.events
        )
        self.addresses: list[BoundAddress] = []
        self.request_ids = RequestIds(secrets.token_hex(4))  # error pages and the access log show them
        self._contexts: list[Site] = []
        self._tcp_contexts: list[TcpContext] = []
        self._limit = trio.Semaphore(config.maxconn)
        # Plain-HTTP connections go through the fast lane (it needs real sockets to backends).
        # ``fast_lane=False`` or --lanes false (PYLB_LANES) turn both lanes off.
        lanes = fast_lane and config.lanes and dialer is dial
        self.lane: FastLane | None = None
        if lanes:
            self.lane = FastLane(self.upstream, self.watchdog, self._connection_closed)
        # Plain TCP-mode connections relay small exchanges there (same condition).
        self.relay: RelayLane | None = RelayLane(self.watchdog) if lanes else None
        self._accepting = trio.CancelScope()
        self._all_closed: trio.Event | None = None
        self._sockets: list[stdsocket.socket] | None = None
        self._reuse_port = False  # a worker: its siblings bind the same discovered TCP ports
        self._tcp_retired = {"connections": 0, "bytes_in": 0, "bytes_out": 0}  # closed discovered ports
        self.tcp_ports = TcpPorts(
            config.listeners[0].host if config.listeners else "0.0.0.0",
            self._discovered_listener,
            self._retire_listener,
            lambda bind: bind_listener(bind, reuse_port=self._reuse_port),
            lambda: {a.port for a in self.addresses},
            lambda: self.tls_context is not None,
            config.tcp_ports,
        )
        self.connections = 0

    @property
    def url(self) -> str:
        """The URL of the first listener."""
        return self.addresses[0].url

    @property
    def https_url(self) -> str:
        """The URL of the first https listener."""
        return next(a.url for a in self.addresses if a.scheme == "https")

    @property
    def urls(self) -> list[str]:
        return [a.url for a in self.addresses]

    def swap(self, snapshot: Snapshot) -> SwapResult:
        """Make ``snapshot`` the world, atomically; idle connections to
        removed backends close now, busy ones after their last request."""
        result = self.pool.swap(snapshot)
        self.upstream.close_idle(result.removed)
        self.tcp_ports.want(snapshot.tcp_ports)
        return result

    def set_backends(self, backends: Sequence[Backend | str]) -> SwapResult:
        """Replace the default service's backends. When this returns, no new
        request goes to a backend that is not in ``backends``."""
        parsed = tuple(b if isinstance(b, Backend) else Backend.parse(b, "set_backends") for b in backends)
        current = self.pool.snapshot or Snapshot()
        return self.swap(current.with_default_backends(parsed, self.settings.balance))

    def add_certificate(self, certificate: CertBundle | str) -> CertBundle:
        """Serve another certificate (PEM text or a parsed bundle) to clients
        whose SNI names it, from the next handshake on; no listener restarts."""
        bundle = certificate if isinstance(certificate, CertBundle) else parse_pem_bundle(certificate, "certificate")
        if self.certs is None:
            raise ConfigError("add_certificate: this balancer has no https listener built from certificates")
        self.certs.add(bundle)
        return bundle

    def statistics(self) -> dict[str, Any]:
        """What the stats port's ``/stats.json`` shows: the state, every
        listener, service and backend with its figures (``pylb.observe.stats``;
        responses and errors by class and latency need ``collect`` or a stats
        port: ``observing``), the last events; and the data plane's insides
        (``pool``, ``upstream``, the lanes)."""
        if self.observation is not None:
            self.observation.flush()
        data = present([self.report()])
        data.update(
            addresses=[a.url for a in self.addresses],
            pool=self.pool.statistics(),
            upstream=self.upstream.statistics(),
            fast_lane=self.lane.statistics() if self.lane is not None else None,
            relay_lane=self.relay.statistics() if self.relay is not None else None,
            access_log=self.access_log.statistics() if self.access_log is not None else None,
        )
        return data

    def report(self) -> dict[str, Any]:
        """This balancer's figures as plain data (a worker sends them to its supervisor)."""
        if self.observation is not None:
            self.observation.flush()
        return report(self)

    def sites(self) -> list[Site]:
        """The HTTP listeners' shared state (one ``Site`` each)."""
        return list(self._contexts)

    def tcp_statistics(self) -> dict[str, Any]:
        return {
            "ports": {port: tcp.service for port, tcp in sorted(self.tcp_ports.ports.items())},
            "listeners": [
                {"name": c.name, "proto": c.name.partition(":")[0], "port": c.port, "requests": c.connections}
                for c in self._tcp_contexts
            ],
            **{
                key: total + sum(getattr(c, key) for c in self._tcp_contexts)
                for key, total in self._tcp_retired.items()
            },
        }

    def _live(self) -> Live:
        """The counts the access log's HAProxy lines show besides the records'."""
        services: dict[str, int] = {}
        backends: dict[str, int] = {}
        snapshot = self.pool.snapshot
        states = {s.backend.key: s for s in self.pool.states()}
        for service in snapshot.services if snapshot is not None else ():
            total = 0
            for backend in service.backends:
                state = states.get(backend.key)
                if state is not None:
                    total += state.in_flight
                    backends[str(backend)] = state.in_flight
            services[service.name] = total
        return Live(self.connections, services, backends, self.pool.names)

    def __repr__(self) -> str:
        return f"<Balancer {' '.join(self.urls) or 'not started'} {self.pool!r} {self.upstream!r}>"

    async def run(self, *, task_status: trio.TaskStatus[list[BoundAddress]] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind every listener, report the bound addresses, serve forever."""
        binds = self.settings.listeners
        sockets = self.bind()
        ports = [sock.getsockname()[1] for sock in sockets]
        https_port = next((p for b, p in zip(binds, ports, strict=True) if b.scheme == "https"), 443)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.watchdog.run)
                if self.observation is not None:
                    await nursery.start(self.observation.run)
                if self._stats_socket is not None:
                    self.stats_server = StatsServer(self._stats_socket, self._statistics, self.settings.stats_auth)
                    await nursery.start(self.stats_server.run)
                nursery.start_soon(self.health.run)  # idle unless some check is enabled
                nursery.start_soon(self.tcp_ports.retry)
                if self.lane is not None:
                    await nursery.start(self.lane.run, nursery)
                if self.relay is not None:
                    await nursery.start(self.relay.run)
                accept_nursery = await nursery.start(self._accept_nursery)
                for bind, sock in zip(binds, sockets, strict=True):
                    host, port = sock.getsockname()[:2]
                    self.addresses.append(BoundAddress(bind.scheme, host, port))
                    listener = self._listener(bind.scheme, sock, port, https_port)
                    accept_nursery.start_soon(self._accept_loop, listener, nursery)
                if self.pool.snapshot is not None:
                    self.tcp_ports.want(self.pool.snapshot.tcp_ports)
                self.tcp_ports.attach(lambda listener: accept_nursery.start_soon(self._discovered, listener, nursery))
                task_status.started(list(self.addresses))
        finally:
            self._close_listeners()
            self.upstream.close_idle()
            if self.observation is not None:
                self.observation.close()
            if self._stats_socket is not None:
                self._stats_socket.close()

    async def _statistics(self) -> Mapping[str, Any]:
        return self.statistics()

    @property
    def stats_url(self) -> str:
        """The stats page's URL (``stats`` in the settings)."""
        if self._stats_socket is None:
            raise RuntimeError("this balancer has no stats port (set stats in its settings, or STATS_PORT)")
        host, port = self._stats_socket.getsockname()[:2]
        return BoundAddress("http", host, port).url

    def _close_listeners(self) -> None:
        self.tcp_ports.close_all()
        for sock in self._sockets or ():
            if sock.fileno() != -1:
                trio.lowlevel.notify_closing(sock)
                sock.close()

    def _discovered_listener(self, wanted: TcpPort, sock: stdsocket.socket) -> Listener:
        listener = self._listener("tls" if wanted.tls else "tcp", sock, wanted.port, 443)
        assert listener.tcp is not None
        listener.tcp.service = wanted.service
        return listener

    def _retire_listener(self, listener: Listener) -> None:
        if listener.tcp in self._tcp_contexts:
            self._tcp_contexts.remove(listener.tcp)
            for key in self._tcp_retired:
                self._tcp_retired[key] += getattr(listener.tcp, key)

    def _listener(self, scheme: str, sock: stdsocket.socket, port: int, https_port: int) -> Listener:
        config = self.settings
        http: Site | None = None
        tcp: TcpContext | None = None
        if scheme in ("tcp", "tls"):
            tcp = TcpContext(
                self.pool,
                self.upstream,
                config.timeouts,
                self.watchdog,
                port,
                send_proxy=config.send_proxy,
                retries=config.retries,
                drain=config.tcp_drain,
                health=self.health_check,
                name=f"{scheme}:{port}",
                observer=self.observation.connections if self.observation is not None else None,
                events=self.events,
            )
            if scheme == "tcp" and not config.accept_proxy:
                tcp.lane = self.relay  # TLS and PROXY headers stay on the task path
            self._tcp_contexts.append(tcp)
        else:
            http = self._context(scheme, port, https_port)
            self._contexts.append(http)
        tls = self.tls_context if scheme in ("https", "tls") else None
        return Listener(
            sock, http, tcp, tls, config.accept_proxy, config.timeouts.handshake, self.upstream, self.watchdog
        )

    def bind(self, sockets: list[stdsocket.socket] | None = None) -> list[stdsocket.socket]:
        """Bind every listening socket now (``run`` does it when it was not
        done): call it before starting trio to get a BindError plainly.
        ``sockets``: listening sockets bound elsewhere (a worker process gets
        its own, one per listener, in the order of ``config.listeners``)."""
        if sockets is not None:
            self._sockets = sockets
            self._reuse_port = True
        if self._sockets is None:
            self._sockets = bind_all(self.settings.listeners)
        stats = self.settings.stats
        if stats is not None and self._stats_socket is None:
            try:
                self._stats_socket = bind_listener(stats)
            except BindError as exc:
                for sock in self._sockets:
                    sock.close()
                self._sockets = None
                raise BindError(str(exc).replace("--bind", "the stats port", 1)) from None
        return self._sockets

    def _context(self, scheme: str, port: int, https_port: int = 443) -> Site:
        config = self.settings
        site = Site(
            self.pool,
            self.upstream,
            config.timeouts,
            self.watchdog,
            scheme,
            port,
            recorder=self._recorder,
            force_ssl=config.force_ssl,
            retries=config.retries,
            health=self.health_check,
            https_port=https_port,
            extra_response=hsts_header(config.hsts_max_age) if scheme == "https" else b"",
            ids=self.request_ids,
        )
        site.monitor = config.monitor_uri.encode() if config.monitor_uri else None
        site.events = self._event
        return site

    def _event(self, kind: str, text: str) -> None:
        """An event the exchange machine saw (a backend marked down by failures)."""
        self.events.add(kind, text)

    async def _accept_nursery(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        try:
            with self._accepting:
                async with trio.open_nursery() as nursery:
                    task_status.started(nursery)
                    await trio.sleep_forever()
        finally:
            self.tcp_ports.detach()  # its nursery is closed: a later swap must not start loops there

    def stop_accepting(self) -> None:
        """Close the listeners now: new connections are refused."""
        self._accepting.cancel()
        self._close_listeners()  # the accept loops see it closed and end

    async def drain(self, grace: float) -> bool:
        """Stop accepting; let requests in flight finish (their responses say
        ``Connection: close``) and close idle keep-alive connections. Returns
        True when every connection ended within ``grace`` seconds."""
        self.stop_accepting()
        self.draining = True
        for ctx in self._contexts:
            ctx.closing = True
        for item in self.watchdog.items():
            if isinstance(item, ClientConnection) and item.idle:
                item.scope.cancel()
        if self.lane is not None:
            self.lane.close_idle()
        self._all_closed = trio.Event()
        if self.connections == 0:
            self._all_closed.set()
        with trio.move_on_after(grace):
            await self._all_closed.wait()
        return self._all_closed.is_set()

    async def serve_stream(
        self, stream: trio.abc.Stream, client: tuple[str, int], scheme: str = "http", port: int = 80
    ) -> None:
        """Serve one already-connected client stream (any trio stream: a TLS
        stream, or a memory stream in a test) until it ends. ``run`` must be
        running (it keeps the clock that timeouts use)."""
        site = self._context(scheme, port)
        self._contexts.append(site)
        await ClientConnection(stream, Exchange(site, client), self.upstream, self.watchdog).run()

    async def _accept_loop(self, listener: Listener, nursery: trio.Nursery) -> None:
        lane = self.lane
        if listener.http is None or listener.trusted:
            lane = None  # TCP mode and PROXY headers need a task per connection
        accepted = 0
        while True:
            accepted += 1
            try:
                if accepted % 16 == 0:  # a burst of connections must not starve the rest
                    raise trio.WouldBlock
                self._limit.acquire_nowait()
            except trio.WouldBlock:
                await self._limit.acquire()
            try:
                conn, address = await accept(listener.sock)
            except trio.ClosedResourceError:
                self._limit.release()
                return  # draining: the listener is closed
            except OSError as exc:
                self._limit.release()
                if exc.errno in _ACCEPT_CAPACITY_ERRORS:
                    log.warning(
                        "accept failed: %s; retrying in 100 ms (raise the file limit or lower MAXCONN)", exc.strerror
                    )
                    await trio.sleep(0.1)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            except BaseException:
                self._limit.release()
                raise
            if lane is None:
                nursery.start_soon(self._handle, listener, conn, address)
                continue
            assert listener.http is not None
            self.connections += 1
            try:
                lane.adopt(conn, address, listener.http, listener.tls)
            except Exception:
                log.exception("internal error on a connection from %s; connection closed", address[0])
                conn.close()
                self._connection_closed()

    async def _discovered(self, listener: Listener, nursery: trio.Nursery) -> None:
        """A discovered TCP port's accept loop: a failure closes that port, not the balancer."""
        try:
            await self._accept_loop(listener, nursery)
        except OSError as exc:
            port = listener.sock.getsockname()[1] if listener.sock.fileno() != -1 else "?"
            log.error("tcp port %s: accept failed (%s); closing it until it changes", port, exc.strerror or exc)
            self.tcp_ports.forget(listener)

    async def _handle(self, listener: Listener, sock: stdsocket.socket, address: tuple[str, int]) -> None:
        self.connections += 1
        try:
            await serve_connection(listener, sock, address)
        except Exception:
            log.exception("internal error on a connection from %s; connection closed", address[0])
            sock.close()
        finally:
            self._connection_closed()

    def _connection_closed(self) -> None:
        self.connections -= 1
        self._limit.release()
        if self.connections == 0 and self._all_closed is not None:
            self._all_closed.set()


def bind_listener(bind: Bind, port: int | None = None, reuse_port: bool = False) -> stdsocket.socket:
    """A listening socket for ``bind`` (at ``port`` when given), or a
    BindError naming it and the fix."""
    try:
        return listen_socket(bind.host, bind.port if port is None else port, reuse_port=reuse_port)
    except OSError as exc:
        fix = "choose another port" if exc.errno == errno.EADDRINUSE else "check the address"
        if exc.errno == errno.EACCES:
            fix = "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port above 1023"
        raise BindError(f"--bind {bind}: {exc.strerror or exc} ({fix})") from None


def bind_all(binds: Sequence[Bind], copies: int = 1) -> list[stdsocket.socket]:
    """``copies`` listening sockets per bind (SO_REUSEPORT when more than
    one, all on the port the first one got), grouped by copy: the sockets of
    copy i are ``result[i * len(binds):(i + 1) * len(binds)]``."""
    sockets: list[stdsocket.socket] = []
    try:
        firsts = [bind_listener(b, reuse_port=copies > 1) for b in binds]
        sockets += firsts
        ports = [sock.getsockname()[1] for sock in firsts]
        for _ in range(copies - 1):
            sockets += [bind_listener(b, p, reuse_port=True) for b, p in zip(binds, ports, strict=True)]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def serve(
    config: Settings | SettingsSource,
    *,
    pool: Pool | None = None,
    observer: Observer | None = None,
    task_status: trio.TaskStatus[list[BoundAddress]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a balancer for ``config`` until cancelled.

    ``await nursery.start(pylb.serve, config)`` returns the bound addresses.
    Pass your own ``pool`` to swap snapshots into it while it runs."""
    await Balancer(config, pool, observer).run(task_status=task_status)
