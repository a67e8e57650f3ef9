"""Swarm services and tasks to a Snapshot: which tasks are backends, and where.

Owns: reading the dicts of ``GET /services``, ``GET /tasks`` and ``GET
/networks`` from a swarm manager: which services are candidates (their
service labels and the env of their container spec, read by
``pylb.discovery.declared`` as for containers), which of their tasks serve
(desired and actual state; a task whose HEALTHCHECK still says ``starting``
is pending, for pylb to probe), the network pylb reaches them on, and the
service's virtual IP for ``pylb.endpoint=vip``.
Must not know: the Docker API or SDK, threads, trio, logging, the clock.

Invariants:
- ``build_swarm_snapshot`` is pure and never raises: a service with a bad
  value is skipped with one warning line naming the service, the label or
  variable, and the fix; the others still make the snapshot.
- A task whose desired state is no longer ``running`` (scaled away, replaced
  by a rolling update, its node drained) is never a backend, whatever its
  actual state: it leaves when it is asked to stop, before it stops.
- The ingress network (the routing mesh) is never used: pylb balances itself.
- Warnings and names never hold an environment value.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pylb.discovery.assembly import Discovered, Member, Pending, discovered
from pylb.discovery.declared import Skip, Source, declare, is_candidate
from pylb.discovery.docker_build import DockerOptions
from pylb.tls import CertBundle

__all__ = ["SWARM_LABELS", "SwarmOwn", "arriving", "build_swarm_snapshot", "own_from_container", "own_from_task"]

Attrs = Mapping[str, Any]

SWARM_LABELS = ("pylb.endpoint",)  # besides declared.LABELS
_ENDPOINTS = ("tasks", "vip")
# A task in these states has a node and will start soon (``pending`` is left out: it may wait for
# resources for ever).
_ON_ITS_WAY = frozenset(("assigned", "accepted", "preparing", "ready"))
_NO_PORT = (
    "it names no port: set the label pylb.port=PORT or the env SERVICE_PORTS (Swarm does not say which ports "
    "an image listens on)"
)


@dataclass(frozen=True, slots=True)
class SwarmOwn:
    """Where pylb itself runs: the ids of its networks (and their names, for
    messages), and its own service (``""`` when pylb is a plain container,
    not a task)."""

    networks: frozenset[str]
    service: str = ""
    names: tuple[str, ...] = ()


def own_from_container(attrs: Attrs) -> SwarmOwn:
    """pylb's place from its own container's inspect data (a plain container
    on an attachable overlay network, or a task inspected on its node)."""
    networks = ((attrs.get("NetworkSettings") or {}).get("Networks")) or {}
    ids = frozenset(str(n.get("NetworkID")) for n in networks.values() if n.get("NetworkID"))
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return SwarmOwn(ids, str(labels.get("com.docker.swarm.service.id") or ""), tuple(sorted(networks)))


def own_from_task(task: Attrs) -> SwarmOwn:
    """pylb's place from its own task (pylb talking to a manager from another node)."""
    attached = [a["Network"] for a in task.get("NetworksAttachments") or () if a.get("Network")]
    ids = frozenset(str(n["ID"]) for n in attached)
    names = tuple(sorted(str((n.get("Spec") or {}).get("Name") or n["ID"][:12]) for n in attached))
    return SwarmOwn(ids, str(task.get("ServiceID") or ""), names)


@dataclass(slots=True)
class _Found:
    members: list[Member]
    certificate: CertBundle | None
    notes: tuple[str, ...]
    pending: list[Pending]


def build_swarm_snapshot(
    services: Sequence[Attrs],
    tasks: Sequence[Attrs],
    networks: Sequence[Attrs] = (),
    own: SwarmOwn | None = None,
    options: DockerOptions | None = None,
    probed: Collection[str] = (),
) -> Discovered:
    """The world as these services and tasks describe it.

    ``own`` is where pylb runs (None: outside any container, which reaches
    no overlay network: only useful with ``--network`` for tests and tools).
    A task whose HEALTHCHECK says ``starting`` is pending unless its id is in
    ``probed``."""
    options = options or DockerOptions()
    by_service: dict[str, list[Attrs]] = {}
    for task in tasks:
        by_service.setdefault(str(task.get("ServiceID") or ""), []).append(task)
    known = _Networks(networks)
    warnings: list[str] = []
    members: list[Member] = []
    pending: list[Pending] = []
    certificates: dict[str, CertBundle] = {}
    for service in sorted(services, key=_sort_key):
        if own is not None and own.service and service.get("ID") == own.service:
            continue
        try:
            found = _service(service, by_service.get(str(service.get("ID")), []), known, own, options, probed)
        except Skip as skip:
            warnings.append(str(skip))
            continue
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            warnings.append(f"service {_name(service)} skipped: unexpected service data ({type(exc).__name__})")
            continue
        if found is None:
            continue
        warnings += found.notes
        members += found.members
        pending += found.pending
        if found.certificate is not None and found.members:
            certificates.setdefault(found.certificate.fingerprint, found.certificate)
    return discovered(members, certificates, warnings, pending, options.balance)


def _service(
    service: Attrs,
    tasks: list[Attrs],
    networks: _Networks,
    own: SwarmOwn | None,
    options: DockerOptions,
    probed: Collection[str],
) -> _Found | None:
    spec = service.get("Spec") or {}
    name = _name(service)
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    labels = {**(spec.get("Labels") or {}), "com.docker.swarm.service.name": name}
    source = Source("service", name, labels, container.get("Env") or (), _published(spec), SWARM_LABELS, _NO_PORT)
    if not is_candidate(source):
        return None
    declared = declare(source)
    endpoint = _endpoint(source)
    network = _network(source, spec, networks, own, options)
    members: list[Member] = []
    pending: list[Pending] = []
    ready = False
    for task in sorted(tasks, key=_task_order):
        state = _state(task)
        ip = _task_ip(task, network)
        if state == "out" or ip is None:
            continue
        ident = str(task.get("ID"))
        if state == "starting" and ident not in probed:
            if endpoint == "tasks":
                task_name = _task_name(name, task)
                pending.append(Pending.of(ident, task_name, declared.members(task_name, _at(ip))))
            continue
        ready = True
        if endpoint == "tasks":
            members += declared.members(_task_name(name, task), _at(ip))
    if endpoint == "vip" and ready:
        vip = _virtual_ip(source, service, network)
        if vip is not None:
            members = declared.members(f"{name} (virtual IP)", _at(vip))
    return _Found(members, declared.certificate, declared.notes, pending)


def arriving(tasks: Sequence[Attrs]) -> bool:
    """Whether a task desired running is scheduled but not started yet: its
    container will start within moments (a listing soon finds it starting)."""
    return any(
        t.get("DesiredState") == "running" and (t.get("Status") or {}).get("State") in _ON_ITS_WAY for t in tasks
    )


# -- identity, state ----------------------------------------------------------------


def _name(service: Attrs) -> str:
    return str((service.get("Spec") or {}).get("Name") or str(service.get("ID") or "?")[:12])


def _sort_key(service: Attrs) -> tuple[str, str]:
    return (_name(service), str(service.get("ID") or ""))


def _task_order(task: Attrs) -> tuple[int, str, str]:
    return (int(task.get("Slot") or 0), str(task.get("NodeID") or ""), str(task.get("ID") or ""))


def _task_name(service: str, task: Attrs) -> str:
    """``web.2.k3j4h5g6f7d8``: the service, the slot (the node for a global
    service) and the task id, as Docker names a task's container."""
    place = str(task.get("Slot") or "") or str(task.get("NodeID") or "?")[:12]
    return f"{service}.{place}.{str(task.get('ID') or '?')[:12]}"


def _state(task: Attrs) -> str:
    """``ready``: desired and actually running; ``starting``: desired running,
    its container started, its HEALTHCHECK not yet passed (Swarm keeps such a
    task ``starting``); ``out``: anything else, and every task whose desired
    state is no longer ``running`` (it is being stopped)."""
    if task.get("DesiredState") != "running":
        return "out"
    actual = (task.get("Status") or {}).get("State")
    return actual if actual in ("running", "starting") else "out"


def _published(spec: Attrs) -> tuple[int, ...]:
    """The target ports the service publishes (TCP): the ports it serves."""
    ports = ((spec.get("EndpointSpec") or {}).get("Ports")) or ()
    found = {int(p["TargetPort"]) for p in ports if p.get("TargetPort") and p.get("Protocol", "tcp") == "tcp"}
    return tuple(sorted(found))


# -- networks, addresses ------------------------------------------------------------------


class _Networks:
    """The swarm's networks by id, with their names; the ingress network is left out."""

    def __init__(self, networks: Sequence[Attrs]) -> None:
        self.names: dict[str, str] = {}
        self.ingress: set[str] = set()
        for network in networks:
            ident, name = str(network.get("Id") or network.get("ID") or ""), str(network.get("Name") or "")
            if network.get("Ingress") or name == "ingress":
                self.ingress.add(ident)
            elif ident:
                self.names[ident] = name

    def resolve(self, target: str) -> str | None:
        """A service spec's network ``Target`` (an id, or a name) to an id; None for the ingress network."""
        if target in self.ingress:
            return None
        if target in self.names:
            return target
        by_name = [i for i, n in self.names.items() if n == target]
        if by_name:
            return by_name[0]
        return None if target == "ingress" else target

    def name(self, ident: str) -> str:
        return self.names.get(ident) or ident[:12]


def _network(source: Source, spec: Attrs, networks: _Networks, own: SwarmOwn | None, options: DockerOptions) -> str:
    """The id of the network pylb reaches the service's tasks on. Raises Skip when there is none."""
    targets = [str(n.get("Target") or "") for n in (spec.get("TaskTemplate") or {}).get("Networks") or ()]
    targets += [str(n.get("Target") or "") for n in spec.get("Networks") or ()]  # the deprecated place
    attached = sorted({i for i in map(networks.resolve, targets) if i}, key=lambda i: (networks.name(i), i))
    labels = source.pylb_labels
    if "pylb.network" in labels or options.network:
        wanted = labels.get("pylb.network", "").strip() or options.network or ""
        why = "the label pylb.network" if "pylb.network" in labels else "--network"
        for ident in attached:
            if wanted and (networks.name(ident) == wanted or ident.startswith(wanted)):
                return ident
        raise Skip(
            f"{source.what} skipped: it is not on network {wanted!r} (named by {why}); attach it: "
            f"docker service update --network-add {wanted or 'NETWORK'} {source.name}"
        )
    if own is not None:
        shared = [i for i in attached if i in own.networks]
        if not shared:
            theirs = ", ".join(networks.name(i) for i in attached) or "none but the ingress"
            ours = ", ".join(own.names or sorted(networks.name(i) for i in own.networks)) or "none"
            raise Skip(
                f"{source.what} skipped: it shares no network with pylb (its networks: {theirs}; pylb's: {ours}); "
                f"attach it to one (docker service update --network-add NETWORK {source.name}) or name one with "
                "--network or the label pylb.network"
            )
        return shared[0]
    if not attached:
        raise Skip(
            f"{source.what} skipped: it is on no network but the ingress, which pylb never uses; attach it to an "
            f"overlay network: docker service update --network-add NETWORK {source.name}"
        )
    return attached[0]


def _at(ip: str) -> Callable[[int], tuple[str, int]]:
    return lambda port: (ip, port)


def _task_ip(task: Attrs, network: str) -> str | None:
    for attachment in task.get("NetworksAttachments") or ():
        if (attachment.get("Network") or {}).get("ID") == network:
            for address in attachment.get("Addresses") or ():
                return str(address).partition("/")[0] or None
    return None


def _endpoint(source: Source) -> str:
    text = source.pylb_labels.get("pylb.endpoint", "tasks").strip().lower()
    if text not in _ENDPOINTS:
        raise Skip(
            f"{source.what} skipped: label pylb.endpoint={source.pylb_labels['pylb.endpoint']!r} must be tasks "
            "(each task's address: the default) or vip (the service's virtual IP)"
        )
    return text


def _virtual_ip(source: Source, service: Attrs, network: str) -> str | None:
    endpoint = service.get("Endpoint") or {}
    if ((endpoint.get("Spec") or {}).get("Mode") or "vip") == "dnsrr":
        raise Skip(
            f"{source.what} skipped: label pylb.endpoint=vip, but the service has no virtual IP (endpoint mode "
            "dnsrr); drop the label, or use --endpoint-mode vip"
        )
    for vip in endpoint.get("VirtualIPs") or ():
        if vip.get("NetworkID") == network:
            return str(vip.get("Addr") or "").partition("/")[0] or None
    return None
