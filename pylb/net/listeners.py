"""What happens to an accepted connection before a protocol takes it.

Owns: reading a PROXY header from trusted sources (``accept-proxy``), the
TLS handshake with its timeout, and handing the stream to the HTTP proxy or
the TCP proxy of its listener. Must not know: balancing, routing, HTTP.
"""

from __future__ import annotations

import ipaddress
import logging
import socket as stdsocket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from pylb.core import proxyproto
from pylb.core.errors import ProxyError
from pylb.core.exchange import Exchange, Site
from pylb.net.httptask import ClientConnection
from pylb.net.stream import RECEIVE_SIZE, FastStream
from pylb.net.tcpproxy import TcpConnection, TcpContext
from pylb.net.timers import Watchdog
from pylb.net.tlsconn import TlsStream
from pylb.net.tlsconn import handshake as tls_handshake
from pylb.net.upstream import Upstream

log = logging.getLogger("pylb")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class Listener:
    """One listening socket and what its connections get: ``http`` or
    ``tcp`` context, ``tls`` to terminate, ``trusted`` sources whose PROXY
    header names the real client."""

    sock: stdsocket.socket
    http: Site | None
    tcp: TcpContext | None
    tls: ssl.SSLContext | None
    trusted: Sequence[Network]
    handshake_timeout: float
    upstream: Upstream
    watchdog: Watchdog


class _Dropped(Exception):
    """The connection ended before a protocol took it (logged at debug)."""


async def serve_connection(listener: Listener, sock: stdsocket.socket, address: tuple[str, int]) -> None:
    """Serve one accepted connection to its end; never raises for what a
    client does."""
    transport = FastStream(sock, nodelay=False)  # inherited from the listening socket
    stream: trio.abc.Stream = transport
    try:
        early = b""
        if listener.trusted and _is_trusted(address[0], listener.trusted):
            address, early = await _read_proxy_header(stream, address, listener.handshake_timeout)
        if listener.tls is not None:
            stream = await _handshake(transport, listener, early)
            early = b""
        if listener.tcp is not None:
            local = sock.getsockname()[:2]
            await TcpConnection(stream, address, local, listener.tcp).run(early)
        else:
            assert listener.http is not None
            x = Exchange(listener.http, address, early)
            await ClientConnection(stream, x, listener.upstream, listener.watchdog).run()
    except _Dropped as exc:
        log.debug("connection from %s dropped: %s", address[0], exc)
        await trio.aclose_forcefully(stream)


def _is_trusted(ip: str, trusted: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return False
    return any(address in network for network in trusted)


async def _read_proxy_header(
    stream: trio.abc.Stream, address: tuple[str, int], timeout: float
) -> tuple[tuple[str, int], bytes]:
    buf = b""
    with trio.move_on_after(timeout):
        while True:
            try:
                header = proxyproto.parse(buf)
            except ProxyError as exc:
                raise _Dropped(exc.detail) from None
            if header is not None:
                return (header.source or address), buf[header.length :]
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise _Dropped("closed before its PROXY header")
            buf += data
    raise _Dropped("no PROXY header in time")


async def _handshake(transport: FastStream, listener: Listener, early: bytes) -> TlsStream:
    assert listener.tls is not None
    with trio.move_on_after(listener.handshake_timeout):
        try:
            return await tls_handshake(transport, listener.tls, early)
        except trio.BrokenResourceError as exc:
            raise _Dropped(str(exc)) from None
    raise _Dropped("TLS handshake timed out")
