"""The world as discovery sees it: backends, services, routes and snapshots.

Owns: immutable, comparable value objects and their parsing from user text.
Must not know: connections, counters, time. Live per-backend state belongs
to ``pylb.core.pool``; a Snapshot only says *what* exists.

Invariants: every object is frozen and hashable; a Snapshot's services have
unique names and every route points at one of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pylb.core.errors import ConfigError
from pylb.core.health import HealthCheck

BALANCE_ALGORITHMS = ("roundrobin", "leastconn", "source")
SCHEMES = ("http", "https", "tcp", "tls")  # of listeners (Bind)
DEFAULT_SERVICE = "default"


def parse_port(text: str, what: str) -> int:
    """A TCP port number 0-65535, or ConfigError naming ``what``."""
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise ConfigError(f"{what}: port {text!r} is not a number from 0 to 65535")
    return int(text)


def split_host_port(text: str, what: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[V6]:PORT``; the host may be a name or an IP."""
    scheme, sep, rest = text.partition("://")
    if sep and scheme.isalpha():
        address = rest.partition("/")[0]
        if ":" not in address.rpartition("]")[2] and scheme.lower() in ("http", "https"):
            address += ":80" if scheme.lower() == "http" else ":443"
        raise ConfigError(f"{what}: {text!r} is a URL where HOST:PORT is expected: drop the scheme ({address!r})")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what}: {text!r} is not HOST:PORT (example: 127.0.0.1:8080)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{what}: {host!r} is not an IPv6 address") from None
    elif ":" in host or not _is_hostname(host):
        raise ConfigError(f"{what}: {host!r} is not a host name or IP address")
    return host, parse_port(port, what)


def _is_hostname(host: str) -> bool:
    if not host.isascii() or len(host) > 253:
        return False
    labels = host.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):  # all-numeric: an IPv4 address or nothing
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return all(
        0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-" and all(c.isalnum() or c in "-_" for c in label)
        for label in labels
    )


@dataclass(frozen=True, slots=True, order=True)
class Backend:
    """One server that takes requests: an address and a weight (1-256)."""

    host: str
    port: int
    weight: int = 1
    # What identifies a backend across snapshots (the weight may change); kept, not computed:
    # the request path reads it several times per request.
    key: tuple[str, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.host, self.port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str, what: str = "--backend") -> Backend:
        """Parse ``HOST:PORT[,weight=N]``."""
        address, *options = (part.strip() for part in text.split(","))
        host, port = split_host_port(address, what)
        if port == 0:
            raise ConfigError(f"{what}: {text!r} needs a port other than 0")
        weight = 1
        for option in options:
            name, _, value = option.partition("=")
            if name.strip() != "weight":
                raise ConfigError(f"{what}: unknown option {name.strip()!r} in {text!r} (known: weight=N)")
            weight = parse_weight(value.strip(), what)
        return cls(host, port, weight)


def parse_weight(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 256:
        raise ConfigError(f"{what}: weight {text!r} must be a whole number from 1 to 256")
    return int(text)


def parse_balance(text: str, what: str = "--balance") -> str:
    value = text.strip().lower()
    if value not in BALANCE_ALGORITHMS:
        raise ConfigError(f"{what}: unknown algorithm {text!r} (use one of: {', '.join(BALANCE_ALGORITHMS)})")
    return value


@dataclass(frozen=True, slots=True)
class Service:
    """A named set of interchangeable backends and how to choose among them."""

    name: str
    backends: tuple[Backend, ...] = ()
    balance: str = "roundrobin"
    force_ssl: bool = False
    check: HealthCheck | None = None  # this service's active checks (None: the balancer's)

    def __post_init__(self) -> None:
        parse_balance(self.balance, f"service {self.name!r}")
        keys = [b.key for b in self.backends]
        if len(keys) != len(set(keys)):
            raise ConfigError(f"service {self.name!r}: a backend is listed twice")


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """Requests whose Host matches ``host`` and whose path starts with
    ``path`` go to ``service``. ``host`` is an exact name or a glob with ``*``
    (``*.a.test``, ``a.*``, ``*``); ``path`` a prefix, possibly with ``*``.
    ``scheme`` (http, https, ws, wss) and ``port`` restrict the listener;
    ``priority`` (VIRTUAL_HOST_WEIGHT) breaks ties, higher first."""

    host: str
    path: str = "/"
    service: str = DEFAULT_SERVICE
    priority: int = 0
    scheme: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class Bind:
    """A listening address: ``[SCHEME://]ADDR:PORT``."""

    scheme: str
    host: str
    port: int
    implicit: bool = field(default=False, compare=False)  # no scheme given: MODE decides

    @classmethod
    def parse(cls, text: str, what: str = "--bind") -> Bind:
        """``[SCHEME://]ADDR:PORT``; schemes: http, https, tcp, tls (TCP with
        TLS terminated). Without a scheme, MODE's (http unless MODE=tcp)."""
        scheme, sep, rest = text.strip().partition("://")
        if not sep:
            scheme, rest = "http", text.strip()
        if scheme not in SCHEMES:
            raise ConfigError(f"{what}: unknown scheme {scheme!r} in {text!r} (use: {', '.join(SCHEMES)})")
        if rest.isdigit():
            rest = f"0.0.0.0:{rest}"
        host, port = split_host_port(rest, what)
        return cls(scheme, host, port, implicit=not sep)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True, order=True)
class TcpPort:
    """A TCP listener that discovery asks for (dockercloud's ``TCP_PORTS``):
    connections to ``port`` go to ``service``; ``tls``: TLS is terminated
    first with pylb's certificates (``PORT/ssl``)."""

    port: int
    service: str
    tls: bool = False


@dataclass(frozen=True, slots=True)
class PortSet:
    """Which ports containers may ask pylb to listen on (``--tcp-ports``):
    inclusive ranges; empty means none."""

    ranges: tuple[tuple[int, int], ...] = ((1024, 65535),)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and any(low <= port <= high for low, high in self.ranges)

    def __str__(self) -> str:
        return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.ranges) or "none"

    @classmethod
    def parse(cls, text: str, what: str = "--tcp-ports") -> PortSet:
        """``5432,7000-7099`` (commas or spaces), ``all`` (1-65535) or ``none``."""
        value = text.strip().lower()
        if value == "none":
            return cls(())
        if value == "all":
            return cls(((1, 65535),))
        ranges = []
        for part in value.replace(",", " ").split():
            low, sep, high = part.partition("-")
            try:
                first, last = parse_port(low, what), parse_port(high if sep else low, what)
            except ConfigError:
                first = last = 0
            if not 1 <= first <= last:
                raise ConfigError(
                    f"{what}: {part!r} is not a port or a range of ports from 1 to 65535 (example: 5432,7000-7099)"
                )
            ranges.append((first, last))
        if not ranges:
            raise ConfigError(f"{what} is empty: list ports and ranges (example: 5432,7000-7099), or none")
        return cls(tuple(sorted(ranges)))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the data plane needs to route a request, frozen.

    ``default`` names the service that takes requests no route matches;
    ``tcp_ports`` the TCP listeners discovery opens, each to its service;
    ``names`` maps ``"host:port"`` to the container (or task, or alias)
    behind a backend, for log lines and the stats page (not compared: a
    rename alone changes nothing the data plane does).
    """

    services: tuple[Service, ...] = ()
    default: str | None = None
    routes: tuple[Route, ...] = ()
    version: str = field(default="", compare=False)
    tcp_ports: tuple[TcpPort, ...] = ()
    names: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.services]
        if len(names) != len(set(names)):
            raise ConfigError("snapshot: two services share a name")
        if self.default is not None and self.default not in names:
            raise ConfigError(f"snapshot: default service {self.default!r} does not exist")
        for route in self.routes:
            if route.service not in names:
                where = f"{route.host}{route.path}"
                raise ConfigError(f"snapshot: route {where} leads to unknown service {route.service!r}")
        ports = [t.port for t in self.tcp_ports]
        for port in sorted({p for p in ports if ports.count(p) > 1}):
            raise ConfigError(f"snapshot: TCP port {port} is listed twice (one service per port)")
        for tcp in self.tcp_ports:
            if tcp.service not in names:
                raise ConfigError(f"snapshot: TCP port {tcp.port} leads to unknown service {tcp.service!r}")

    def service(self, name: str) -> Service | None:
        for service in self.services:
            if service.name == name:
                return service
        return None

    def with_default_backends(self, backends: tuple[Backend, ...], balance: str = "roundrobin") -> Snapshot:
        """This snapshot with the default service's backends replaced (the
        default service is created when missing); routes are kept."""
        name = self.default or DEFAULT_SERVICE
        old = self.service(name)
        new = Service(
            name, backends, old.balance if old else balance, old.force_ssl if old else False, old.check if old else None
        )
        others = tuple(s for s in self.services if s.name != name)
        return Snapshot((new, *others), name, self.routes, tcp_ports=self.tcp_ports, names=self.names)

    @classmethod
    def of_backends(cls, backends: tuple[Backend, ...] | list[Backend], balance: str = "roundrobin") -> Snapshot:
        """The simplest world: one default service with these backends."""
        return cls((Service(DEFAULT_SERVICE, tuple(backends), balance),), DEFAULT_SERVICE)
