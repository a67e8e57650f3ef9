"""Legacy Docker links to a Snapshot: ``docker run --link web1:web1 pylb``.

Owns: reading the variables Docker sets for each link (``<ALIAS>_NAME``,
``<ALIAS>_PORT=tcp://ip:port``, ``<ALIAS>_PORT_<n>_TCP_ADDR`` and ``_PORT``,
and the linked container's own environment as ``<ALIAS>_ENV_<NAME>``) into
members of services, as tutum/haproxy and dockercloud-haproxy did.
Must not know: the Docker API, I/O, logging.

Rules: an alias counts only with its ``<ALIAS>_NAME`` variable (Docker always
sets it; Kubernetes' look-alike service variables lack it). Its port: the
linked container's ``SERVICE_PORTS`` (several: one backend each), else the
linked ports minus ``EXCLUDE_PORTS``, 80 when among them, else the lowest.
Aliases ``web-1``, ``web_2`` (a name, ``-`` or ``_``, a number) are one service
``web``; aliases with the same ``VIRTUAL_HOST`` one service named after it;
``VIRTUAL_HOST`` makes routes; aliases without routes share the default
service (``pylb.discovery.assembly``). ``TCP_PORTS`` makes one backend per
listed port for pylb's TCP listener on that port; an alias with TCP ports
serves HTTP only when it sets ``SERVICE_PORTS`` or ``VIRTUAL_HOST``.

Invariants: pure; never raises; an alias with a bad value is skipped with one
warning naming it and the variable, never quoting a value (``_ENV_``
variables mirror the linked container's environment, secrets included).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

from pylb.core.errors import ConfigError
from pylb.core.models import Backend, Route, parse_balance
from pylb.core.routing import parse_virtual_host
from pylb.discovery.assembly import (
    SETTING_HINTS,
    Discovered,
    Member,
    assemble,
    parse_force_ssl,
    parse_ports,
    parse_priority,
    parse_tcp_ports,
    routes_name,
)

__all__ = ["build_from_links", "has_links"]

T = TypeVar("T")

_PORT_ADDR = re.compile(r"(?P<alias>[A-Z0-9_]+?)_PORT_(?P<port>[0-9]{1,5})_TCP_ADDR")
_MAIN = re.compile(r"tcp://(?P<ip>\[[0-9A-Fa-f:.]+\]|[0-9.]+):(?P<port>[0-9]{1,5})")
_NUMBERED = re.compile(r"(?P<base>.+?)[-_][0-9]+")


class _Skip(Exception):
    pass


def has_links(env: Mapping[str, str]) -> bool:
    """Whether any legacy link variables are present."""
    return bool(_aliases(env))


def build_from_links(env: Mapping[str, str], balance: str = "roundrobin") -> Discovered:
    """The world the link variables in ``env`` describe (an empty snapshot
    when there are none). ``balance`` is the algorithm of services whose
    linked containers set no ``BALANCE``."""
    members: list[Member] = []
    warnings: list[str] = []
    for alias, name in sorted(_aliases(env).items()):
        try:
            members += _members(env, alias, name)
        except _Skip as skip:
            warnings.append(str(skip))
    snapshot, more = assemble(members, balance)
    names = tuple(sorted({(str(m.backend), m.name) for m in members}))
    return Discovered(snapshot, (), tuple(warnings) + more, names)


def _aliases(env: Mapping[str, str]) -> dict[str, str]:
    """Link aliases (variable prefixes) mapped to their names as given to --link."""
    prefixes = {m["alias"] for key in env if (m := _PORT_ADDR.fullmatch(key))}
    prefixes |= {key[: -len("_PORT")] for key, value in env.items() if key.endswith("_PORT") and _MAIN.fullmatch(value)}
    found = {}
    for prefix in prefixes:
        link_name = env.get(f"{prefix}_NAME", "")
        if link_name.startswith("/") and "/" in link_name[1:]:
            found[prefix] = link_name.rsplit("/", 1)[1] or prefix.lower()
    return found


def _members(env: Mapping[str, str], alias: str, name: str) -> list[Member]:
    linked = {key[len(alias) + 5 :]: value for key, value in env.items() if key.startswith(f"{alias}_ENV_")}
    settings = {key: value for key, value in linked.items() if value.strip()}
    numbered = _NUMBERED.fullmatch(name)
    service = numbered["base"] if numbered else name
    routes: tuple[Route, ...] = ()
    if "VIRTUAL_HOST" in settings:
        priority = _setting(name, settings, "VIRTUAL_HOST_WEIGHT", parse_priority, 0)
        routes = _setting(name, settings, "VIRTUAL_HOST", lambda t, w: parse_virtual_host(t, "", priority, w), ())
        service = routes_name(routes)
        routes = tuple(dataclasses.replace(route, service=service) for route in routes)
    chosen_balance = _setting(name, settings, "BALANCE", parse_balance, None)
    force_ssl = parse_force_ssl(settings["FORCE_SSL"]) if "FORCE_SSL" in settings else None
    tcp_ports: tuple[tuple[int, bool], ...] = _setting(name, settings, "TCP_PORTS", parse_tcp_ports, ())
    linked_ports, main_ip = _linked_ports(env, alias)
    members = [
        Member(
            service,
            _backend(name, linked_ports.get(port) or main_ip, port),
            name,
            balance=chosen_balance,
            tcp_port=port,
            tls=tls,
        )
        for port, tls in tcp_ports
    ]
    tcp = {port for port, _ in tcp_ports}
    if not tcp_ports or "SERVICE_PORTS" in settings or routes:
        backends = _backends(env, alias, name, settings, tcp)
    else:  # HTTP on port 80 only, when linked besides the TCP ports: a database's other ports are not HTTP's
        excluded: tuple[int, ...] = _setting(name, settings, "EXCLUDE_PORTS", parse_ports, ())
        http = 80 in linked_ports and 80 not in tcp and 80 not in excluded
        backends = [_backend(name, linked_ports[80], 80)] if http else []
    return members + [Member(service, backend, name, routes, chosen_balance, force_ssl) for backend in backends]


def _linked_ports(env: Mapping[str, str], alias: str) -> tuple[dict[int, str], str | None]:
    """The alias's linked ports and their IPs, and the IP of its main port."""
    linked_ports: dict[int, str] = {}
    for key, value in env.items():
        match = _PORT_ADDR.fullmatch(key)
        if match and match["alias"] == alias and 1 <= int(match["port"]) <= 65535:
            linked_ports[int(match["port"])] = value.strip()
    main = _MAIN.fullmatch(env.get(f"{alias}_PORT", "").strip())
    return linked_ports, main["ip"].strip("[]") if main else None


def _backends(
    env: Mapping[str, str], alias: str, name: str, settings: Mapping[str, str], tcp: set[int]
) -> list[Backend]:
    linked_ports, main_ip = _linked_ports(env, alias)
    main = _MAIN.fullmatch(env.get(f"{alias}_PORT", "").strip())
    if "SERVICE_PORTS" in settings:
        wanted: tuple[int, ...] = _setting(name, settings, "SERVICE_PORTS", parse_ports, ())
        return [_backend(name, linked_ports.get(port) or main_ip, port) for port in wanted if port not in tcp]
    ports = sorted(p for p in linked_ports if p not in tcp)
    if "EXCLUDE_PORTS" in settings:
        excluded: tuple[int, ...] = _setting(name, settings, "EXCLUDE_PORTS", parse_ports, ())
        ports = [p for p in ports if p not in excluded]
    if ports:
        port = 80 if 80 in ports else ports[0]
        return [_backend(name, linked_ports[port], port)]
    if main is not None and "EXCLUDE_PORTS" not in settings and int(main["port"]) not in tcp:
        return [_backend(name, main_ip, int(main["port"]))]
    raise _Skip(f"link {name} skipped: no linked TCP port left; list one in the linked container's SERVICE_PORTS")


def _backend(name: str, ip: str | None, port: int) -> Backend:
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        raise _Skip(f"link {name} skipped: no IP address for port {port} in its link variables") from None
    if not 1 <= port <= 65535:
        raise _Skip(f"link {name} skipped: port {port} is not from 1 to 65535")
    return Backend(address.compressed, port)


def _setting(name: str, settings: Mapping[str, str], key: str, parse: Callable[[str, str], T], default: T) -> T:
    if key not in settings:
        return default
    try:
        return parse(settings[key], key)
    except ConfigError:
        raise _Skip(f"link {name} skipped: its {key} is not valid; {SETTING_HINTS[key]}") from None
