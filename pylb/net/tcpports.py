"""The TCP listeners that snapshots ask for (dockercloud-haproxy's ``TCP_PORTS``).

Owns: keeping the set of open discovered TCP listeners equal to the latest
snapshot's ``tcp_ports``: binding a port when a container starts listing it,
pointing an open listener at its service's new name, closing the listening
socket when no container lists the port any more (connections already open
stay; they end as any TCP connection does, or after the drain timeout when
their backend left), and one warning per port that cannot be opened.
Must not know: discovery, HTTP, how connections are served (``start`` and
``make`` are given by the balancer).

Invariants: never raises for a port it cannot open (a port in use, a port
that is one of pylb's own listeners, ``/ssl`` without a certificate, a port
``--tcp-ports`` does not allow, more than MAX_PORTS): it warns once per port
and retries at the next snapshot and every RETRY seconds; a listener it
closes is never used again.
"""

from __future__ import annotations

import logging
import socket as stdsocket
from collections.abc import Callable, Collection
from dataclasses import dataclass

import trio

from pylb.core.errors import ConfigError
from pylb.core.models import Bind, PortSet, TcpPort
from pylb.net.listeners import Listener

log = logging.getLogger("pylb")
MAX_PORTS = 256  # each one is a file descriptor per worker and an accept loop
RETRY = 5.0  # seconds between tries of the ports that could not be opened


@dataclass(slots=True)
class _Open:
    wanted: TcpPort
    listener: Listener


class TcpPorts:
    """The discovered TCP listeners of one balancer, on ``host``.

    ``make(port, sock)`` builds the Listener for a bound socket and
    ``retire(listener)`` forgets it once closed; ``bind(bind)`` binds one;
    ``reserved()`` gives the ports of pylb's own listeners; ``allowed`` the
    ports containers may ask for. ``attach(start)`` is called once the
    balancer runs: from then on every ``want`` opens and closes listeners at
    once, ``start(listener)`` starting each one's accept loop; ``detach()``
    (or ``close_all()``) when it stops."""

    def __init__(
        self,
        host: str,
        make: Callable[[TcpPort, stdsocket.socket], Listener],
        retire: Callable[[Listener], None],
        bind: Callable[[Bind], stdsocket.socket],
        reserved: Callable[[], Collection[int]],
        has_tls: Callable[[], bool],
        allowed: PortSet | None = None,
    ) -> None:
        self.host = host
        self.allowed = allowed if allowed is not None else PortSet()
        self._make = make
        self._retire = retire
        self._bind = bind
        self._reserved = reserved
        self._has_tls = has_tls
        self._wanted: tuple[TcpPort, ...] = ()
        self._open: dict[int, _Open] = {}
        self._warned: set[TcpPort] = set()
        self._start: Callable[[Listener], None] | None = None
        self.who = ""  # "worker N: " in a worker process, whose siblings log the same lines

    @property
    def ports(self) -> dict[int, TcpPort]:
        """The open listeners: port -> what it serves."""
        return {port: entry.wanted for port, entry in self._open.items()}

    def want(self, tcp_ports: tuple[TcpPort, ...]) -> None:
        self._wanted = tcp_ports
        if self._start is not None:
            self._reconcile()

    @property
    def missing(self) -> list[TcpPort]:
        """Wanted, allowed, and not open (yet): what the retries are for."""
        return [t for t in self._wanted if t.port not in self._open and t.port in self.allowed]

    def attach(self, start: Callable[[Listener], None]) -> None:
        self._start = start
        self._reconcile()

    def detach(self) -> None:
        """The balancer stopped accepting: no listener opens any more."""
        self._start = None

    def close_all(self) -> None:
        """Close every listening socket (draining or stopping): no new connections."""
        self.detach()
        for port in list(self._open):
            self._close(port, None)

    def forget(self, listener: Listener) -> None:
        """Close a listener whose accept loop failed; the retries reopen it."""
        for port, entry in list(self._open.items()):
            if entry.listener is listener:
                self._close(port, None)

    async def retry(self) -> None:
        """Every RETRY seconds, try again the ports that could not be opened
        (a port in use may be free now); until cancelled."""
        while True:
            await trio.sleep(RETRY)
            if self._start is not None and self.missing:
                self._reconcile()

    def _reconcile(self) -> None:
        wanted = {t.port: t for t in self._wanted}
        for port, entry in list(self._open.items()):
            now = wanted.get(port)
            if now is None or now.tls != entry.wanted.tls:
                self._close(port, "no container lists it any more" if now is None else "its /ssl setting changed")
            elif now.service != entry.wanted.service:
                assert entry.listener.tcp is not None
                entry.listener.tcp.service = now.service
                entry.wanted = now
        self._warned &= set(self._wanted)
        for port, tcp in sorted(wanted.items()):
            if port not in self._open:
                self._open_port(tcp)

    def _open_port(self, tcp: TcpPort) -> None:
        assert self._start is not None
        problem = None
        shown = f"tcp port {tcp.port}{'/ssl' if tcp.tls else ''} (service {tcp.service})"
        if tcp.port not in self.allowed:
            problem = (
                f"{shown} not opened: --tcp-ports {self.allowed} does not allow it; allow it on pylb "
                f"(--tcp-ports {tcp.port},{self.allowed}) if the containers asking for it are trusted"
            ).replace(",none)", ")")
        elif len(self._open) >= MAX_PORTS:
            problem = f"{shown} not opened: pylb already listens on {MAX_PORTS} ports for containers, its most"
        elif tcp.port in self._reserved():
            problem = f"{shown} not opened: it is one of pylb's own listeners; list another port in TCP_PORTS"
        elif tcp.tls and not self._has_tls():
            problem = (
                f"{shown} not opened: pylb has no certificate to terminate TLS with; give pylb one "
                "(SSL_CERT, DEFAULT_SSL_CERT or --ssl-cert) or list the port without /ssl"
            )
        else:
            bind = Bind("tls" if tcp.tls else "tcp", self.host, tcp.port)
            try:
                sock = self._bind(bind)
            except ConfigError as exc:
                problem = f"{shown} not opened on {bind}: {str(exc).removeprefix(f'--bind {bind}: ')}"
        if problem is not None:
            if tcp not in self._warned:
                self._warned.add(tcp)
                log.warning("%s%s%s", self.who, problem, "" if tcp.port not in self.allowed else "; retrying")
            return
        listener = self._make(tcp, sock)
        self._open[tcp.port] = _Open(tcp, listener)
        log.info("%s%s opened on %s", self.who, shown, bind)
        self._start(listener)

    def _close(self, port: int, why: str | None) -> None:
        entry = self._open.pop(port)
        sock = entry.listener.sock
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()
        self._retire(entry.listener)
        if why is not None:
            log.info("%stcp port %d (service %s) closed: %s", self.who, port, entry.wanted.service, why)
