"""The data plane's own settings: everything a ``Balancer`` runs with.

Owns: one frozen object naming the listeners, certificates, first snapshot,
timeouts, limits and switches of the data plane. ``pylb.config.Config``
builds one (``Config.settings()``); code embedding pylb may build one
directly. Must not know: flags, environment variables, their parsing and
their error messages (``pylb.config``, ``pylb.cli``): this package imports
neither, and a test holds it to that.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from pylb.core.health import HealthCheck
from pylb.core.models import Bind, PortSet, Snapshot
from pylb.core.timeouts import Timeouts
from pylb.tls import CertBundle

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Settings:
    """``listeners``: where to listen (the CLI's defaults are resolved already);
    ``certificates``: for https and tls listeners, the default one first;
    ``snapshot``: the world to start with (None: 503 until a swap);
    ``retries``: other backends tried for a request whose backend failed before
    answering; ``lanes``: the readiness loops (False: a task per connection).
    Observability (``pylb.observe``), all off unless set: ``access_log`` (a
    format: haproxy, combined, json; ``off``) to standard output; ``stats``:
    where the stats server listens (the page, ``/stats.json``, ``/metrics``),
    ``stats_auth`` its Basic-auth user and password; ``collect``: count every
    request by class and latency (on with ``stats``; a worker's figures go to
    its supervisor's page); ``monitor_uri``: the path pylb answers itself on
    every HTTP listener (200 serving, 503 draining or no backend up);
    ``worker``: this process's tag in log lines and events (``w1``...)."""

    listeners: tuple[Bind, ...] = (Bind("http", "127.0.0.1", 0),)
    certificates: tuple[CertBundle, ...] = ()
    snapshot: Snapshot | None = None
    balance: str = "roundrobin"
    timeouts: Timeouts = field(default_factory=Timeouts)
    maxconn: int = 4096
    retries: int = 3
    force_ssl: bool = False
    hsts_max_age: int = 0
    health: HealthCheck = field(default_factory=HealthCheck)
    send_proxy: str | None = None
    accept_proxy: tuple[Network, ...] = ()
    tcp_drain: float = 30.0
    tcp_ports: PortSet = field(default_factory=PortSet)
    lanes: bool = True
    access_log: str = "off"
    stats: Bind | None = None
    stats_auth: tuple[str, str] | None = field(default=None, repr=False)
    collect: bool = False
    monitor_uri: str | None = None
    worker: str = ""


class SettingsSource(Protocol):
    """What can give settings (``pylb.Config``): checked, then turned into them."""

    def check(self) -> object: ...

    def settings(self) -> Settings: ...
