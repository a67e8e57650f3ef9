"""Docker containers to a Snapshot: which containers are backends, and where.

Owns: reading the dicts of ``GET /containers/{id}/json`` (the docker SDK's
``container.attrs``): the ``pylb.*`` labels, the dockercloud-haproxy
environment variables, state and health, networks and published ports; and
turning them into members of services (``pylb.discovery.assembly``).
Must not know: the Docker API or SDK, threads, trio, logging, the clock.

Invariants:
- ``build_snapshot`` is pure and never raises: a container with a bad value is
  skipped with one warning line naming the container, the label or variable,
  and the fix; the others still make the snapshot.
- Warnings and names never hold a value from a container's environment (it may
  hold secrets); label values may be quoted (labels are not secret).
- A backend's address comes from Docker's own network data (an IP on one of
  the container's networks, or a published host port); never from a label.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pylb.core.errors import ConfigError
from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Route, parse_balance, parse_weight
from pylb.core.routing import parse_virtual_host
from pylb.discovery.assembly import (
    SETTING_HINTS,
    Discovered,
    Member,
    assemble,
    parse_force_ssl,
    parse_port_value,
    parse_ports,
    parse_priority,
    parse_tcp_ports,
    routes_name,
)
from pylb.tls import CertBundle, parse_pem_bundle

__all__ = ["ENV_SETTINGS", "LABELS", "DockerOptions", "build_snapshot"]

T = TypeVar("T")
Attrs = Mapping[str, Any]

LABELS = (
    "pylb.enable",
    "pylb.port",
    "pylb.host",
    "pylb.weight",
    "pylb.balance",
    "pylb.network",
    "pylb.service",
    "pylb.check",
    "pylb.check.http",
    "pylb.tcp",
)
ENV_SETTINGS = (
    "VIRTUAL_HOST",
    "VIRTUAL_HOST_WEIGHT",
    "SERVICE_PORTS",
    "EXCLUDE_PORTS",
    "BALANCE",
    "FORCE_SSL",
    "SSL_CERT",
    "HSTS_MAX_AGE",
    "HEALTH_CHECK",
    "HTTP_CHECK",
    "TCP_PORTS",
)
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
_COMPOSE_PROJECT = "com.docker.compose.project"
_COMPOSE_SERVICE = "com.docker.compose.service"
_SWARM_SERVICE = "com.docker.swarm.service.name"


@dataclass(frozen=True, slots=True)
class DockerOptions:
    """How pylb reads containers: ``network`` (``--network``) picks the
    network whose IP to use; ``use_published_ports`` (pylb outside any
    container) the published host port instead; ``expose_all`` takes every
    running container with exactly one exposed port; ``balance`` is the
    algorithm of services whose containers set none."""

    network: str | None = None
    use_published_ports: bool = False
    expose_all: bool = False
    balance: str = "roundrobin"


class _Skip(Exception):
    """This container is not used; the message is the warning line."""


@dataclass(slots=True)
class _Found:
    members: list[Member]
    certificate: CertBundle | None = None
    notes: list[str] = field(default_factory=list)


def build_snapshot(
    containers: Sequence[Attrs], own: Attrs | None = None, options: DockerOptions | None = None
) -> Discovered:
    """The world as these containers describe it.

    ``containers`` are inspect dicts (any order); ``own`` is pylb's own
    container's, or None when pylb runs outside any container. When ``own``
    has no network with an IP (``--network host``), pylb counts as outside."""
    options = options or DockerOptions()
    inside = own if own is not None and _usable_networks(own) else None
    warnings: list[str] = []
    if options.use_published_ports and inside is not None:
        warnings.append(
            "--use-published-ports is ignored: pylb runs in a container with its own network, where the host's "
            "published ports are not reachable; containers are reached on a shared network"
        )
    members: list[Member] = []
    certificates: dict[str, CertBundle] = {}
    for attrs in sorted(containers, key=_sort_key):
        if own is not None and attrs.get("Id") == own.get("Id"):
            continue
        try:
            found = _container(attrs, inside, options)
        except _Skip as skip:
            warnings.append(str(skip))
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            warnings.append(f"container {_name(attrs)} skipped: unexpected inspect data ({type(exc).__name__})")
            continue
        if found is None:
            continue
        members += found.members
        warnings += found.notes
        if found.certificate is not None:
            certificates.setdefault(found.certificate.fingerprint, found.certificate)
    snapshot, more = assemble(members, options.balance)
    return Discovered(
        snapshot,
        tuple(certificates[fp] for fp in sorted(certificates)),
        tuple(warnings) + more,
        tuple(sorted({(str(m.backend), m.name) for m in members})),
    )


def _container(attrs: Attrs, own: Attrs | None, options: DockerOptions) -> _Found | None:
    """The members one container brings; None when it is not a candidate or
    not ready. Raises _Skip for a bad value."""
    name = _name(attrs)
    config = attrs.get("Config") or {}
    all_labels: Mapping[str, str] = config.get("Labels") or {}
    labels = {k: str(v) for k, v in all_labels.items() if k.startswith("pylb.")}
    env = _settings(config.get("Env"))
    exposed = _exposed_ports(config)
    if "pylb.enable" in labels and not _label(name, labels, "pylb.enable", _parse_enable):
        return None
    wanted = bool(labels) or "VIRTUAL_HOST" in env or "SERVICE_PORTS" in env or "TCP_PORTS" in env
    if not wanted and not (options.expose_all and len(exposed) == 1):
        return None
    if not _ready(attrs):
        return None
    notes = [
        f"container {name}: unknown label {key} ignored (known: {', '.join(LABELS)})"
        for key in sorted(labels)
        if key not in LABELS
    ]
    tcp_ports = _tcp_ports(name, labels, env)
    try:
        ports = _ports(name, labels, env, exposed, tcp_ports)
    except _Skip as skip:
        if not tcp_ports:
            raise
        ports = ()  # its TCP ports still count
        notes.append(str(skip).replace(" skipped: ", ": no HTTP backend: ", 1))
    weight = _label(name, labels, "pylb.weight", parse_weight) if "pylb.weight" in labels else 1
    routes = _routes(name, labels, env)
    service = _service_name(name, labels, all_labels, routes)
    routes = tuple(dataclasses.replace(route, service=service) for route in routes)
    balance = _balance(name, labels, env)
    force_ssl = parse_force_ssl(env["FORCE_SSL"]) if "FORCE_SSL" in env else None
    check = _check(name, labels, env)
    certificate = _certificate(name, env, notes)
    if "HSTS_MAX_AGE" in env:
        notes.append(
            f"container {name}: HSTS_MAX_AGE is ignored (no per-service HSTS yet); set HSTS_MAX_AGE or --hsts-max-age "
            "on pylb itself, for every https response"
        )
    address = _address_finder(name, attrs, labels, own, options)
    members = []
    for port in ports:
        host, real_port = address(port)
        members.append(Member(service, Backend(host, real_port, weight), name, routes, balance, force_ssl, check))
    tcp_check = _check_timing(name, labels, env) if tcp_ports else None
    for port, tls in tcp_ports:
        host, real_port = address(port)
        members.append(Member(service, Backend(host, real_port, weight), name, (), balance, None, tcp_check, port, tls))
    return _Found(members, certificate, notes)


# -- identity, state ----------------------------------------------------------------


def _name(attrs: Attrs) -> str:
    name = str(attrs.get("Name") or "").lstrip("/")
    return name or str(attrs.get("Id") or "?")[:12]


def _sort_key(attrs: Attrs) -> tuple[str, str]:
    return (_name(attrs), str(attrs.get("Id") or ""))


def _ready(attrs: Attrs) -> bool:
    """Running, not paused, restarting or dead, and healthy if it has a HEALTHCHECK."""
    state = attrs.get("State") or {}
    if not state.get("Running") or state.get("Paused") or state.get("Restarting") or state.get("Dead"):
        return False
    health = (state.get("Health") or {}).get("Status")
    return health not in ("starting", "unhealthy")


def _settings(env: Sequence[str] | None) -> dict[str, str]:
    """The dockercloud-haproxy settings in a container's ``Env`` (others are
    not even kept: they may be secrets). Blank means unset."""
    found: dict[str, str] = {}
    for item in env or ():
        key, sep, value = str(item).partition("=")
        if sep and key in ENV_SETTINGS and value.strip():
            found[key] = value
    return found


def _exposed_ports(config: Attrs) -> tuple[int, ...]:
    ports = set()
    for key in config.get("ExposedPorts") or {}:
        number, _, proto = str(key).partition("/")
        if proto in ("tcp", "") and number.isdigit() and 1 <= int(number) <= 65535:
            ports.add(int(number))
    return tuple(sorted(ports))


def _service_name(
    name: str, labels: Mapping[str, str], all_labels: Mapping[str, str], routes: tuple[Route, ...]
) -> str:
    """``pylb.service``, else the Compose (or Swarm) service, else what the
    container's routes match (containers with the same hosts share a service),
    else the container's name."""
    if "pylb.service" in labels:
        value = labels["pylb.service"].strip()
        if not _SERVICE_NAME.fullmatch(value):
            raise _Skip(
                f"container {name} skipped: label pylb.service={labels['pylb.service']!r} is not a service name "
                "(letters, digits and _ . : / -, up to 128, starting with a letter or digit)"
            )
        return value
    project, compose = all_labels.get(_COMPOSE_PROJECT), all_labels.get(_COMPOSE_SERVICE)
    if compose:
        return f"{project}-{compose}" if project else str(compose)
    swarm = all_labels.get(_SWARM_SERVICE)
    if swarm:
        return str(swarm)
    return routes_name(routes) if routes else name


# -- settings -------------------------------------------------------------------------


def _label(name: str, labels: Mapping[str, str], key: str, parse: Callable[[str, str], T]) -> T:
    try:
        return parse(labels[key], f"label {key}")
    except ConfigError as exc:
        raise _Skip(f"container {name} skipped: {exc}") from None


def _env(name: str, env: Mapping[str, str], key: str, parse: Callable[[str, str], T]) -> T:
    try:
        return parse(env[key], key)
    except ConfigError:
        raise _Skip(f"container {name} skipped: env {key} is not valid; {SETTING_HINTS[key]}") from None


def _parse_enable(text: str, what: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{what}={text!r} must be true or false")


def _tcp_ports(name: str, labels: Mapping[str, str], env: Mapping[str, str]) -> tuple[tuple[int, bool], ...]:
    """The ports pylb opens TCP listeners for: label ``pylb.tcp``, else env ``TCP_PORTS``."""
    if "pylb.tcp" in labels:
        return _label(name, labels, "pylb.tcp", parse_tcp_ports)
    if "TCP_PORTS" in env:
        return _env(name, env, "TCP_PORTS", parse_tcp_ports)
    return ()


def _ports(
    name: str,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    exposed: tuple[int, ...],
    tcp_ports: tuple[tuple[int, bool], ...] = (),
) -> tuple[int, ...]:
    """The container's HTTP ports. A container with TCP ports serves HTTP
    when it says so (pylb.port, SERVICE_PORTS, a route) or exposes port 80
    besides them; never on one of its TCP ports unless pylb.port names it."""
    if "pylb.port" in labels:
        return (_label(name, labels, "pylb.port", lambda text, what: parse_port_value(text, f"{what}={text!r}")),)
    tcp = {port for port, _ in tcp_ports}
    if "SERVICE_PORTS" in env:
        return tuple(p for p in _env(name, env, "SERVICE_PORTS", parse_ports) if p not in tcp)
    candidates = tuple(p for p in exposed if p not in tcp)
    if "EXCLUDE_PORTS" in env:
        excluded = _env(name, env, "EXCLUDE_PORTS", parse_ports)
        candidates = tuple(p for p in candidates if p not in excluded)
    if tcp and not ("pylb.host" in labels or "VIRTUAL_HOST" in env):
        return (80,) if 80 in candidates else ()  # a database's other ports are not HTTP's
    if len(candidates) == 1:
        return candidates
    if 80 in candidates:  # as with links: several ports, one of them HTTP's (pylb's own image exposes 80 and 443)
        return (80,)
    after = " (after EXCLUDE_PORTS)" if "EXCLUDE_PORTS" in env else ""
    after += " besides its TCP ports" if tcp else ""
    if not candidates:
        raise _Skip(f"container {name} skipped: it exposes no TCP port{after}; name one with the label pylb.port=PORT")
    shown = ", ".join(str(p) for p in candidates)
    raise _Skip(
        f"container {name} skipped: it exposes ports {shown}{after}; choose one with the label pylb.port=PORT "
        "(or list them in SERVICE_PORTS)"
    )


def _routes(name: str, labels: Mapping[str, str], env: Mapping[str, str]) -> tuple[Route, ...]:
    """The container's routes, to a service named later (``""`` for now)."""
    priority = _env(name, env, "VIRTUAL_HOST_WEIGHT", parse_priority) if "VIRTUAL_HOST_WEIGHT" in env else 0
    if "pylb.host" in labels:
        return _label(name, labels, "pylb.host", lambda text, what: parse_virtual_host(text, "", priority, what))
    if "VIRTUAL_HOST" in env:
        return _env(name, env, "VIRTUAL_HOST", lambda text, what: parse_virtual_host(text, "", priority, what))
    return ()


def _balance(name: str, labels: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    if "pylb.balance" in labels:
        return _label(name, labels, "pylb.balance", parse_balance)
    if "BALANCE" in env:
        return _env(name, env, "BALANCE", parse_balance)
    return None


def _check(name: str, labels: Mapping[str, str], env: Mapping[str, str]) -> HealthCheck | None:
    """The service's own active checks: labels ``pylb.check`` (HEALTH_CHECK's
    form) and ``pylb.check.http`` (``METHOD /path``), else the container's
    dockercloud-haproxy ``HEALTH_CHECK``/``HTTP_CHECK``; None: the balancer's."""
    timing = _check_timing(name, labels, env)
    http = None
    if "pylb.check.http" in labels:
        http = _label(name, labels, "pylb.check.http", _http_check)
    elif "HTTP_CHECK" in env:
        http = _env(name, env, "HTTP_CHECK", _http_check)
    if timing is None and http is None:
        return None
    return (timing or HealthCheck()).with_http(http) if http else timing


def _check_timing(name: str, labels: Mapping[str, str], env: Mapping[str, str]) -> HealthCheck | None:
    """``pylb.check``, else ``HEALTH_CHECK``: the checks' timing (also for TCP
    ports, which never get the HTTP check: as HAProxy's ``listen`` sections)."""
    if "pylb.check" in labels:
        return _label(name, labels, "pylb.check", HealthCheck.parse)
    if "HEALTH_CHECK" in env:
        return _env(name, env, "HEALTH_CHECK", HealthCheck.parse)
    return None


def _http_check(text: str, what: str) -> str:
    HealthCheck().with_http(text, what)  # raises ConfigError for a bad value
    return text


def _certificate(name: str, env: Mapping[str, str], notes: list[str]) -> CertBundle | None:
    if "SSL_CERT" not in env:
        return None
    parsed = _parse_certificate(env["SSL_CERT"])
    if isinstance(parsed, str):
        raise _Skip(f"container {name} skipped: env {parsed}")
    if parsed.expired:
        notes.append(f"container {name}: its SSL_CERT expired on {parsed.not_after:%Y-%m-%d}; clients will refuse it")
    return dataclasses.replace(parsed, source=f"SSL_CERT of {name}")


@functools.lru_cache(maxsize=256)
def _parse_certificate(text: str) -> CertBundle | str:
    """Parsing a key costs milliseconds and every event rebuilds the world:
    remember the outcome per PEM text. Messages never quote the text."""
    try:
        return parse_pem_bundle(text, "SSL_CERT")
    except ConfigError as exc:
        return str(exc)


# -- addresses --------------------------------------------------------------------------


def _networks(attrs: Attrs) -> Mapping[str, Attrs]:
    return (attrs.get("NetworkSettings") or {}).get("Networks") or {}


def _ip(network: Attrs) -> str | None:
    return str(network.get("IPAddress") or network.get("GlobalIPv6Address") or "") or None


def _usable_networks(attrs: Attrs) -> list[str]:
    return sorted(name for name, network in _networks(attrs).items() if _ip(network))


def _address_finder(
    name: str, attrs: Attrs, labels: Mapping[str, str], own: Attrs | None, options: DockerOptions
) -> Callable[[int], tuple[str, int]]:
    """How to reach this container's ports: an IP and the port itself, or
    the published host port. Raises _Skip when there is no way."""
    if options.use_published_ports and own is None:
        return lambda port: _published(name, attrs, port)
    ip = _container_ip(name, attrs, labels, own, options)
    return lambda port: (ip, port)


def _container_ip(name: str, attrs: Attrs, labels: Mapping[str, str], own: Attrs | None, options: DockerOptions) -> str:
    networks = _networks(attrs)
    if "pylb.network" in labels or options.network:
        wanted = labels.get("pylb.network", "").strip() or options.network or ""
        why = "the label pylb.network" if "pylb.network" in labels else "--network"
        network = networks.get(wanted) or next(
            (n for n in networks.values() if wanted and str(n.get("NetworkID") or "").startswith(wanted)), None
        )
        if network is None:
            raise _Skip(
                f"container {name} skipped: it is not on network {wanted!r} (named by {why}); "
                f"connect it: docker network connect {wanted or 'NETWORK'} {name}"
            )
        ip = _ip(network)
        if ip is None:
            raise _Skip(f"container {name} skipped: it has no IP address on network {wanted!r} (named by {why})")
        return ip
    usable = _usable_networks(attrs)
    if own is not None:
        own_networks = _usable_networks(own)
        shared = [n for n in usable if n in own_networks]
        if not shared:
            raise _Skip(
                f"container {name} skipped: it shares no network with pylb's container (its networks: "
                f"{', '.join(usable) or 'none'}; pylb's: {', '.join(own_networks)}); connect them "
                f"(docker network connect NETWORK {name}) or name a network with --network or the label pylb.network"
            )
        usable = shared
    if not usable:
        raise _Skip(
            f"container {name} skipped: it has no IP address on any network (host networking?); give it a network, "
            "or publish the port and run pylb with --use-published-ports"
        )
    ip = _ip(networks[usable[0]])
    assert ip is not None
    return ip


def _published(name: str, attrs: Attrs, port: int) -> tuple[str, int]:
    bindings = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
    ordered = sorted(bindings, key=lambda b: ":" in str(b.get("HostIp") or ""))  # IPv4 first
    for binding in ordered:
        host_port = str(binding.get("HostPort") or "")
        if not (host_port.isdigit() and 1 <= int(host_port) <= 65535):
            continue
        ip = str(binding.get("HostIp") or "0.0.0.0")
        ip = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(ip, ip)
        return ip, int(host_port)
    raise _Skip(
        f"container {name} skipped: its port {port} is not published on the host; publish it (-p {port}) "
        "or run pylb without --use-published-ports"
    )
