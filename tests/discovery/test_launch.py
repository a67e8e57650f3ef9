"""Choosing a provider: --discover, PYLB_DISCOVER, auto, and the CLI's one-line errors."""

from __future__ import annotations

import pytest
import trio

from pylb import cli
from pylb import config as cfg
from pylb.core.errors import ConfigError
from pylb.discovery import engine, launch


@pytest.mark.parametrize(
    ("given", "env", "explicit", "mode"),
    [
        ({"backends": ["1.2.3.4:80"]}, {}, False, "none"),
        ({"backends": ["1.2.3.4:80"]}, {"PYLB_DISCOVER": "docker"}, False, "none"),  # flags win over the env
        ({"discover": "docker"}, {}, True, "docker"),
        ({}, {"PYLB_DISCOVER": "auto"}, False, "auto"),
        ({}, {"PYLB_DISCOVER": "LINKS"}, False, "links"),
    ],
)
def test_resolve_mode(given: dict[str, object], env: dict[str, str], explicit: bool, mode: str) -> None:
    config = cfg.from_sources(given, env)  # type: ignore[arg-type]
    assert launch.resolve_mode(config, explicit) == mode


@pytest.mark.parametrize(
    ("given", "env", "explicit", "fragment"),
    [
        (
            {},
            {},
            False,
            "no backends: pass --backend HOST:PORT or --route HOST=HOST:PORT (repeatable), or --discover docker",
        ),
        ({}, {"PYLB_DISCOVER": "none"}, False, "no backends"),
        ({"discover": "docker", "backends": ["1.2.3.4:80"]}, {}, True, "--discover docker replaces the whole pool"),
    ],
)
def test_resolve_mode_refusals(given: dict[str, object], env: dict[str, str], explicit: bool, fragment: str) -> None:
    config = cfg.from_sources(given, env)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        launch.resolve_mode(config, explicit)


@pytest.mark.parametrize(
    ("daemon", "links", "chosen"),
    [
        ("manager", True, "swarm"),  # a swarm manager: its services, not its plain containers
        ("ok", True, "docker"),
        ("ok", False, "docker"),
        ("down", True, "links"),
        ("down", False, "docker"),
        ("absent", True, "links"),
        ("denied", True, "links"),
    ],
)
def test_choose_auto(daemon: str, links: bool, chosen: str) -> None:
    assert launch.choose_auto(daemon, links) == chosen


def test_choose_auto_refusals() -> None:
    with pytest.raises(ConfigError, match=r"found neither a Docker daemon .* nor linked containers"):
        launch.choose_auto("absent", False)
    with pytest.raises(ConfigError, match="--discover auto: permission denied"):
        launch.choose_auto("denied", False, "permission denied on the Docker socket")


def test_discovery_options_from_flags_and_env() -> None:
    config = cfg.from_sources(
        {"network": "front", "expose_all": "true"}, {"PYLB_USE_PUBLISHED_PORTS": "1", "PYLB_NETWORK": "other"}
    )
    assert (config.network, config.expose_all, config.use_published_ports) == ("front", True, True)
    with pytest.raises(ConfigError, match="--network: 'a b' is not a Docker network name"):
        cfg.from_sources({"network": "a b"}, {})
    with pytest.raises(ConfigError, match="PYLB_DISCOVER: unknown mode 'kubernetes'"):
        cfg.from_sources({}, {"PYLB_DISCOVER": "kubernetes"})


def test_bare_boolean_flags_mean_true() -> None:
    args = cli._balancer_parser().parse_args(["--expose-all", "--use-published-ports", "no", "--discover", "docker"])
    assert (args.expose_all, args.use_published_ports, args.discover) == ("true", "no", "docker")


async def test_links_mode_without_links_is_refused() -> None:
    config = cfg.Config(discover="links")
    with pytest.raises(ConfigError, match="--discover links: no linked containers"):
        await launch.prepare("links", config, {"PATH": "/bin"})


async def test_auto_without_socket_or_links_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "SOCKET", "/nonexistent/docker.sock")
    with pytest.raises(ConfigError, match="--discover auto found neither"):
        await launch.prepare("auto", cfg.Config(), {"PATH": "/bin"})


async def test_auto_prefers_links_when_the_daemon_is_away() -> None:
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock", "WEB_NAME": "/lb/web", "WEB_PORT": "tcp://10.0.0.7:80"}
    provider = await launch.prepare("auto", cfg.Config(), env)
    assert provider.kind == "links"


async def test_probe_reports_a_missing_socket() -> None:
    import docker  # noqa: F401  (a dependency of pylb)

    state, reason = await launch.probe_docker({"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert state == "down"
    assert "no Docker socket at unix:///nonexistent/docker.sock" in reason


async def test_swarm_mode_needs_the_docker_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ConfigError(engine.INSTALL_HINT)

    monkeypatch.setattr(launch, "load_sdk", missing)
    with pytest.raises(ConfigError, match=r"--discover swarm: Docker discovery needs the docker package"):
        await launch.prepare("swarm", cfg.Config(discover="swarm"), {"PATH": "/bin"})
    provider = launch.Provider("swarm", cfg.Config(discover="swarm"), {})
    assert provider.description == "discovery: swarm"


def test_swarm_poll_is_a_duration() -> None:
    assert cfg.from_sources({"swarm_poll": "500ms"}, {}).swarm_poll == 0.5
    assert cfg.from_sources({}, {"PYLB_SWARM_POLL": "5"}).swarm_poll == 5.0
    assert cfg.Config().swarm_poll == 2.0
    with pytest.raises(ConfigError, match=r"PYLB_SWARM_POLL: '2h' must be from 0.1 to 3600 seconds"):
        cfg.from_sources({}, {"PYLB_SWARM_POLL": "2h"})
    with pytest.raises(ConfigError, match=r"--swarm-poll: '50ms' must be from 0.1 to 3600 seconds"):
        cfg.from_sources({"swarm_poll": "50ms"}, {})


async def test_links_provider_feeds_the_target_once() -> None:
    env = {"WEB_NAME": "/lb/web", "WEB_PORT": "tcp://10.0.0.7:5000", "WEB_PORT_5000_TCP_ADDR": "10.0.0.7"}
    provider = await launch.prepare("links", cfg.Config(discover="links"), env)
    swapped = []

    class Target:
        def swap(self, snapshot: object) -> None:
            swapped.append(snapshot)

    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run, Target())
    assert len(swapped) == 1 and provider.description == "discovery: links"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--bind", "127.0.0.1:0"], "pylb: error: no backends: pass --backend HOST:PORT"),
        (["--bind", "127.0.0.1:0", "--discover", "links"], "pylb: error: --discover links: no linked containers"),
        (
            ["--bind", "127.0.0.1:0", "--discover", "docker", "--backend", "1.2.3.4:80"],
            "pylb: error: --discover docker replaces",
        ),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PYLB_DISCOVER", "PYLB_BACKENDS", "ROUTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "setup_logging", lambda: None)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(fragment) and err.count("\n") == 1, err
