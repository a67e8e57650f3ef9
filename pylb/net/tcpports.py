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
that is one of pylb's own listeners, ``/ssl`` without a certificate): it
warns once and retries at the next snapshot; a listener it closes is never
used again.
"""

from __future__ import annotations

import logging
import socket as stdsocket
from collections.abc import Callable, Collection
from dataclasses import dataclass

import trio

from pylb.config import Bind
from pylb.core.errors import ConfigError
from pylb.core.models import TcpPort
from pylb.net.listeners import Listener

log = logging.getLogger("pylb")


@dataclass(slots=True)
class _Open:
    wanted: TcpPort
    listener: Listener


class TcpPorts:
    """The discovered TCP listeners of one balancer, on ``host``.

    ``make(port, sock)`` builds the Listener for a bound socket;
    ``bind(bind)`` binds one; ``reserved()`` gives the ports of pylb's own
    listeners. ``attach(start)`` is called once the balancer runs: from then
    on every ``want`` opens and closes listeners at once, ``start(listener)``
    starting each one's accept loop."""

    def __init__(
        self,
        host: str,
        make: Callable[[TcpPort, stdsocket.socket], Listener],
        bind: Callable[[Bind], stdsocket.socket],
        reserved: Callable[[], Collection[int]],
        has_tls: Callable[[], bool],
    ) -> None:
        self.host = host
        self._make = make
        self._bind = bind
        self._reserved = reserved
        self._has_tls = has_tls
        self._wanted: tuple[TcpPort, ...] = ()
        self._open: dict[int, _Open] = {}
        self._warned: set[TcpPort] = set()
        self._start: Callable[[Listener], None] | None = None

    @property
    def ports(self) -> dict[int, TcpPort]:
        """The open listeners: port -> what it serves."""
        return {port: entry.wanted for port, entry in self._open.items()}

    def want(self, tcp_ports: tuple[TcpPort, ...]) -> None:
        self._wanted = tcp_ports
        if self._start is not None:
            self._reconcile()

    def attach(self, start: Callable[[Listener], None]) -> None:
        self._start = start
        self._reconcile()

    def close_all(self) -> None:
        """Close every listening socket (draining or stopping): no new connections."""
        self._start = None
        for port in list(self._open):
            self._close(port, None)

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
        if tcp.port in self._reserved():
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
                log.warning("%s; retrying at the next change", problem)
            return
        listener = self._make(tcp, sock)
        self._open[tcp.port] = _Open(tcp, listener)
        log.info("%s opened on %s", shown, bind)
        self._start(listener)

    def _close(self, port: int, why: str | None) -> None:
        entry = self._open.pop(port)
        sock = entry.listener.sock
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()
        if why is not None:
            log.info("tcp port %d (service %s) closed: %s", port, entry.wanted.service, why)
