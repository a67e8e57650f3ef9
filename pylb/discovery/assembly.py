"""From members found by a provider to one Snapshot: the rules providers share.

Owns: ``Member`` (one backend as a provider found it, with the settings it
brings for its service), ``Discovered`` (what a provider's builder returns:
the snapshot, the certificates containers bring, warnings to log), and
``assemble``, which groups members into services and picks the default one.
Also the small value parsers for the dockercloud-haproxy settings that both
the Docker and the links providers read (port lists, FORCE_SSL).
Must not know: Docker, environment variables, I/O, logging.

Rules (documented in docs/discovery.md):
- members with the same ``service`` form one service; its routes are the union
  of theirs, its backends theirs in address order (a repeated address is kept
  once); ``balance`` and ``force_ssl`` come from the first member by name that
  sets them, and a member that disagrees is named in a warning;
- services without routes take the requests no route matches: one such
  service is the default as it is; several are merged into one service named
  ``default`` (dockercloud-haproxy's default backend); none: no default, so a
  request for an unknown host gets a 503 naming it;
- members for a TCP port (``TCP_PORTS``) are apart: all members listing the
  same port form one service ``tcp:PORT`` behind one TCP listener, whatever
  service they belong to otherwise (as dockercloud-haproxy's ``listen
  port_PORT``); ``/ssl`` comes from the first member by name, like ``balance``.

Invariants: pure and deterministic (the same members in any order give an
equal snapshot); never raises for members that came out of the parsers here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pylb.core.errors import ConfigError
from pylb.core.health import HealthCheck
from pylb.core.models import BALANCE_ALGORITHMS, DEFAULT_SERVICE, Backend, Route, Service, Snapshot, TcpPort
from pylb.tls import CertBundle

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Member:
    """One backend and what it says about its service. ``name`` (a container
    or link alias) appears in messages and logs; ``routes`` already point at
    ``service``; ``balance``/``force_ssl`` are None when not set.
    ``tcp_port``: this backend serves pylb's TCP listener on that port (its
    ``service`` is then ignored), with TLS terminated first when ``tls``."""

    service: str
    backend: Backend
    name: str
    routes: tuple[Route, ...] = ()
    balance: str | None = None
    force_ssl: bool | None = None
    check: HealthCheck | None = None
    tcp_port: int | None = None
    tls: bool = False


@dataclass(frozen=True, slots=True)
class Probe:
    """One check of a pending backend: a connect, then ``http`` (``(method,
    path)``) when set; ``inherit``: the service has no checks of its own, so
    the balancer's ``HTTP_CHECK`` applies when there is one. TCP ports are
    only connected to."""

    backend: Backend
    http: tuple[str, str] | None = None
    inherit: bool = False

    @classmethod
    def of(cls, member: Member) -> Probe:
        if member.tcp_port is not None:
            return cls(member.backend)
        if member.check is None:
            return cls(member.backend, None, True)
        return cls(member.backend, member.check.http)


@dataclass(frozen=True, slots=True)
class Pending:
    """A container or task that runs but whose Docker HEALTHCHECK still says
    ``starting``: it joins the snapshot when pylb's own ``probes`` pass.
    ``key`` names this run of it (a restart is a new key)."""

    key: str
    name: str
    probes: tuple[Probe, ...]

    @classmethod
    def of(cls, key: str, name: str, members: Iterable[Member]) -> Pending:
        return cls(key, name, tuple(dict.fromkeys(Probe.of(m) for m in members)))


@dataclass(frozen=True, slots=True)
class Discovered:
    """What a provider's builder found: the ``snapshot`` to swap in, the
    ``certificates`` containers bring (for the CertStore), ``warnings`` (one
    line each, never holding an environment value), ``names``, which maps
    ``"host:port"`` to the container or alias behind it, for log lines, and
    ``pending``: what runs but waits for a probe to join (``Pending``)."""

    snapshot: Snapshot
    certificates: tuple[CertBundle, ...] = ()
    warnings: tuple[str, ...] = ()
    names: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    pending: tuple[Pending, ...] = field(default=(), compare=False)

    def name_of(self, backend: Backend) -> str | None:
        return dict(self.names).get(str(backend))


def discovered(
    members: Sequence[Member],
    certificates: Mapping[str, CertBundle],
    warnings: Sequence[str],
    pending: Sequence[Pending],
    balance: str,
) -> Discovered:
    """What a builder found, from its members (assembled into services), the
    certificates they bring (by fingerprint), its warnings and what waits for
    a probe: the one way both engines' builders end."""
    snapshot, more = assemble(members, balance)
    return Discovered(
        snapshot,
        tuple(certificates[fp] for fp in sorted(certificates)),
        tuple(warnings) + more,
        tuple(sorted({(str(m.backend), m.name) for m in members})),
        tuple(pending),
    )


def assemble(members: Iterable[Member], balance: str = "roundrobin") -> tuple[Snapshot, tuple[str, ...]]:
    """Group ``members`` into services; return the snapshot and warnings.
    ``balance`` is the algorithm of services whose members set none."""
    groups: dict[str, list[Member]] = {}
    tcp_groups: dict[int, list[Member]] = {}
    for member in sorted(members, key=lambda m: (m.service, m.name, m.backend)):
        if member.tcp_port is not None:
            tcp_groups.setdefault(member.tcp_port, []).append(member)
        else:
            groups.setdefault(member.service, []).append(member)
    warnings: list[str] = []
    routed: list[Service] = []
    unrouted: list[Service] = []
    for name, group in sorted(groups.items()):
        service = _service(name, group, balance, warnings)
        (routed if any(m.routes for m in group) else unrouted).append(service)
    routes = tuple(sorted({r for group in groups.values() for m in group for r in m.routes}))
    warnings += _contested(routes)
    default: Service | None = None
    if len(unrouted) == 1:
        default = unrouted[0]
    elif unrouted:
        default = _merged(unrouted, {s.name for s in routed}, balance)
    all_services = [*([default] if default else []), *routed]
    taken = {s.name for s in all_services}
    tcp_ports = []
    for port, group in sorted(tcp_groups.items()):
        name = f"tcp:{port}" if f"tcp:{port}" not in taken else f"tcp:{port}~"
        group.sort(key=lambda m: (m.name, m.backend))
        shown = [(m.name, f"{port}/ssl" if m.tls else str(port)) for m in group]
        tls = (_agreed(name, "TCP_PORTS", shown, warnings) or "").endswith("/ssl")
        all_services.append(_service(name, group, balance, warnings))
        tcp_ports.append(TcpPort(port, name, tls))
    default_name = default.name if default else None
    return Snapshot(tuple(all_services), default_name, routes, tcp_ports=tuple(tcp_ports)), tuple(warnings)


def routes_name(routes: Iterable[Route]) -> str:
    """A service name made of what its routes match (``a.test,https://b.test/api``):
    members that give the same hosts and no service name share one service."""
    return ",".join(sorted({_route_text(r) for r in routes}))


def _route_text(route: Route) -> str:
    scheme = f"{route.scheme}://" if route.scheme else ""
    port = f":{route.port}" if route.port else ""
    return f"{scheme}{route.host}{port}{route.path if route.path != '/' else ''}"


def _contested(routes: tuple[Route, ...]) -> list[str]:
    """A warning per route that several services claim: one of them only gets its requests."""
    claims: dict[tuple[str, str, str | None, int | None], set[str]] = {}
    for route in routes:
        claims.setdefault((route.host, route.path, route.scheme, route.port), set()).add(route.service)
    return [
        f"services {', '.join(sorted(names))} all claim {_route_text(Route(host, path, '', 0, scheme, port))}; only "
        "one of them gets its requests (give their containers the same pylb.service label to share them)"
        for (host, path, scheme, port), names in sorted(claims.items(), key=str)
        if len(names) > 1
    ]


def _service(name: str, group: Sequence[Member], balance: str, warnings: list[str]) -> Service:
    chosen_balance = _agreed(name, "balance", [(m.name, m.balance) for m in group], warnings)
    force_ssl = _agreed(name, "FORCE_SSL", [(m.name, m.force_ssl) for m in group], warnings)
    check = _agreed(name, "health checks", [(m.name, m.check) for m in group], warnings)
    backends: dict[tuple[str, int], Backend] = {}
    for member in group:
        backends.setdefault(member.backend.key, member.backend)
    return Service(
        name,
        tuple(sorted(backends.values())),
        chosen_balance if chosen_balance is not None else balance,
        bool(force_ssl),
        check,
    )


def _agreed(service: str, what: str, values: Sequence[tuple[str, T | None]], warnings: list[str]) -> T | None:
    """The first value set (members are in name order); a different one is a warning."""
    given = [(name, value) for name, value in values if value is not None]
    if not given:
        return None
    first_name, first = given[0]
    for name, value in given[1:]:
        if value != first:
            warnings.append(
                f"service {service}: {name} sets {what} {value!s}, {first_name} sets {first!s}; using {first!s} "
                f"(set the same value on every container of the service)"
            )
            break
    return first


def _merged(services: list[Service], taken: set[str], balance: str) -> Service:
    name = DEFAULT_SERVICE if DEFAULT_SERVICE not in taken else f"{DEFAULT_SERVICE}~"
    backends: dict[tuple[str, int], Backend] = {}
    for service in services:
        for backend in service.backends:
            backends.setdefault(backend.key, backend)
    balances = {s.balance for s in services}
    force = {s.force_ssl for s in services}
    checks = {s.check for s in services}
    return Service(
        name,
        tuple(sorted(backends.values())),
        balances.pop() if len(balances) == 1 else balance,
        force.pop() if len(force) == 1 else False,
        checks.pop() if len(checks) == 1 else None,
    )


# -- settings shared by the providers ---------------------------------------------

# What a valid value looks like, for warnings about settings read from a
# container's environment (whose values are never quoted: they may be secrets).
SETTING_HINTS = {
    "VIRTUAL_HOST": "use [scheme://]host[:port][/path], comma-separated (example: a.test,https://b.test/api/*)",
    "VIRTUAL_HOST_WEIGHT": "use a whole number (example: 10; higher wins ties between routes)",
    "SERVICE_PORTS": "list port numbers from 1 to 65535 (example: 80, 8080)",
    "EXCLUDE_PORTS": "list port numbers from 1 to 65535 (example: 22, 3306)",
    "BALANCE": f"use one of: {', '.join(BALANCE_ALGORITHMS)}",
    "HEALTH_CHECK": "use HAProxy's server options (example: check inter 2000 rise 2 fall 3), or none",
    "HTTP_CHECK": "use METHOD /path (example: GET /health)",
    "TCP_PORTS": "list port numbers from 1 to 65535, each optionally followed by /ssl (example: 5432, 2222/ssl)",
}


def parse_ports(text: str, what: str) -> tuple[int, ...]:
    """``SERVICE_PORTS``/``EXCLUDE_PORTS``: ports separated by commas or spaces
    (``80, 8080``); ConfigError naming ``what`` otherwise (not quoting ``text``:
    it may come from a container's environment)."""
    parts = [p for p in text.replace(",", " ").split() if p]
    ports = []
    for part in parts:
        port = part.removesuffix("/tcp")
        if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
            raise ConfigError(f"{what} must list port numbers from 1 to 65535, separated by commas (example: 80, 8080)")
        ports.append(int(port))
    if not ports:
        raise ConfigError(f"{what} is empty (example: 80, 8080)")
    return tuple(dict.fromkeys(ports))


def parse_tcp_ports(text: str, what: str) -> tuple[tuple[int, bool], ...]:
    """``TCP_PORTS``: ports separated by commas or spaces, each optionally
    followed by ``/ssl`` (TLS terminated by pylb): ``5432, 2222/ssl``. Returns
    (port, tls) pairs; ConfigError naming ``what`` (never quoting ``text``)."""
    found: dict[int, bool] = {}
    for part in text.replace(",", " ").split():
        number, _, suffix = part.partition("/")
        if suffix.lower() not in ("", "ssl", "tcp") or not (
            number.isascii() and number.isdigit() and len(number) <= 5 and 1 <= int(number) <= 65535
        ):
            raise ConfigError(f"{what} must {SETTING_HINTS['TCP_PORTS']}")
        found[int(number)] = found.get(int(number), False) or suffix.lower() == "ssl"
    if not found:
        raise ConfigError(f"{what} is empty (example: 5432, 2222/ssl)")
    return tuple(found.items())


def parse_port_value(text: str, what: str) -> int:
    """One port from 1 to 65535 (``pylb.port``)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535):
        raise ConfigError(f"{what} must be a port number from 1 to 65535 (example: 8080)")
    return int(text)


def parse_priority(text: str, what: str) -> int:
    """``VIRTUAL_HOST_WEIGHT``: a whole number, higher wins ties (default 0)."""
    value = text.strip()
    digits = value[1:] if value[:1] in "+-" else value
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 6):
        raise ConfigError(f"{what} must be a whole number (example: 10; higher wins ties between routes)")
    return int(value)


def parse_force_ssl(text: str) -> bool:
    """dockercloud-haproxy's FORCE_SSL: any value turns it on, except an
    explicit false (``false``, ``no``, ``off``, ``0``) or a blank."""
    return text.strip().lower() not in ("", "false", "no", "off", "0")
