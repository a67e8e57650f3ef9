"""From ``--discover`` to a running provider: the choice, ``auto``, the start.

Owns: which provider runs (``resolve_mode``: static flags win over a
discovery set in the environment; ``choose_auto``: swarm when the daemon is
a swarm manager, docker when it answers, else links, else an error), probing
the daemon for ``auto``, and ``Provider``, which feeds a balancer: links
once, docker or swarm for ever.
Must not know: the CLI's argument parsing, logging setup, the data plane.

Invariants: every refusal is a ConfigError whose one line says what to pass;
``prepare`` does all the I/O that can refuse, before any listener opens, so
the CLI exits 2 instead of serving nothing; ``check`` is its part without I/O.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sized
from dataclasses import dataclass
from typing import Protocol

import trio

from pylb.core.errors import ConfigError
from pylb.core.health import HealthCheck
from pylb.discovery.docker_build import DockerOptions
from pylb.discovery.docker_watch import DockerWatcher, Target
from pylb.discovery.engine import (
    INSTALL_HINT,
    SdkEngine,
    describe_fault,
    docker_host,
    is_permission_denied,
    load_sdk,
)
from pylb.discovery.links import build_from_links, has_links
from pylb.discovery.swarm_watch import SwarmWatcher

log = logging.getLogger("pylb.discovery")

PROBE_SECONDS = 2.0
SOCKET = "/var/run/docker.sock"
_NO_BACKENDS = (
    "no backends: pass --backend HOST:PORT or --route HOST=HOST:PORT (repeatable), "
    "or --discover docker to find them from Docker"
)


class Wanted(Protocol):
    """What discovery is asked to do (``pylb.Config`` is such a thing; this
    package reads these and nothing else of the configuration)."""

    @property
    def discover(self) -> str | None: ...
    @property
    def backends(self) -> Sized: ...
    @property
    def routes(self) -> Sized: ...
    @property
    def network(self) -> str | None: ...
    @property
    def use_published_ports(self) -> bool: ...
    @property
    def expose_all(self) -> bool: ...
    @property
    def balance(self) -> str: ...
    @property
    def swarm_poll(self) -> float: ...
    @property
    def health(self) -> HealthCheck: ...


def resolve_mode(config: Wanted, explicit: bool) -> str:
    """The provider to run: ``none``, ``docker``, ``swarm``, ``links`` or ``auto``.

    ``explicit``: ``--discover`` was on the command line (not only in
    ``PYLB_DISCOVER``). Static backends or routes turn discovery off, unless
    both were asked for on the command line: that is an error (discovery
    replaces the whole pool)."""
    mode = config.discover
    if config.backends or config.routes:
        if explicit and mode not in (None, "none"):
            raise ConfigError(
                f"--discover {mode} replaces the whole pool; drop it or drop --backend/--route (not both)"
            )
        return "none"
    if mode in (None, "none"):
        raise ConfigError(_NO_BACKENDS)
    return mode


def choose_auto(daemon: str, links: bool, reason: str = "") -> str:
    """``auto``: ``daemon`` is what probing found (``manager``: it answers and
    manages a swarm; ``ok``, ``denied``, ``down`` or ``absent``), ``links``
    whether link variables exist."""
    if daemon == "manager":
        return "swarm"
    if daemon == "ok":
        return "docker"
    if links:
        return "links"
    if daemon == "down":
        return "docker"  # a socket is there: the daemon may come up; serve 503 until it does
    if daemon == "denied":
        raise ConfigError(f"--discover auto: {reason}")
    raise ConfigError(
        "--discover auto found neither a Docker daemon (mount -v /var/run/docker.sock:/var/run/docker.sock:ro "
        "or set DOCKER_HOST) nor linked containers (--link NAME:ALIAS); or pass --backend HOST:PORT"
    )


async def probe_docker(environ: Mapping[str, str], timeout: float = PROBE_SECONDS) -> tuple[str, str]:
    """Whether the daemon answers within ``timeout``, and whether it is a
    swarm manager (``docker info``'s Swarm.ControlAvailable): (state, one-line reason)."""
    host = docker_host(environ)
    if not environ.get("DOCKER_HOST", "").strip() and not os.path.exists(SOCKET):
        return "absent", f"no DOCKER_HOST and no {SOCKET}"

    def ask() -> bool:
        engine = SdkEngine(environ, timeout=timeout)
        try:
            engine.ping()
            try:
                info = engine.info()
            except Exception:  # a socket proxy may refuse /info (INFO=0): then it is no swarm we can see
                return False
            return bool((info.get("Swarm") or {}).get("ControlAvailable"))
        finally:
            engine.close()

    with trio.move_on_after(timeout + 0.5):
        try:
            manager = await trio.to_thread.run_sync(ask, abandon_on_cancel=True)
        except ConfigError as exc:  # the docker package is missing
            return "absent", str(exc)
        except Exception as exc:
            return ("denied" if is_permission_denied(exc) else "down"), describe_fault(exc, host)
        if manager:
            return "manager", f"the Docker daemon at {host} is a swarm manager (--discover docker for its containers)"
        return "ok", f"the Docker daemon at {host} answers"
    return "down", f"the Docker daemon at {host} did not answer within {timeout:g} s"


@dataclass
class Provider:
    """A chosen, checked provider: ``kind`` is ``none``, ``docker``, ``swarm`` or ``links``."""

    kind: str
    config: Wanted
    environ: Mapping[str, str]

    @property
    def description(self) -> str:
        return f"discovery: {self.kind}" if self.kind != "none" else "static backends"

    def docker_options(self) -> DockerOptions:
        config = self.config
        return DockerOptions(config.network, config.use_published_ports, config.expose_all, config.balance)

    def feed_links(self, target: Target) -> int:
        """Swap the links' snapshot into ``target``; return the backend count."""
        found = build_from_links(self.environ, self.config.balance)
        for line in found.warnings:
            log.warning("links: %s", line)
        target.swap(found.snapshot)
        backends = {str(b) for s in found.snapshot.services for b in s.backends}
        log.info("links: %d backends from linked containers: %s", len(backends), ", ".join(sorted(backends)))
        return len(backends)

    async def run(self, target: Target, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Feed ``target``: links once (then return), docker or swarm until cancelled."""
        if self.kind == "links":
            self.feed_links(target)
        watcher: DockerWatcher | SwarmWatcher
        if self.kind == "docker":
            watcher = DockerWatcher(target, self.docker_options(), environ=self.environ, check=self.config.health)
        elif self.kind == "swarm":
            options, poll, check = self.docker_options(), self.config.swarm_poll, self.config.health
            watcher = SwarmWatcher(target, options, environ=self.environ, poll=poll, check=check)
        else:
            task_status.started()
            return
        task_status.started()
        await watcher.run()


async def prepare(mode: str, config: Wanted, environ: Mapping[str, str] | None = None) -> Provider:
    """Check and choose the provider for ``mode`` (``resolve_mode``'s answer).
    Raises ConfigError when it cannot run."""
    environ = dict(os.environ if environ is None else environ)
    if mode == "auto":
        daemon, reason = await probe_docker(environ)
        mode = choose_auto(daemon, has_links(environ), reason)
        if daemon not in ("ok", "manager"):
            reason += "; using the linked containers" if mode == "links" else "; waiting for the daemon"
        log.info("--discover auto: %s (%s)", mode, reason)
    check(mode, environ)
    return Provider(mode, config, environ)


def check(mode: str, environ: Mapping[str, str]) -> None:
    """What ``prepare`` refuses without any I/O (``pylb --check``: ``auto``
    is not probed there)."""
    if mode == "links" and not has_links(environ):
        raise ConfigError(
            "--discover links: no linked containers (no <ALIAS>_NAME and <ALIAS>_PORT_<n>_TCP_ADDR variables); "
            "run pylb with --link CONTAINER:ALIAS, or use --discover docker"
        )
    if mode in ("docker", "swarm"):
        try:
            load_sdk()
        except ConfigError:
            raise ConfigError(f"--discover {mode}: {INSTALL_HINT}") from None
