"""The embedding API: a balancer inside a trio program or a pytest test.

Owns: ``open_balancer``, the one-call way to run a balancer on port 0 and
drive it from code. Must not know: the CLI, signals or logging setup (the
library installs no signal handler and configures no logging).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import sniffio
import trio

from pylb.config import Config, _choice, _parse_monitor_uri, _parse_networks
from pylb.core.errors import ConfigError
from pylb.core.exchange import Observer
from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Bind, parse_balance
from pylb.core.timeouts import Timeouts
from pylb.net.server import Balancer
from pylb.tls import CertBundle, bundle_from_file, parse_pem_bundle


def require_trio(what: str, way_in: str = "run_balancer") -> None:
    """Raise one clear RuntimeError when ``what`` is called outside trio (from
    asyncio, curio, or no event loop), naming the way in that works there."""
    try:
        trio.lowlevel.current_trio_token()
        return
    except RuntimeError:
        pass
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "no event loop"
    raise RuntimeError(
        f"{what} runs under trio, not {library}: from asyncio or synchronous code use "
        f"`with pylb.testing.{way_in}(...)` (it runs trio in a thread of its own)"
    )


def _tls_material(tls: object) -> tuple[ssl.SSLContext | None, CertBundle | None]:
    """Accept what a test has at hand: a context, PEM text or bytes, a path to
    a PEM file, or trustme objects (a CA, a leaf, a Blob)."""
    if tls is None or isinstance(tls, ssl.SSLContext):
        return tls, None
    if hasattr(tls, "issue_cert"):  # a trustme CA
        tls = tls.issue_cert("localhost", "127.0.0.1", "::1")
    pem = getattr(tls, "private_key_and_cert_chain_pem", None)  # a trustme LeafCert
    if pem is not None:
        tls = pem
    if hasattr(tls, "bytes") and hasattr(tls, "write_to_path"):  # a trustme Blob
        tls = tls.bytes()
    if isinstance(tls, bytes):
        tls = tls.decode("ascii", "replace")
    if isinstance(tls, os.PathLike) or (isinstance(tls, str) and "-----BEGIN" not in tls and "\n" not in tls):
        return None, bundle_from_file(tls, "tls")
    if not isinstance(tls, str):
        raise ConfigError(
            f"tls: expected an SSLContext, PEM text or bytes, a path to a PEM file, or a trustme CA, "
            f"LeafCert or Blob, not {type(tls).__name__}"
        )
    return None, parse_pem_bundle(tls, "tls")


@asynccontextmanager
async def open_balancer(
    backends: Sequence[Backend | str] = (),
    bind: str | Sequence[str] = "127.0.0.1:0",
    *,
    balance: str = "roundrobin",
    timeouts: Timeouts | None = None,
    maxconn: int = 4096,
    observer: Observer | None = None,
    tls: object = None,
    force_ssl: bool = False,
    hsts_max_age: int = 0,
    health: HealthCheck | None = None,
    send_proxy: str | None = None,
    accept_proxy: Sequence[str] = (),
    tcp_drain: float = 30.0,
    stats: str | None = None,
    stats_auth: tuple[str, str] | None = None,
    monitor_uri: str | None = None,
    access_log: str = "off",
) -> AsyncIterator[Balancer]:
    """Run a balancer for the duration of the ``async with`` block.

    ``backends`` are ``Backend`` objects or ``"HOST:PORT[,weight=N]"`` text;
    ``bind`` one or more ``[http[s]://]ADDR:PORT`` (port 0 picks a free port).
    ``tls`` turns on https: an ``ssl.SSLContext``, PEM text or bytes (key and
    chain), a path to such a PEM file (``str`` or ``pathlib.Path``), a trustme
    ``LeafCert`` or ``Blob``, or a trustme ``CA`` (which then issues a
    certificate for localhost, 127.0.0.1 and ::1). With ``tls`` and no https
    address in ``bind``, pylb also listens on ``https://127.0.0.1:0``
    (``lb.https_url``). ``health`` sets the active checks (default: a TCP
    connect every 2 s, rise 2, fall 3; ``HealthCheck(enabled=False)`` turns
    them off, e.g. for a test that counts backend connections).
    TCP listeners (``tcp://`` and ``tls://`` binds) take ``send_proxy``
    (``"v1"``/``"v2"``) and ``tcp_drain``; ``accept_proxy`` lists the CIDR
    ranges whose PROXY headers are believed, on every listener.
    Observability, all off by default (docs/observability.md): ``stats``
    (``"127.0.0.1:0"``: the stats page, ``/stats.json`` and ``/metrics``
    there, ``lb.stats_url``; per-class figures and latency in
    ``statistics()``), ``stats_auth`` (user, password), ``monitor_uri``
    (``"/ping"``: answered by pylb, 200 or 503), ``access_log`` (haproxy,
    combined or json lines on standard output).
    The yielded Balancer has ``url``, ``urls``, ``set_backends()`` and
    ``statistics()``. Leaving the block closes listeners and connections.
    Raises ConfigError (or its subclass BindError) for bad input, and
    RuntimeError outside trio (asyncio and synchronous code use
    ``pylb.testing.run_balancer``, which runs trio in a thread)."""
    require_trio("pylb.open_balancer")
    binds = tuple(Bind.parse(b, "bind") for b in ((bind,) if isinstance(bind, str) else bind))
    context, bundle = _tls_material(tls)
    if tls is not None and not any(b.scheme in ("https", "tls") for b in binds):
        binds += (Bind("https", "127.0.0.1", 0),)
    config = Config(
        binds=binds,
        ssl_cert=bundle,
        force_ssl=force_ssl,
        hsts_max_age=hsts_max_age,
        send_proxy=send_proxy,
        accept_proxy=_parse_networks(",".join(accept_proxy), "accept_proxy"),
        tcp_drain=tcp_drain,
        backends=tuple(b if isinstance(b, Backend) else Backend.parse(b, "backends") for b in backends),
        balance=parse_balance(balance, "balance"),
        timeouts=timeouts or Timeouts(),
        maxconn=maxconn,
        stats_port=Bind.parse(stats, "stats") if stats is not None else None,
        stats_auth=stats_auth,
        monitor_uri=_parse_monitor_uri(monitor_uri, "monitor_uri") if monitor_uri is not None else None,
        log_format=_choice(access_log, "access_log", ("haproxy", "combined", "json", "off")),
    )
    lb = Balancer(config, observer=observer, tls=context, health=health)
    lb.bind()  # a BindError surfaces here, not wrapped in an ExceptionGroup
    async with trio.open_nursery() as nursery:
        await nursery.start(lb.run)
        try:
            yield lb
        finally:
            nursery.cancel_scope.cancel()
