"""Docker containers to a Snapshot: which containers are backends, and where.

Owns: reading the dicts of ``GET /containers/{id}/json`` (the docker SDK's
``container.attrs``): state and health (a HEALTHCHECK still ``starting`` makes
the container pending: pylb probes it), networks and published ports; and
turning containers into members of services (``pylb.discovery.assembly``).
The ``pylb.*`` labels and dockercloud-haproxy's environment variables are
read by ``pylb.discovery.declared``, shared with Swarm discovery.
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

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pylb.discovery.assembly import Discovered, Member, Pending, discovered
from pylb.discovery.declared import ENV_SETTINGS, LABELS, Skip, Source, declare, is_candidate
from pylb.tls import CertBundle

__all__ = ["ENV_SETTINGS", "LABELS", "DockerOptions", "build_snapshot", "run_key"]

Attrs = Mapping[str, Any]


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


@dataclass(slots=True)
class _Found:
    members: list[Member]
    certificate: CertBundle | None = None
    notes: tuple[str, ...] = ()
    pending: Pending | None = None


def build_snapshot(
    containers: Sequence[Attrs],
    own: Attrs | None = None,
    options: DockerOptions | None = None,
    probed: Collection[str] = (),
) -> Discovered:
    """The world as these containers describe it.

    ``containers`` are inspect dicts (any order); ``own`` is pylb's own
    container's, or None when pylb runs outside any container. When ``own``
    has no network with an IP (``--network host``), pylb counts as outside.
    A container whose HEALTHCHECK says ``starting`` is pending (in
    ``Discovered.pending``, not in the snapshot) unless its ``run_key`` is in
    ``probed``: pylb's own probe of it passed."""
    options = options or DockerOptions()
    inside = own if own is not None and _usable_networks(own) else None
    warnings: list[str] = []
    if options.use_published_ports and inside is not None:
        warnings.append(
            "--use-published-ports is ignored: pylb runs in a container with its own network, where the host's "
            "published ports are not reachable; containers are reached on a shared network"
        )
    members: list[Member] = []
    pending: list[Pending] = []
    certificates: dict[str, CertBundle] = {}
    for attrs in sorted(containers, key=_sort_key):
        if own is not None and attrs.get("Id") == own.get("Id"):
            continue
        try:
            found = _container(attrs, inside, options, probed)
        except Skip as skip:
            warnings.append(str(skip))
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            warnings.append(f"container {_name(attrs)} skipped: unexpected inspect data ({type(exc).__name__})")
            continue
        if found is None:
            continue
        warnings += found.notes
        if found.pending is not None:
            pending.append(found.pending)
            continue
        members += found.members
        if found.certificate is not None:
            certificates.setdefault(found.certificate.fingerprint, found.certificate)
    return discovered(members, certificates, warnings, pending, options.balance)


def run_key(attrs: Attrs) -> str:
    """This run of a container (its id and start time: a restart is a new run)."""
    return f"{attrs.get('Id')}@{(attrs.get('State') or {}).get('StartedAt', '')}"


def _container(attrs: Attrs, own: Attrs | None, options: DockerOptions, probed: Collection[str]) -> _Found | None:
    """The members one container brings; None when it is not a candidate or
    not ready. Raises Skip for a bad value."""
    config = attrs.get("Config") or {}
    source = Source(
        "container", _name(attrs), config.get("Labels") or {}, config.get("Env") or (), _exposed_ports(config)
    )
    if not is_candidate(source, options.expose_all):
        return None
    state = _state(attrs)
    if state == "out":
        return None
    declared = declare(source)
    members = declared.members(source.name, _address_finder(source.name, attrs, source.pylb_labels, own, options))
    if state == "starting" and run_key(attrs) not in probed:
        return _Found([], None, declared.notes, Pending.of(run_key(attrs), source.name, members))
    return _Found(members, declared.certificate, declared.notes)


# -- identity, state ----------------------------------------------------------------


def _name(attrs: Attrs) -> str:
    name = str(attrs.get("Name") or "").lstrip("/")
    return name or str(attrs.get("Id") or "?")[:12]


def _sort_key(attrs: Attrs) -> tuple[str, str]:
    return (_name(attrs), str(attrs.get("Id") or ""))


def _state(attrs: Attrs) -> str:
    """``ready``: running, not paused, restarting or dead, and healthy if it
    has a HEALTHCHECK; ``starting``: running, its HEALTHCHECK not yet
    passed (pylb probes it); ``out``: anything else (``unhealthy`` too)."""
    state = attrs.get("State") or {}
    if not state.get("Running") or state.get("Paused") or state.get("Restarting") or state.get("Dead"):
        return "out"
    health = str((state.get("Health") or {}).get("Status") or "")
    return {"starting": "starting", "unhealthy": "out"}.get(health, "ready")


def _exposed_ports(config: Attrs) -> tuple[int, ...]:
    ports = set()
    for key in config.get("ExposedPorts") or {}:
        number, _, proto = str(key).partition("/")
        if proto in ("tcp", "") and number.isdigit() and 1 <= int(number) <= 65535:
            ports.add(int(number))
    return tuple(sorted(ports))


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
    the published host port. Raises Skip when there is no way."""
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
            raise Skip(
                f"container {name} skipped: it is not on network {wanted!r} (named by {why}); "
                f"connect it: docker network connect {wanted or 'NETWORK'} {name}"
            )
        ip = _ip(network)
        if ip is None:
            raise Skip(f"container {name} skipped: it has no IP address on network {wanted!r} (named by {why})")
        return ip
    usable = _usable_networks(attrs)
    if own is not None:
        own_networks = _usable_networks(own)
        shared = [n for n in usable if n in own_networks]
        if not shared:
            raise Skip(
                f"container {name} skipped: it shares no network with pylb's container (its networks: "
                f"{', '.join(usable) or 'none'}; pylb's: {', '.join(own_networks)}); connect them "
                f"(docker network connect NETWORK {name}) or name a network with --network or the label pylb.network"
            )
        usable = shared
    if not usable:
        raise Skip(
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
    raise Skip(
        f"container {name} skipped: its port {port} is not published on the host; publish it (-p {port}) "
        "or run pylb without --use-published-ports"
    )
