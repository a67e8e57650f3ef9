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
