"""The Docker builder, table-tested with plain inspect dicts (no Docker needed)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trustme
from fakes import cid, compose, container

from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Route, Service, Snapshot
from pylb.discovery import Discovered, DockerOptions, build_snapshot
from pylb.discovery.assembly import Pending, Probe
from pylb.discovery.docker_build import run_key

SECRETS = ("hunter2", "s3cr3t-value")


def build(
    *containers: dict[str, Any], own: dict[str, Any] | None = None, probed: tuple[str, ...] = (), **options: Any
) -> Discovered:
    found = build_snapshot(list(containers), own, DockerOptions(**options), probed)
    text = repr(found) + " ".join(found.warnings) + repr(found.names) + repr(found.pending)
    for secret in SECRETS:
        assert secret not in text, "a container's environment value leaked into the builder's output"
    return found


def backends(found: Discovered, service: str | None = None) -> list[str]:
    snapshot = found.snapshot
    name = service if service is not None else snapshot.default
    chosen = snapshot.service(name) if name is not None else None
    return [str(b) for b in chosen.backends] if chosen else []


def ip(name: str) -> str:
    return container(name)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]


# -- which containers are backends ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "options", "taken"),
    [
        ({}, {}, False),
        ({"labels": {"pylb.port": "80"}}, {}, True),
        ({"labels": {"pylb.enable": "true"}}, {}, True),
        ({"labels": {"pylb.enable": "false", "pylb.port": "80"}}, {}, False),
        ({"labels": {"pylb.enable": "false"}, "env": {"VIRTUAL_HOST": "a.test"}}, {}, False),
        ({"env": {"VIRTUAL_HOST": "a.test"}}, {}, True),
        ({"env": {"SERVICE_PORTS": "80"}}, {}, True),
        ({"env": {"VIRTUAL_HOST": "  "}}, {}, False),  # blank is unset
        ({"env": {"BALANCE": "leastconn"}}, {}, False),  # other settings alone do not opt in
        ({"labels": {"com.example": "x"}}, {}, False),
        ({}, {"expose_all": True}, True),
        ({"exposed": (80, 443)}, {"expose_all": True}, False),
        ({"exposed": ()}, {"expose_all": True}, False),
        ({"labels": {"pylb.enable": "false"}}, {"expose_all": True}, False),
    ],
)
def test_candidates(kwargs: dict[str, Any], options: dict[str, Any], taken: bool) -> None:
    found = build(container("web-1", **kwargs), **options)
    assert bool(found.snapshot.services) is taken
    assert not found.warnings


def test_a_container_still_starting_its_healthcheck_is_pending_until_probed() -> None:
    checked = container("web-1", labels={"pylb.port": "80", "pylb.check.http": "GET /ready"}, health="starting")
    plain = container("web-2", labels={"pylb.port": "80", "pylb.tcp": "5432"}, health="starting")
    found = build(checked, plain)
    assert not found.snapshot.services
    assert found.pending == (
        Pending(run_key(checked), "web-1", (Probe(Backend(ip("web-1"), 80), ("GET", "/ready")),)),
        Pending(
            run_key(plain), "web-2", (Probe(Backend(ip("web-2"), 80), None, True), Probe(Backend(ip("web-2"), 5432)))
        ),
    )
    found = build(checked, plain, probed=(run_key(checked),))
    assert backends(found) == [f"{ip('web-1')}:80"] and [p.name for p in found.pending] == ["web-2"]
    restarted = container(
        "web-1", labels=checked["Config"]["Labels"], health="starting", started="2026-01-02T00:00:00Z"
    )
    assert run_key(restarted) != run_key(checked)  # a restart is probed again
    assert [p.name for p in build(restarted, probed=(run_key(checked),)).pending] == ["web-1"]
    assert build(container("web-3", labels={"pylb.port": "80"}, health="unhealthy")).pending == ()


@pytest.mark.parametrize(
    ("state", "taken"),
    [
        ({}, True),
        ({"running": False}, False),
        ({"paused": True}, False),
        ({"restarting": True}, False),
        ({"health": "starting"}, False),
        ({"health": "unhealthy"}, False),
        ({"health": "healthy"}, True),
        ({"health": "none"}, True),
    ],
)
def test_only_running_ready_containers_are_backends(state: dict[str, Any], taken: bool) -> None:
    found = build(container("web-1", labels={"pylb.port": "80"}, **state))
    assert backends(found) == ([f"{ip('web-1')}:80"] if taken else [])


def test_pylbs_own_container_is_never_a_backend() -> None:
    me = container("pylb", labels={"pylb.port": "80"})
    found = build(me, container("web-1", labels={"pylb.port": "80"}), own=me)
    assert backends(found) == [f"{ip('web-1')}:80"]


# -- ports ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "ports"),
    [
        ({"labels": {"pylb.port": "8080"}, "exposed": (80, 8080)}, [8080]),
        ({"labels": {"pylb.port": "9000"}, "exposed": ()}, [9000]),  # need not be exposed
        ({"env": {"SERVICE_PORTS": "80, 8080"}, "exposed": ()}, [80, 8080]),
        ({"env": {"SERVICE_PORTS": "8080/tcp"}}, [8080]),
        ({"labels": {"pylb.port": "81"}, "env": {"SERVICE_PORTS": "82"}}, [81]),  # the label wins
        ({"labels": {"pylb.enable": "true"}, "exposed": (3000,)}, [3000]),
        ({"labels": {"pylb.enable": "true"}, "env": {"EXCLUDE_PORTS": "22"}, "exposed": (22, 80)}, [80]),
        ({"labels": {"pylb.enable": "true"}, "exposed": (80, 443)}, [80]),  # pylb's own image, for one
    ],
)
def test_ports(kwargs: dict[str, Any], ports: list[int]) -> None:
    found = build(container("web-1", **kwargs))
    assert backends(found) == [f"{ip('web-1')}:{p}" for p in ports]
    assert not found.warnings


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"exposed": (8080, 8443)}, "exposes ports 8080, 8443; choose one with the label pylb.port=PORT"),
        ({"exposed": ()}, "exposes no TCP port; name one with the label pylb.port=PORT"),
        ({"exposed": (22,), "env": {"EXCLUDE_PORTS": "22"}}, "exposes no TCP port (after EXCLUDE_PORTS)"),
    ],
)
def test_ambiguous_or_missing_port_is_one_warning(kwargs: dict[str, Any], fragment: str) -> None:
    found = build(
        container("web-1", labels={"pylb.enable": "true"}, **kwargs), container("ok", env={"SERVICE_PORTS": "80"})
    )
    assert backends(found) == [f"{ip('ok')}:80"]
    assert len(found.warnings) == 1
    assert found.warnings[0].startswith("container web-1 skipped: ") and fragment in found.warnings[0]


# -- bad values: one warning, the container skipped, the others kept ---------------------


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ({"pylb.weight": "abc"}, "label pylb.weight: weight 'abc' must be a whole number from 1 to 256"),
        ({"pylb.weight": "0"}, "label pylb.weight"),
        ({"pylb.port": "99999"}, "label pylb.port='99999' must be a port number from 1 to 65535"),
        ({"pylb.port": "0"}, "label pylb.port='0'"),
        ({"pylb.port": "http"}, "label pylb.port='http'"),
        ({"pylb.balance": "fastest"}, "label pylb.balance: unknown algorithm 'fastest'"),
        ({"pylb.host": "a b.test"}, "label pylb.host"),
        ({"pylb.host": "a.*.test"}, "puts * in the wrong place"),
        ({"pylb.enable": "maybe"}, "label pylb.enable='maybe' must be true or false"),
        ({"pylb.service": " "}, "label pylb.service=' ' is not a service name"),
        (
            {"pylb.network": "nope"},
            "not on network 'nope' (named by the label pylb.network); connect it: docker network connect nope web-1",
        ),
    ],
)
def test_bad_label_skips_that_container_with_one_warning(labels: dict[str, str], fragment: str) -> None:
    bad = container("web-1", labels={"pylb.port": "80", **labels})
    good = container("web-2", labels={"pylb.port": "80"})
    found = build(bad, good)
    assert backends(found) == [f"{ip('web-2')}:80"]
    assert len(found.warnings) == 1, found.warnings
    line = found.warnings[0]
    assert line.startswith("container web-1 skipped: ") and fragment in line, line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"VIRTUAL_HOST": "s3cr3t-value b"}, "VIRTUAL_HOST"),
        ({"VIRTUAL_HOST": "a.test", "VIRTUAL_HOST_WEIGHT": "s3cr3t-value"}, "VIRTUAL_HOST_WEIGHT"),
        ({"SERVICE_PORTS": "s3cr3t-value"}, "SERVICE_PORTS"),
        ({"VIRTUAL_HOST": "a.test", "EXCLUDE_PORTS": "s3cr3t-value"}, "EXCLUDE_PORTS"),
        ({"VIRTUAL_HOST": "a.test", "BALANCE": "s3cr3t-value"}, "BALANCE"),
        ({"VIRTUAL_HOST": "a.test", "SSL_CERT": "s3cr3t-value"}, "SSL_CERT"),
    ],
)
def test_bad_env_is_one_warning_that_never_quotes_the_value(env: dict[str, str], name: str) -> None:
    found = build(container("web-1", env=env), container("web-2", labels={"pylb.port": "80"}))
    assert backends(found) == [f"{ip('web-2')}:80"]
    assert len(found.warnings) == 1
    assert found.warnings[0].startswith(f"container web-1 skipped: env {name}")


def test_unexpected_inspect_data_is_a_warning_not_an_exception() -> None:
    broken = container("web-1", labels={"pylb.port": "80"})
    broken["NetworkSettings"]["Networks"] = {"bridge": ["not", "a", "dict"]}
    odd: dict[str, Any] = {"Id": cid("x"), "Name": "/odd", "Config": None, "State": None}
    found = build(broken, odd, container("web-2", labels={"pylb.port": "80"}))
    assert backends(found) == [f"{ip('web-2')}:80"]
    assert found.warnings == ("container web-1 skipped: unexpected inspect data (AttributeError)",)


def test_unknown_label_and_hsts_are_notes_and_the_container_stays() -> None:
    found = build(container("web-1", labels={"pylb.prot": "80"}, env={"VIRTUAL_HOST": "a.test", "HSTS_MAX_AGE": "60"}))
    assert backends(found, "a.test") == [f"{ip('web-1')}:80"]
    assert len(found.warnings) == 2
    assert "container web-1: unknown label pylb.prot ignored (known: pylb.enable" in found.warnings[0]
    assert "container web-1: HSTS_MAX_AGE is ignored (no per-service HSTS yet)" in found.warnings[1]


# -- services, routes, settings -----------------------------------------------------------


def test_compose_service_containers_form_one_service() -> None:
    found = build(
        compose("app-web-1", "app", "web", labels={"pylb.port": "80"}),
        compose("app-web-2", "app", "web", labels={"pylb.port": "80"}),
        compose("other-web-1", "other", "web", labels={"pylb.host": "other.test"}),
    )
    web = found.snapshot.service("app-web")
    assert web is not None and len(web.backends) == 2
    assert found.snapshot.default == "app-web"
    assert backends(found, "other-web") == [f"{ip('other-web-1')}:80"]


def test_pylb_service_label_groups_across_compose_projects() -> None:
    found = build(
        compose("a-1", "a", "web", labels={"pylb.service": "shop", "pylb.port": "80"}),
        container("b-1", labels={"pylb.service": "shop", "pylb.port": "80", "pylb.weight": "3"}),
    )
    assert found.snapshot == Snapshot(
        (Service("shop", tuple(sorted([Backend(ip("a-1"), 80), Backend(ip("b-1"), 80, 3)]))),), "shop"
    )


def test_default_service_rules() -> None:
    routed = container("api-1", labels={"pylb.host": "api.test"})
    plain1 = container("web-1", labels={"pylb.port": "80"})
    plain2 = container("blog-1", labels={"pylb.port": "80"})
    assert build(routed).snapshot.default is None
    assert build(routed, plain1).snapshot.default == "web-1"
    merged = build(routed, plain1, plain2).snapshot
    assert merged.default == "default"
    assert [s.name for s in merged.services] == ["default", "api.test"]
    assert set(backends(build(plain1, plain2))) == {f"{ip('web-1')}:80", f"{ip('blog-1')}:80"}


def test_routes_from_label_or_virtual_host() -> None:
    found = build(
        container("a-1", labels={"pylb.host": "a.test,https://a.test/api/*"}, env={"VIRTUAL_HOST": "ignored.test"}),
        container("b-1", env={"VIRTUAL_HOST": "b.test", "VIRTUAL_HOST_WEIGHT": "5"}),
    )
    assert found.snapshot.routes == tuple(
        sorted(
            [
                Route("a.test", "/", "a.test,https://a.test/api/*"),
                Route("a.test", "/api/*", "a.test,https://a.test/api/*", scheme="https"),
                Route("b.test", "/", "b.test", priority=5),
            ]
        )
    )


def test_containers_with_the_same_hosts_share_a_service() -> None:
    found = build(
        container("x-1", labels={"pylb.host": "a.test, b.test"}),
        container("x-2", env={"VIRTUAL_HOST": "B.test,a.test"}),
        container("y-1", labels={"pylb.host": "a.test"}),
    )
    shared = found.snapshot.service("a.test,b.test")
    assert shared is not None and len(shared.backends) == 2
    assert found.warnings == (
        "services a.test, a.test,b.test all claim a.test; only one of them gets its requests (give their containers "
        "the same pylb.service label to share them)",
    )


def test_balance_force_ssl_and_weight() -> None:
    found = build(
        container("a-1", labels={"pylb.service": "a", "pylb.port": "80", "pylb.balance": "leastconn"}),
        container("a-2", labels={"pylb.service": "a", "pylb.port": "80", "pylb.weight": "7"}, env={"FORCE_SSL": "yes"}),
        container("b-1", labels={"pylb.host": "b.test"}, env={"BALANCE": "LeastConn", "FORCE_SSL": "false"}),
        balance="source",
    )
    a, b = found.snapshot.service("a"), found.snapshot.service("b.test")
    assert a is not None and b is not None
    assert (a.balance, a.force_ssl, b.balance, b.force_ssl) == ("leastconn", True, "leastconn", False)
    assert {bk.weight for bk in a.backends} == {1, 7}
    c = build(container("c-1", labels={"pylb.port": "80"}), balance="source").snapshot.service("c-1")
    assert c is not None and c.balance == "source"


def test_containers_of_a_service_that_disagree_get_a_warning() -> None:
    found = build(
        container("a-1", labels={"pylb.service": "a", "pylb.port": "80", "pylb.balance": "leastconn"}),
        container("a-2", labels={"pylb.service": "a", "pylb.port": "80", "pylb.balance": "roundrobin"}),
    )
    service = found.snapshot.service("a")
    assert service is not None and service.balance == "leastconn" and len(service.backends) == 2
    assert found.warnings == (
        "service a: a-2 sets balance roundrobin, a-1 sets leastconn; using leastconn "
        "(set the same value on every container of the service)",
    )


def test_the_result_does_not_depend_on_listing_order() -> None:
    items = [
        compose("app-web-1", "app", "web", labels={"pylb.port": "80"}),
        compose("app-web-2", "app", "web", labels={"pylb.port": "80", "pylb.weight": "2"}),
        container("api-1", env={"VIRTUAL_HOST": "api.test,api2.test"}),
        container("blog-1", labels={"pylb.host": "*.blog.test"}),
        container("bad-1", labels={"pylb.weight": "x"}),
    ]
    results = {build(*order) for order in itertools.permutations(items)}
    assert len(results) == 1
    assert len({r.warnings for r in results}) == 1


# -- addresses -----------------------------------------------------------------------------


def test_outside_any_container_the_first_network_by_name() -> None:
    c = container("web-1", labels={"pylb.port": "80"}, networks={"zeta": "10.0.9.2", "alpha": "10.0.1.2", "mid": ""})
    assert backends(build(c)) == ["10.0.1.2:80"]


def test_inside_a_container_the_ip_on_a_shared_network() -> None:
    me = container("pylb", networks={"front": "10.1.0.2", "zeta": "10.9.0.2"})
    web = container("web-1", labels={"pylb.port": "80"}, networks={"alpha": "10.0.0.5", "zeta": "10.9.0.5"})
    assert backends(build(web, own=me)) == ["10.9.0.5:80"]
    lonely = container("web-2", labels={"pylb.port": "80"}, networks={"alpha": "10.0.0.6"})
    found = build(lonely, own=me)
    assert backends(found) == []
    assert found.warnings == (
        "container web-2 skipped: it shares no network with pylb's container (its networks: alpha; pylb's: front, "
        "zeta); connect them (docker network connect NETWORK web-2) or name a network with --network or the label "
        "pylb.network",
    )


def test_network_option_and_label() -> None:
    web = container("web-1", labels={"pylb.port": "80"}, networks={"a": "10.0.0.5", "b": "10.1.0.5"})
    assert backends(build(web, network="b")) == ["10.1.0.5:80"]
    labelled = container(
        "web-2", labels={"pylb.port": "80", "pylb.network": "a"}, networks={"a": "10.0.0.6", "b": "10.1.0.6"}
    )
    assert backends(build(labelled, network="b")) == ["10.0.0.6:80"]  # the label wins
    found = build(web, network="c")
    assert found.warnings == (
        "container web-1 skipped: it is not on network 'c' (named by --network); "
        "connect it: docker network connect c web-1",
    )


def test_host_networked_pylb_counts_as_outside() -> None:
    me = container("pylb", networks={"host": ""})
    web = container("web-1", labels={"pylb.port": "80"}, networks={"bridge": "172.17.0.9"})
    assert backends(build(web, own=me)) == ["172.17.0.9:80"]


def test_ipv6_only_network() -> None:
    web = container("web-1", labels={"pylb.port": "80"}, networks={})
    web["NetworkSettings"]["Networks"]["v6"] = {"IPAddress": "", "GlobalIPv6Address": "fd00::5"}
    assert backends(build(web)) == ["[fd00::5]:80"]


def test_no_address_at_all_is_a_warning() -> None:
    web = container("web-1", labels={"pylb.port": "80"}, networks={"host": ""})
    found = build(web)
    assert backends(found) == [] and "it has no IP address on any network (host networking?)" in found.warnings[0]


@pytest.mark.parametrize(
    ("bindings", "address"),
    [
        ([("0.0.0.0", "32768"), ("::", "32768")], "127.0.0.1:32768"),
        ([("::", "32769"), ("0.0.0.0", "32769")], "127.0.0.1:32769"),
        ([("::", "32770")], "[::1]:32770"),
        ([("192.168.5.5", "8080")], "192.168.5.5:8080"),
        ([("", "8081")], "127.0.0.1:8081"),
    ],
)
def test_published_ports(bindings: list[tuple[str, str]], address: str) -> None:
    web = container("web-1", labels={"pylb.port": "80"}, published={80: bindings})
    assert backends(build(web, use_published_ports=True)) == [address]


def test_unpublished_port_with_published_ports_is_a_warning() -> None:
    found = build(container("web-1", labels={"pylb.port": "80"}), use_published_ports=True)
    assert found.warnings == (
        "container web-1 skipped: its port 80 is not published on the host; publish it (-p 80) or run pylb without "
        "--use-published-ports",
    )


def test_published_ports_are_ignored_inside_a_container() -> None:
    me = container("pylb", networks={"net": "10.0.0.2"})
    web = container(
        "web-1", labels={"pylb.port": "80"}, networks={"net": "10.0.0.3"}, published={80: [("0.0.0.0", "1")]}
    )
    found = build(web, own=me, use_published_ports=True)
    assert backends(found) == ["10.0.0.3:80"]
    assert found.warnings[0].startswith("--use-published-ports is ignored: pylb runs in a container")


# -- certificates ---------------------------------------------------------------------------


def test_ssl_cert_from_containers() -> None:
    ca = trustme.CA()
    pem = ca.issue_cert("a.test").private_key_and_cert_chain_pem.bytes().decode()
    escaped = pem.replace("\n", "\\n")
    found = build(
        container("a-1", labels={"pylb.service": "a"}, env={"VIRTUAL_HOST": "a.test", "SSL_CERT": escaped}),
        container("a-2", labels={"pylb.service": "a"}, env={"VIRTUAL_HOST": "a.test", "SSL_CERT": pem}),
    )
    assert len(found.certificates) == 1
    assert found.certificates[0].names == ("a.test",)
    assert found.certificates[0].source == "SSL_CERT of a-1"
    assert "PRIVATE" not in repr(found)


@pytest.mark.parametrize(
    ("labels", "env", "check"),
    [
        ({}, {}, None),
        ({"pylb.check": "check inter 5s rise 1 fall 2"}, {}, HealthCheck(True, 5.0, 1, 2)),
        ({"pylb.check": "none"}, {}, HealthCheck(enabled=False)),
        ({"pylb.check.http": "GET /health"}, {}, HealthCheck(http=("GET", "/health"))),
        (
            {},
            {"HEALTH_CHECK": "check inter 1000 fall 1", "HTTP_CHECK": "HEAD /ping"},
            HealthCheck(True, 1.0, 2, 1, ("HEAD", "/ping")),
        ),
        ({"pylb.check": "check fall 5"}, {"HEALTH_CHECK": "check fall 1"}, HealthCheck(True, 2.0, 2, 5)),
    ],
)
def test_per_service_health_checks(labels: dict[str, str], env: dict[str, str], check: HealthCheck | None) -> None:
    found = build(container("web-1", labels={"pylb.enable": "true", **labels}, env=env, exposed=(80,)))
    (service,) = found.snapshot.services
    assert service.check == check
    assert not found.warnings


def test_a_bad_health_check_skips_the_container_with_one_line() -> None:
    found = build(container("web-1", labels={"pylb.enable": "true", "pylb.check": "check often"}, exposed=(80,)))
    assert found.snapshot is None or not found.snapshot.services or not found.snapshot.services[0].backends
    assert len(found.warnings) == 1 and "label pylb.check" in found.warnings[0]


# -- TCP_PORTS ------------------------------------------------------------------------------


def tcp(found: Discovered) -> dict[int, tuple[str, bool, list[str]]]:
    """port -> (service, tls, backends) for every discovered TCP listener."""
    snapshot = found.snapshot
    return {t.port: (t.service, t.tls, backends(found, t.service)) for t in snapshot.tcp_ports}


def test_tcp_ports_make_one_listener_per_port_across_containers_and_services() -> None:
    found = build(
        container("db-1", env={"TCP_PORTS": "5432"}, exposed=(5432,)),
        container("db-2", env={"TCP_PORTS": "5432, 2222/ssl"}, exposed=(5432, 2222)),
        compose("ssh-1", "shop", "ssh", labels={"pylb.tcp": "2222/SSL"}, exposed=(22,)),
    )
    assert tcp(found) == {
        2222: ("tcp:2222", True, sorted([f"{ip('db-2')}:2222", f"{ip('ssh-1')}:2222"])),
        5432: ("tcp:5432", False, sorted([f"{ip('db-1')}:5432", f"{ip('db-2')}:5432"])),
    }
    # A container with TCP ports and nothing else said is no HTTP backend: no default service.
    assert found.snapshot.default is None
    assert found.snapshot.routes == ()
    assert found.warnings == ()


def test_a_container_with_tcp_ports_serves_http_when_it_says_so_or_exposes_80() -> None:
    found = build(
        container("web", env={"VIRTUAL_HOST": "a.test", "TCP_PORTS": "22"}, exposed=(22, 8080)),
        container("api", env={"SERVICE_PORTS": "22, 9000", "TCP_PORTS": "22"}, exposed=(22, 9000)),
        container("db", env={"TCP_PORTS": "3306"}, exposed=(3306, 33060)),
        container("app", env={"TCP_PORTS": "2222"}, exposed=(80, 2222)),
    )
    assert backends(found, "a.test") == [f"{ip('web')}:8080"]  # the exposed port that is not a TCP port
    # SERVICE_PORTS minus TCP_PORTS, and port 80 when exposed besides; db's 33060 is not taken for HTTP
    assert backends(found) == sorted([f"{ip('api')}:9000", f"{ip('app')}:80"])
    assert tcp(found)[22][2] == sorted([f"{ip('web')}:22", f"{ip('api')}:22"])
    assert tcp(found)[3306][2] == [f"{ip('db')}:3306"]
    assert tcp(found)[2222][2] == [f"{ip('app')}:2222"]


def test_tcp_ports_stay_when_the_http_port_is_ambiguous() -> None:
    found = build(container("odd", env={"VIRTUAL_HOST": "b.test", "TCP_PORTS": "22"}, exposed=(22,)))
    assert tcp(found) == {22: ("tcp:22", False, [f"{ip('odd')}:22"])}
    assert found.snapshot.service("b.test") is None
    assert found.warnings == (
        "container odd: no HTTP backend: it exposes no TCP port besides its TCP ports; name one with the label "
        "pylb.port=PORT",
    )


@pytest.mark.parametrize("value", ["70000", "22/udp", "ssl", "22,,x", "0", "s3cr3t-value"])
def test_bad_tcp_ports_skip_the_container_with_one_line_naming_it(value: str) -> None:
    found = build(container("db", env={"TCP_PORTS": value}), container("web", labels={"pylb.port": "80"}))
    assert tcp(found) == {}
    assert backends(found) == [f"{ip('web')}:80"]
    assert found.warnings == (
        "container db skipped: env TCP_PORTS is not valid; list port numbers from 1 to 65535, each optionally "
        "followed by /ssl (example: 5432, 2222/ssl)",
    )


def test_bad_tcp_label_names_the_label() -> None:
    found = build(container("db", labels={"pylb.tcp": "22/ssh"}))
    assert tcp(found) == {}
    assert len(found.warnings) == 1
    assert found.warnings[0].startswith("container db skipped: label pylb.tcp must list port numbers")


def test_tcp_listeners_disagreeing_on_ssl_get_a_warning_and_the_first_by_name_wins() -> None:
    found = build(
        container("a", env={"TCP_PORTS": "2222/ssl"}, exposed=(2222,)),
        container("b", env={"TCP_PORTS": "2222"}, exposed=(2222,)),
    )
    assert tcp(found)[2222][:2] == ("tcp:2222", True)
    assert found.warnings == (
        "service tcp:2222: b sets TCP_PORTS 2222, a sets 2222/ssl; using 2222/ssl (set the same value on "
        "every container of the service)",
    )


def test_tcp_ports_use_published_ports_outside_docker_and_keep_balance_and_checks() -> None:
    found = build(
        container(
            "db",
            env={"TCP_PORTS": "5432", "BALANCE": "leastconn", "HEALTH_CHECK": "check inter 500", "HTTP_CHECK": "GET /"},
            exposed=(5432,),
            published={5432: [("0.0.0.0", "15432")]},
        ),
        use_published_ports=True,
    )
    service = found.snapshot.service("tcp:5432")
    assert service is not None
    assert [str(b) for b in service.backends] == ["127.0.0.1:15432"]
    assert service.balance == "leastconn"
    assert service.check == HealthCheck.parse("check inter 500")  # the timing, never the HTTP check


def test_a_service_named_like_a_tcp_listener_keeps_its_name() -> None:
    found = build(
        container("web", labels={"pylb.service": "tcp:22", "pylb.port": "80"}),
        container("ssh", env={"TCP_PORTS": "22"}, exposed=(22,)),
    )
    assert backends(found, "tcp:22") == [f"{ip('web')}:80"]
    assert tcp(found) == {22: ("tcp:22~", False, [f"{ip('ssh')}:22"])}
