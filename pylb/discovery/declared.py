"""What a container or a Swarm service says about itself: labels and env in, members out.

Owns: reading the ``pylb.*`` labels and dockercloud-haproxy's environment
variables of one source (a container for Docker discovery, a service for
Swarm discovery): whether it is a candidate, its service name, ports, routes,
weight, balance, checks, TCP ports and certificate (``declare``), and the
members it brings once its addresses are known (``Declared.members``).
Must not know: where the labels came from (inspect data, service specs),
states, networks, the Docker API, I/O, logging.

Invariants:
- A bad value raises ``Skip``, whose message is the one warning line: it names
  the source (``container web-1``, ``service shop_web``), the label or variable,
  and the fix; it never quotes an environment value (env may hold secrets;
  label values may be quoted).
- Pure: the same labels and env give the same ``Declared``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pylb.core.errors import ConfigError
from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Route, parse_balance, parse_weight
from pylb.core.routing import parse_virtual_host
from pylb.discovery.assembly import (
    SETTING_HINTS,
    Member,
    parse_force_ssl,
    parse_port_value,
    parse_ports,
    parse_priority,
    parse_tcp_ports,
    routes_name,
)
from pylb.tls import CertBundle, parse_pem_bundle

__all__ = ["ENV_SETTINGS", "LABELS", "Declared", "Skip", "Source", "declare", "env_settings", "is_candidate"]

T = TypeVar("T")

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


class Skip(Exception):
    """This source is not used; the message is the warning line."""


@dataclass(frozen=True)
class Source:
    """A container or a service as the builders read it: ``kind`` and
    ``name`` for messages, all its ``labels``, its ``Env`` items (``K=V``),
    the TCP ports it exposes (a service's are the target ports it publishes),
    and the labels known to this kind besides ``LABELS``. ``no_ports_hint``
    is the warning about a source that names no port, after ``skipped:``."""

    kind: str
    name: str
    labels: Mapping[str, str]
    env: Sequence[str] = ()
    exposed: tuple[int, ...] = ()
    more_labels: tuple[str, ...] = ()
    no_ports_hint: str = ""

    @property
    def what(self) -> str:
        return f"{self.kind} {self.name}"

    @functools.cached_property
    def pylb_labels(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.labels.items() if k.startswith("pylb.")}

    @functools.cached_property
    def settings(self) -> dict[str, str]:
        return env_settings(self.env)


@dataclass(frozen=True, slots=True)
class Declared:
    """What a candidate declares: its service, ports and their settings."""

    service: str
    ports: tuple[int, ...]
    tcp_ports: tuple[tuple[int, bool], ...]
    weight: int
    routes: tuple[Route, ...]
    balance: str | None
    force_ssl: bool | None
    check: HealthCheck | None
    tcp_check: HealthCheck | None
    certificate: CertBundle | None
    notes: tuple[str, ...]

    def members(self, name: str, address: Callable[[int], tuple[str, int]]) -> list[Member]:
        """The members one container or task named ``name`` brings, reached
        through ``address`` (a port -> host and port; it may raise Skip)."""
        found = []
        for port in self.ports:
            host, real_port = address(port)
            backend = Backend(host, real_port, self.weight)
            found.append(Member(self.service, backend, name, self.routes, self.balance, self.force_ssl, self.check))
        for port, tls in self.tcp_ports:
            host, real_port = address(port)
            backend = Backend(host, real_port, self.weight)
            found.append(Member(self.service, backend, name, (), self.balance, None, self.tcp_check, port, tls))
        return found


def env_settings(env: Sequence[str] | None) -> dict[str, str]:
    """The dockercloud-haproxy settings in an ``Env`` list (others are not
    even kept: they may be secrets). Blank means unset."""
    found: dict[str, str] = {}
    for item in env or ():
        key, sep, value = str(item).partition("=")
        if sep and key in ENV_SETTINGS and value.strip():
            found[key] = value
    return found


def is_candidate(source: Source, expose_all: bool = False) -> bool:
    """Whether ``source`` asks to be balanced: any ``pylb.*`` label (unless
    ``pylb.enable`` is false), ``VIRTUAL_HOST``, ``SERVICE_PORTS`` or
    ``TCP_PORTS``; with ``expose_all``, exactly one exposed port. Raises
    Skip for a bad ``pylb.enable``."""
    labels, env = source.pylb_labels, source.settings
    if "pylb.enable" in labels and not _label(source, "pylb.enable", _parse_enable):
        return False
    wanted = bool(labels) or "VIRTUAL_HOST" in env or "SERVICE_PORTS" in env or "TCP_PORTS" in env
    return wanted or (expose_all and len(source.exposed) == 1)


def declare(source: Source) -> Declared:
    """Read every setting of a candidate; raises Skip for a bad value."""
    labels, env = source.pylb_labels, source.settings
    known = LABELS + source.more_labels
    notes = [
        f"{source.what}: unknown label {key} ignored (known: {', '.join(known)})"
        for key in sorted(labels)
        if key not in known
    ]
    tcp_ports = _tcp_ports(source)
    try:
        ports = _ports(source, tcp_ports)
    except Skip as skip:
        if not tcp_ports:
            raise
        ports = ()  # its TCP ports still count
        notes.append(str(skip).replace(" skipped: ", ": no HTTP backend: ", 1))
    weight = _label(source, "pylb.weight", parse_weight) if "pylb.weight" in labels else 1
    routes = _routes(source)
    service = _service_name(source, routes)
    routes = tuple(dataclasses.replace(route, service=service) for route in routes)
    balance = _balance(source)
    force_ssl = parse_force_ssl(env["FORCE_SSL"]) if "FORCE_SSL" in env else None
    check = _check(source)
    certificate = _certificate(source, notes)
    if "HSTS_MAX_AGE" in env:
        notes.append(
            f"{source.what}: HSTS_MAX_AGE is ignored (no per-service HSTS yet); set HSTS_MAX_AGE or --hsts-max-age "
            "on pylb itself, for every https response"
        )
    tcp_check = _check_timing(source) if tcp_ports else None
    return Declared(
        service, ports, tcp_ports, weight, routes, balance, force_ssl, check, tcp_check, certificate, tuple(notes)
    )


# -- one setting each --------------------------------------------------------------------


def _label(source: Source, key: str, parse: Callable[[str, str], T]) -> T:
    try:
        return parse(source.pylb_labels[key], f"label {key}")
    except ConfigError as exc:
        raise Skip(f"{source.what} skipped: {exc}") from None


def _env(source: Source, key: str, parse: Callable[[str, str], T]) -> T:
    try:
        return parse(source.settings[key], key)
    except ConfigError:
        raise Skip(f"{source.what} skipped: env {key} is not valid; {SETTING_HINTS[key]}") from None


def _parse_enable(text: str, what: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{what}={text!r} must be true or false")


def _service_name(source: Source, routes: tuple[Route, ...]) -> str:
    """``pylb.service``, else the Compose (or Swarm) service, else what the
    source's routes match (sources with the same hosts share a service),
    else the source's name."""
    labels, all_labels = source.pylb_labels, source.labels
    if "pylb.service" in labels:
        value = labels["pylb.service"].strip()
        if not _SERVICE_NAME.fullmatch(value):
            raise Skip(
                f"{source.what} skipped: label pylb.service={labels['pylb.service']!r} is not a service name "
                "(letters, digits and _ . : / -, up to 128, starting with a letter or digit)"
            )
        return value
    project, compose = all_labels.get(_COMPOSE_PROJECT), all_labels.get(_COMPOSE_SERVICE)
    if compose:
        return f"{project}-{compose}" if project else str(compose)
    swarm = all_labels.get(_SWARM_SERVICE)
    if swarm:
        return str(swarm)
    return routes_name(routes) if routes else source.name


def _tcp_ports(source: Source) -> tuple[tuple[int, bool], ...]:
    """The ports pylb opens TCP listeners for: label ``pylb.tcp``, else env ``TCP_PORTS``."""
    if "pylb.tcp" in source.pylb_labels:
        return _label(source, "pylb.tcp", parse_tcp_ports)
    if "TCP_PORTS" in source.settings:
        return _env(source, "TCP_PORTS", parse_tcp_ports)
    return ()


def _ports(source: Source, tcp_ports: tuple[tuple[int, bool], ...] = ()) -> tuple[int, ...]:
    """The HTTP ports. A source with TCP ports serves HTTP when it says so
    (pylb.port, SERVICE_PORTS, a route) or exposes port 80 besides them;
    never on one of its TCP ports unless pylb.port names it."""
    labels, env, name = source.pylb_labels, source.settings, source.what
    if "pylb.port" in labels:
        return (_label(source, "pylb.port", lambda text, what: parse_port_value(text, f"{what}={text!r}")),)
    tcp = {port for port, _ in tcp_ports}
    if "SERVICE_PORTS" in env:
        return tuple(p for p in _env(source, "SERVICE_PORTS", parse_ports) if p not in tcp)
    candidates = tuple(p for p in source.exposed if p not in tcp)
    if "EXCLUDE_PORTS" in env:
        excluded = _env(source, "EXCLUDE_PORTS", parse_ports)
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
        if source.no_ports_hint:
            raise Skip(f"{name} skipped: {source.no_ports_hint}")
        raise Skip(f"{name} skipped: it exposes no TCP port{after}; name one with the label pylb.port=PORT")
    shown = ", ".join(str(p) for p in candidates)
    raise Skip(
        f"{name} skipped: it exposes ports {shown}{after}; choose one with the label pylb.port=PORT "
        "(or list them in SERVICE_PORTS)"
    )


def _routes(source: Source) -> tuple[Route, ...]:
    """The routes, to a service named later (``""`` for now)."""
    env = source.settings
    priority = _env(source, "VIRTUAL_HOST_WEIGHT", parse_priority) if "VIRTUAL_HOST_WEIGHT" in env else 0
    if "pylb.host" in source.pylb_labels:
        return _label(source, "pylb.host", lambda text, what: parse_virtual_host(text, "", priority, what))
    if "VIRTUAL_HOST" in env:
        return _env(source, "VIRTUAL_HOST", lambda text, what: parse_virtual_host(text, "", priority, what))
    return ()


def _balance(source: Source) -> str | None:
    if "pylb.balance" in source.pylb_labels:
        return _label(source, "pylb.balance", parse_balance)
    if "BALANCE" in source.settings:
        return _env(source, "BALANCE", parse_balance)
    return None


def _check(source: Source) -> HealthCheck | None:
    """The service's own active checks: labels ``pylb.check`` (HEALTH_CHECK's
    form) and ``pylb.check.http`` (``METHOD /path``), else the source's
    dockercloud-haproxy ``HEALTH_CHECK``/``HTTP_CHECK``; None: the balancer's."""
    timing = _check_timing(source)
    http = None
    if "pylb.check.http" in source.pylb_labels:
        http = _label(source, "pylb.check.http", _http_check)
    elif "HTTP_CHECK" in source.settings:
        http = _env(source, "HTTP_CHECK", _http_check)
    if timing is None and http is None:
        return None
    return (timing or HealthCheck()).with_http(http) if http else timing


def _check_timing(source: Source) -> HealthCheck | None:
    """``pylb.check``, else ``HEALTH_CHECK``: the checks' timing (also for TCP
    ports, which never get the HTTP check: as HAProxy's ``listen`` sections)."""
    if "pylb.check" in source.pylb_labels:
        return _label(source, "pylb.check", HealthCheck.parse)
    if "HEALTH_CHECK" in source.settings:
        return _env(source, "HEALTH_CHECK", HealthCheck.parse)
    return None


def _http_check(text: str, what: str) -> str:
    HealthCheck().with_http(text, what)  # raises ConfigError for a bad value
    return text


def _certificate(source: Source, notes: list[str]) -> CertBundle | None:
    if "SSL_CERT" not in source.settings:
        return None
    parsed = _parse_certificate(source.settings["SSL_CERT"])
    if isinstance(parsed, str):
        raise Skip(f"{source.what} skipped: env {parsed}")
    if parsed.expired:
        notes.append(f"{source.what}: its SSL_CERT expired on {parsed.not_after:%Y-%m-%d}; clients will refuse it")
    return dataclasses.replace(parsed, source=f"SSL_CERT of {source.name}")


@functools.lru_cache(maxsize=256)
def _parse_certificate(text: str) -> CertBundle | str:
    """Parsing a key costs milliseconds and every event rebuilds the world:
    remember the outcome per PEM text. Messages never quote the text."""
    try:
        return parse_pem_bundle(text, "SSL_CERT")
    except ConfigError as exc:
        return str(exc)
