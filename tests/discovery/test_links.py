"""Legacy links: the variables ``docker run --link`` sets, as tables of env."""

from __future__ import annotations

import pytest

from pylb.core.models import Backend, Route
from pylb.discovery import Discovered, build_from_links, has_links


def link(alias: str, ip: str, *ports: int, env: dict[str, str] | None = None, me: str = "lb") -> dict[str, str]:
    """The variables Docker sets in container ``me`` for ``--link CONTAINER:alias``."""
    prefix = alias.upper().replace("-", "_")
    found = {f"{prefix}_NAME": f"/{me}/{alias}"}
    if ports:
        found[f"{prefix}_PORT"] = f"tcp://{ip}:{ports[0]}"
    for port in ports:
        found |= {
            f"{prefix}_PORT_{port}_TCP": f"tcp://{ip}:{port}",
            f"{prefix}_PORT_{port}_TCP_ADDR": ip,
            f"{prefix}_PORT_{port}_TCP_PORT": str(port),
            f"{prefix}_PORT_{port}_TCP_PROTO": "tcp",
        }
    for key, value in (env or {}).items():
        found[f"{prefix}_ENV_{key}"] = value
    return found


def build(env: dict[str, str]) -> Discovered:
    found = build_from_links(env)
    assert "hunter2" not in repr(found) + " ".join(found.warnings)
    return found


def default_backends(found: Discovered) -> list[str]:
    snapshot = found.snapshot
    service = snapshot.service(snapshot.default) if snapshot.default else None
    return [str(b) for b in service.backends] if service else []


def test_the_seeds_first_example_balances_across_both_links() -> None:
    env = {"PATH": "/bin", "HOSTNAME": "abc"} | link("web1", "172.17.0.2", 80) | link("web2", "172.17.0.3", 80)
    found = build(env)
    assert default_backends(found) == ["172.17.0.2:80", "172.17.0.3:80"]
    assert found.snapshot.routes == ()
    assert not found.warnings
    assert dict(found.names) == {"172.17.0.2:80": "web1", "172.17.0.3:80": "web2"}


@pytest.mark.parametrize(
    ("ports", "env", "expected"),
    [
        ((8080, 80, 443), {}, ["10.0.0.2:80"]),
        ((8080, 3000), {}, ["10.0.0.2:3000"]),
        ((8080, 3000), {"SERVICE_PORTS": "8080"}, ["10.0.0.2:8080"]),
        ((8080, 3000), {"SERVICE_PORTS": "8080, 3000"}, ["10.0.0.2:3000", "10.0.0.2:8080"]),
        ((80, 3000), {"EXCLUDE_PORTS": "80"}, ["10.0.0.2:3000"]),
        ((), {"SERVICE_PORTS": "9000"}, []),  # no address known for it: skipped
    ],
)
def test_port_choice(ports: tuple[int, ...], env: dict[str, str], expected: list[str]) -> None:
    found = build(link("web", "10.0.0.2", *ports, env=env))
    assert default_backends(found) == expected


def test_only_the_main_port_variable() -> None:
    env = {"WEB_NAME": "/lb/web", "WEB_PORT": "tcp://10.0.0.7:5000"}
    assert default_backends(build(env)) == ["10.0.0.7:5000"]


def test_lookalike_variables_without_a_link_name_are_not_links() -> None:
    kubernetes = {
        "WEB_PORT": "tcp://10.96.0.5:80",
        "WEB_PORT_80_TCP_ADDR": "10.96.0.5",
        "WEB_SERVICE_HOST": "10.96.0.5",
    }
    assert not has_links(kubernetes)
    assert build(kubernetes).snapshot.services == ()
    assert has_links(link("web", "10.0.0.2", 80))


def test_virtual_host_makes_routes_and_groups_aliases() -> None:
    env = (
        link("web-1", "10.0.0.2", 80, env={"VIRTUAL_HOST": "a.test", "SECRET": "hunter2"})
        | link("web-2", "10.0.0.3", 80, env={"VIRTUAL_HOST": "a.test", "VIRTUAL_HOST_WEIGHT": "3"})
        | link("api_1", "10.0.0.4", 8080)
        | link("api_2", "10.0.0.5", 8080)
        | link("blog", "10.0.0.6", 80, env={"VIRTUAL_HOST": "https://blog.test", "FORCE_SSL": "yes"})
    )
    found = build(env)
    snapshot = found.snapshot
    assert snapshot.default == "api"
    assert [s.name for s in snapshot.services] == ["api", "a.test", "https://blog.test"]
    a = snapshot.service("a.test")
    assert a is not None and [str(b) for b in a.backends] == ["10.0.0.2:80", "10.0.0.3:80"]
    blog = snapshot.service("https://blog.test")
    assert blog is not None and blog.force_ssl
    assert Route("a.test", "/", "a.test") in snapshot.routes or Route("a.test", "/", "a.test", 3) in snapshot.routes
    assert Route("blog.test", "/", "https://blog.test", scheme="https") in snapshot.routes
    assert default_backends(found) == ["10.0.0.4:8080", "10.0.0.5:8080"]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"VIRTUAL_HOST": "hunter2 x"}, "link web skipped: its VIRTUAL_HOST is not valid"),
        ({"SERVICE_PORTS": "hunter2"}, "link web skipped: its SERVICE_PORTS is not valid"),
        ({"BALANCE": "hunter2"}, "link web skipped: its BALANCE is not valid"),
    ],
)
def test_a_bad_setting_skips_that_link_with_one_warning(env: dict[str, str], fragment: str) -> None:
    found = build(link("web", "10.0.0.2", 80, env=env) | link("ok", "10.0.0.3", 80))
    assert default_backends(found) == ["10.0.0.3:80"]
    assert len(found.warnings) == 1 and found.warnings[0].startswith(fragment)


def test_bad_address_is_skipped() -> None:
    env = link("web", "not-an-ip", 80)
    found = build(env)
    assert found.snapshot.services == ()
    assert found.warnings == ("link web skipped: no IP address for port 80 in its link variables",)


def test_balance_from_the_linked_container_or_the_default() -> None:
    found = build_from_links(link("web", "10.0.0.2", 80, env={"BALANCE": "leastconn"}), balance="source")
    assert found.snapshot.services[0].balance == "leastconn"
    found = build_from_links(link("web", "10.0.0.2", 80), balance="source")
    assert found.snapshot.services[0].balance == "source"
    assert found.snapshot.services[0].backends == (Backend("10.0.0.2", 80),)


def test_tcp_ports_of_linked_containers() -> None:
    env = (
        link("db-1", "172.17.0.2", 5432, env={"TCP_PORTS": "5432"})
        | link("db-2", "172.17.0.3", 5432, env={"TCP_PORTS": "5432"})
        | link("web", "172.17.0.4", 80, 22, env={"TCP_PORTS": "22/ssl", "VIRTUAL_HOST": "a.test"})
        | link("ssh", "172.17.0.5", 22, 8080, env={"TCP_PORTS": "22/ssl"})
        | link("app", "172.17.0.6", 80, 2222, env={"TCP_PORTS": "2222"})
    )
    found = build(env)
    snapshot = found.snapshot
    ports = {t.port: (t.service, t.tls) for t in snapshot.tcp_ports}
    assert ports == {22: ("tcp:22", True), 2222: ("tcp:2222", False), 5432: ("tcp:5432", False)}
    tcp22, tcp5432 = snapshot.service("tcp:22"), snapshot.service("tcp:5432")
    assert tcp22 is not None and tcp5432 is not None
    assert [str(b) for b in tcp5432.backends] == ["172.17.0.2:5432", "172.17.0.3:5432"]
    assert [str(b) for b in tcp22.backends] == ["172.17.0.4:22", "172.17.0.5:22"]
    web = snapshot.service("a.test")
    assert web is not None and [str(b) for b in web.backends] == ["172.17.0.4:80"]  # 22 is its TCP port
    # db and ssh only list TCP ports (ssh's 8080 is not taken for HTTP); app also has port 80
    assert default_backends(found) == ["172.17.0.6:80"]
    assert found.warnings == ()


def test_bad_tcp_ports_of_a_link_is_one_warning() -> None:
    found = build(link("db", "172.17.0.2", 5432, env={"TCP_PORTS": "hunter2"}) | link("web", "172.17.0.3", 80))
    assert default_backends(found) == ["172.17.0.3:80"]
    assert found.snapshot.tcp_ports == ()
    assert len(found.warnings) == 1 and found.warnings[0].startswith("link db skipped: its TCP_PORTS is not valid")
