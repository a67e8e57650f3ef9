"""The Docker engine as the watcher sees it: a few blocking calls, and what
their failures mean.

Owns: ``Engine`` (the protocol the Docker watcher needs: an event stream, the
running containers' inspect data, one container's), ``SwarmEngine`` (what the
Swarm watcher needs besides: services, tasks, networks), ``SdkEngine`` (both
protocols over the ``docker`` SDK, which honours ``DOCKER_HOST``,
``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``), and ``describe_fault``, the one
place where an SDK or socket error becomes a line an operator can act on.
Must not know: trio, snapshots, containers' meaning.

Invariants: every method blocks (the watcher calls them in threads);
``SdkEngine`` imports ``docker`` only when built, so pylb runs without it when
Docker discovery is off; a fault description is one line and names the fix.
"""

from __future__ import annotations

import errno
import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from pylb.core.errors import ConfigError

DEFAULT_HOST = "unix:///var/run/docker.sock"
INSTALL_HINT = "Docker discovery needs the docker package: pip install 'docker>=7' (a dependency of pylb)"


class EventStream(Protocol):
    def __iter__(self) -> Iterator[Any]: ...

    def __next__(self) -> Any: ...

    def close(self) -> None: ...


class Engine(Protocol):
    """What the watcher asks of a Docker engine. All calls block."""

    def events(self, filters: Mapping[str, list[str]]) -> EventStream:
        """Subscribe to events from now on (decoded dicts)."""
        ...

    def containers(self) -> list[dict[str, Any]]:
        """The inspect data of every running (or paused) container."""
        ...

    def inspect(self, ident: str) -> dict[str, Any] | None:
        """One container's inspect data; None when it does not exist."""
        ...

    def close(self) -> None: ...


class SwarmEngine(Engine, Protocol):
    """What the Swarm watcher asks of a manager besides. All calls block."""

    def services(self) -> list[dict[str, Any]]:
        """Every service (``GET /services``)."""
        ...

    def tasks(self) -> list[dict[str, Any]]:
        """The tasks whose desired state is ``running`` (``GET /tasks``)."""
        ...

    def networks(self) -> list[dict[str, Any]]:
        """The swarm-scoped networks (``GET /networks``)."""
        ...


class SdkEngine:
    """``Engine`` over the docker SDK. Building it talks to the daemon (API
    version negotiation); ``environ`` replaces ``os.environ`` for the
    ``DOCKER_*`` variables. Raises ConfigError when the SDK is missing."""

    def __init__(self, environ: Mapping[str, str] | None = None, timeout: float = 10.0) -> None:
        docker = load_sdk()
        self._not_found: type[Exception] = docker.errors.NotFound
        self._client: Any = docker.from_env(environment=environ, timeout=timeout)
        self._api: Any = self._client.api

    def events(self, filters: Mapping[str, list[str]]) -> EventStream:
        stream: EventStream = self._api.events(filters=dict(filters), decode=True)
        return stream

    def containers(self) -> list[dict[str, Any]]:
        found = []
        for summary in self._api.containers():
            attrs = self.inspect(str(summary["Id"]))
            if attrs is not None:
                found.append(attrs)
        return found

    def inspect(self, ident: str) -> dict[str, Any] | None:
        try:
            attrs: dict[str, Any] = self._api.inspect_container(ident)
        except self._not_found:
            return None
        return attrs

    def services(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._api.services()
        return found

    def tasks(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._api.tasks(filters={"desired-state": "running"})
        return found

    def networks(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._api.networks(filters={"scope": "swarm"})
        return found

    def info(self) -> dict[str, Any]:
        found: dict[str, Any] = self._api.info()
        return found

    def ping(self) -> None:
        self._api.ping()

    def close(self) -> None:
        self._client.close()


def load_sdk() -> Any:
    """The ``docker`` package (imported at run time: it is optional and untyped)."""
    try:
        return importlib.import_module("docker")
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def docker_host(environ: Mapping[str, str]) -> str:
    return environ.get("DOCKER_HOST", "").strip() or DEFAULT_HOST


def is_permission_denied(exc: BaseException) -> bool:
    return any(isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM) for e in _causes(exc)) or (
        "Permission denied" in str(exc)
    )


def describe_fault(exc: BaseException, host: str) -> str:
    """One line saying what went wrong talking to the daemon at ``host``, and
    what to do. Never quotes container data."""
    if isinstance(exc, ConfigError):
        return str(exc)
    causes = list(_causes(exc))
    if is_permission_denied(exc):
        return (
            f"permission denied on the Docker socket ({host}): give pylb's container the socket's group "
            "(docker run --group-add $(stat -c %g /var/run/docker.sock) ...) or put a docker-socket-proxy in front "
            "(DOCKER_HOST=tcp://socket-proxy:2375)"
        )
    if any(isinstance(e, FileNotFoundError) for e in causes) or "No such file or directory" in str(exc):
        return (
            f"no Docker socket at {host}: mount it (-v /var/run/docker.sock:/var/run/docker.sock:ro) or set DOCKER_HOST"
        )
    if any(isinstance(e, ConnectionRefusedError) for e in causes) or "Connection refused" in str(exc):
        return f"the Docker daemon at {host} refuses connections (is dockerd running?)"
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return f"Docker API error from {host}: {_short(str(explanation))}"
    return f"cannot talk to the Docker daemon at {host}: {type(exc).__name__}: {_short(str(exc))}"


def _causes(exc: BaseException, depth: int = 0) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``__cause__``, ``__context__`` and exception
    arguments (urllib3 puts the socket error in its ``args``)."""
    yield exc
    if depth >= 6:
        return
    inner = [exc.__cause__, exc.__context__, *(a for a in exc.args if isinstance(a, BaseException))]
    for item in inner:
        if item is not None and item is not exc:
            yield from _causes(item, depth + 1)


def _short(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
