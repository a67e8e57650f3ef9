"""Inspect dicts shaped like ``GET /containers/{id}/json``, for table tests."""

from __future__ import annotations

import hashlib
from typing import Any


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def container(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    networks: dict[str, str] | None = None,
    exposed: tuple[int, ...] = (80,),
    published: dict[int, list[tuple[str, str]]] | None = None,
    running: bool = True,
    paused: bool = False,
    restarting: bool = False,
    health: str | None = None,
    stop_signal: str | None = None,
    started: str = "2026-01-01T00:00:00.000000001Z",
) -> dict[str, Any]:
    """One container. ``networks`` maps network name to IP (default: bridge
    172.17.0.x from the name); ``published`` maps a container port to
    (HostIp, HostPort) bindings."""
    if networks is None:
        networks = {"bridge": f"172.17.0.{int(cid(name)[:2], 16) % 250 + 2}"}
    state: dict[str, Any] = {
        "Status": "running" if running else "exited",
        "Running": running,
        "Paused": paused,
        "Restarting": restarting,
        "Dead": False,
        "StartedAt": started,
    }
    if health is not None:
        state["Health"] = {"Status": health, "FailingStreak": 0, "Log": []}
    ports: dict[str, Any] = {f"{p}/tcp": None for p in exposed}
    for port, bindings in (published or {}).items():
        ports[f"{port}/tcp"] = [{"HostIp": ip, "HostPort": hp} for ip, hp in bindings]
    return {
        "Id": cid(name),
        "Name": f"/{name}",
        "State": state,
        "Config": {
            "Hostname": cid(name)[:12],
            "Labels": dict(labels or {}),
            "Env": [f"{k}={v}" for k, v in (env or {}).items()] + ["PATH=/usr/bin", "SECRET_TOKEN=hunter2"],
            "ExposedPorts": {f"{p}/tcp": {} for p in exposed},
            "StopSignal": stop_signal,
        },
        "NetworkSettings": {
            "Ports": ports,
            "Networks": {
                net: {"NetworkID": cid("net:" + net), "IPAddress": ip, "GlobalIPv6Address": ""}
                for net, ip in networks.items()
            },
        },
    }


def compose(name: str, project: str, service: str, **kwargs: Any) -> dict[str, Any]:
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": service}
    labels.update(kwargs.pop("labels", {}))
    return container(name, labels=labels, **kwargs)


# -- Swarm: dicts shaped like GET /services, /tasks and /networks (API 1.41) ---------------


_NETWORK_NAMES: dict[str, str] = {}


def nid(name: str) -> str:
    """A swarm network id (25 characters, as Swarm makes them)."""
    ident = cid("swarm-net:" + name)[:25]
    _NETWORK_NAMES[ident] = name
    return ident


def sid(name: str) -> str:
    return cid("service:" + name)[:25]


def network(name: str, *, ingress: bool = False) -> dict[str, Any]:
    return {"Id": nid(name), "Name": name, "Scope": "swarm", "Driver": "overlay", "Ingress": ingress}


def service(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    networks: tuple[str, ...] = ("front",),
    published: tuple[int, ...] = (),
    endpoint_mode: str = "vip",
    vips: dict[str, str] | None = None,
    stop_signal: str | None = None,
) -> dict[str, Any]:
    """One service: ``labels`` are service labels; ``env`` its container
    spec's; ``vips`` maps a network name to the service's virtual IP on it."""
    container: dict[str, Any] = {
        "Image": "pylb:latest",
        "Args": ["hello"],
        "Env": [f"{k}={v}" for k, v in (env or {}).items()] + ["PATH=/usr/bin", "SECRET_TOKEN=hunter2"],
    }
    if stop_signal:
        container["StopSignal"] = stop_signal
    ports = [{"Protocol": "tcp", "TargetPort": p, "PublishedPort": 30000 + p, "PublishMode": "host"} for p in published]
    return {
        "ID": sid(name),
        "Spec": {
            "Name": name,
            "Labels": dict(labels or {}),
            "TaskTemplate": {"ContainerSpec": container, "Networks": [{"Target": nid(n)} for n in networks]},
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Mode": endpoint_mode, "Ports": ports},
        },
        "Endpoint": {
            "Spec": {"Mode": endpoint_mode},
            "VirtualIPs": [{"NetworkID": nid(n), "Addr": f"{ip}/24"} for n, ip in (vips or {}).items()],
        },
    }


def task(
    of: dict[str, Any],
    slot: int,
    *,
    ips: dict[str, str] | None = None,
    state: str = "running",
    desired: str = "running",
    generation: int = 0,
    node: str = "node-1",
) -> dict[str, Any]:
    """A task of service ``of`` in ``slot``; ``ips`` maps a network name to
    its address (default: 10.<network>.<service>.<slot + 10> on each of the
    service's networks); ``generation`` tells a replacement task apart."""
    name = of["Spec"]["Name"]
    ident = cid(f"task:{name}.{slot}.{generation}")[:25]
    if ips is None:
        nets = [_NETWORK_NAMES[t["Target"]] for t in of["Spec"]["TaskTemplate"]["Networks"]]
        octet = int(cid(name)[:2], 16) % 250
        ips = {n: f"10.{int(nid(n)[:2], 16) % 250}.{octet}.{slot + 10 + 20 * generation}" for n in nets}
    attachments = [{"Network": {"ID": nid(n), "Spec": {"Name": n}}, "Addresses": [f"{ip}/24"]} for n, ip in ips.items()]
    return {
        "ID": ident,
        "ServiceID": of["ID"],
        "Slot": slot,
        "NodeID": cid("node:" + node)[:25],
        "Spec": {"ContainerSpec": of["Spec"]["TaskTemplate"]["ContainerSpec"]},
        "Status": {
            "State": state,
            "ContainerStatus": {"ContainerID": cid(f"container:{ident}"), "PID": 0, "ExitCode": 0},
        },
        "DesiredState": desired,
        "NetworksAttachments": attachments,
    }


def task_ip(task_dict: dict[str, Any], network_name: str = "front") -> str:
    for attachment in task_dict["NetworksAttachments"]:
        if attachment["Network"]["ID"] == nid(network_name):
            return str(attachment["Addresses"][0]).partition("/")[0]
    raise KeyError(network_name)
