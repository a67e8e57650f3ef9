"""The Swarm builder, table-tested with plain service, task and network dicts (no Docker needed)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trustme
from fakes import container, network, nid, service, sid, task, task_ip

from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Route
from pylb.discovery import Discovered, DockerOptions, SwarmOwn, build_swarm_snapshot
from pylb.discovery.assembly import Probe
from pylb.discovery.swarm_build import arriving, own_from_container, own_from_task

SECRETS = ("hunter2", "s3cr3t-value")
NETWORKS = [network("front"), network("back"), network("ingress", ingress=True)]
PYLB = SwarmOwn(frozenset({nid("front")}), sid("pylb"), ("front",))


def build(
    services: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    own: SwarmOwn | None = PYLB,
    probed: tuple[str, ...] = (),
    **options: Any,
) -> Discovered:
    found = build_swarm_snapshot(services, tasks, NETWORKS, own, DockerOptions(**options), probed)
    text = repr(found) + " ".join(found.warnings) + repr(found.names) + repr(found.pending)
    for secret in SECRETS:
        assert secret not in text, "a service's environment value leaked into the builder's output"
    return found


def backends(found: Discovered, name: str | None = None) -> list[str]:
    snapshot = found.snapshot
    chosen = snapshot.service(name if name is not None else snapshot.default or "")
    return [str(b) for b in chosen.backends] if chosen else []


WEB = service("shop_web", labels={"pylb.port": "80"})


# -- which services are candidates ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "port"),
    [
        ({}, None),
        ({"labels": {"pylb.port": "8080"}}, 8080),
        ({"env": {"SERVICE_PORTS": "80"}}, 80),  # dockercloud-haproxy's way in swarm mode
        ({"labels": {"pylb.enable": "true"}, "published": (5000,)}, 5000),  # the target port it publishes
        ({"labels": {"pylb.enable": "false", "pylb.port": "80"}}, None),
        ({"labels": {"com.example": "x"}, "env": {"BALANCE": "leastconn"}}, None),
    ],
)
def test_candidates_and_their_port(kwargs: dict[str, Any], port: int | None) -> None:
    web = service("shop_web", **kwargs)
    found = build([web], [task(web, 1)])
    assert backends(found) == ([f"{task_ip(task(web, 1))}:{port}"] if port else [])
    assert not found.warnings


def test_a_service_that_names_no_port_is_skipped_with_the_fix() -> None:
    web = service("shop_web", env={"VIRTUAL_HOST": "shop.test"})
    found = build([web], [task(web, 1)])
    assert not found.snapshot.services
    assert found.warnings == (
        "service shop_web skipped: it names no port: set the label pylb.port=PORT or the env SERVICE_PORTS "
        "(Swarm does not say which ports an image listens on)",
    )


def test_labels_and_env_read_as_for_containers() -> None:
    web = service(
        "shop_web",
        labels={"pylb.host": "shop.test", "pylb.weight": "3", "pylb.balance": "leastconn"},
        env={"SERVICE_PORTS": "8080", "VIRTUAL_HOST": "ignored.test"},
    )
    found = build([web], [task(web, 1), task(web, 2)])
    shop = found.snapshot.service("shop_web")
    assert shop is not None and shop.balance == "leastconn"
    assert [(b.port, b.weight) for b in shop.backends] == [(8080, 3), (8080, 3)]
    assert found.snapshot.routes == (Route("shop.test", "/", "shop_web"),)


def test_bad_values_skip_the_service_with_one_line_and_keep_the_others() -> None:
    bad = service("bad", labels={"pylb.weight": "heavy", "pylb.port": "80"})
    secret = service("secret", env={"SERVICE_PORTS": "80", "VIRTUAL_HOST": "hunter2 hunter2"})
    web = WEB
    found = build([bad, secret, web], [task(bad, 1), task(secret, 1), task(web, 1)])
    assert backends(found, "shop_web") == [f"{task_ip(task(web, 1))}:80"]
    assert found.warnings[0].startswith("service bad skipped: label pylb.weight: weight 'heavy' must be")
    assert found.warnings[1].startswith("service secret skipped: env VIRTUAL_HOST is not valid; use ")


def test_unknown_labels_are_named_and_pylb_endpoint_is_known() -> None:
    web = service("shop_web", labels={"pylb.port": "80", "pylb.prot": "81", "pylb.endpoint": "tasks"})
    found = build([web], [task(web, 1)])
    assert len(found.warnings) == 1
    assert found.warnings[0].startswith("service shop_web: unknown label pylb.prot ignored (known: pylb.enable")
    assert "pylb.endpoint" in found.warnings[0]


def test_unexpected_data_skips_one_service() -> None:
    odd = service("odd", labels={"pylb.port": "80"})
    odd["Spec"]["TaskTemplate"]["Networks"] = "front"  # not a list of dicts
    found = build([odd, WEB], [task(WEB, 1)])
    assert found.warnings == ("service odd skipped: unexpected service data (AttributeError)",)
    assert backends(found) == [f"{task_ip(task(WEB, 1))}:80"]


def test_pylb_service_groups_swarm_services_and_the_swarm_name_is_the_default() -> None:
    blue = service("shop_blue", labels={"pylb.port": "80", "pylb.service": "shop", "pylb.host": "shop.test"})
    green = service("shop_green", labels={"pylb.port": "80", "pylb.service": "shop", "pylb.host": "shop.test"})
    api = service("shop_api", labels={"pylb.port": "80", "pylb.host": "api.test"})
    found = build([blue, green, api], [task(blue, 1), task(green, 1), task(api, 1)])
    assert sorted(s.name for s in found.snapshot.services) == ["shop", "shop_api"]
    assert len(backends(found, "shop")) == 2


def test_pylb_itself_is_never_a_backend() -> None:
    me = service("pylb", labels={"pylb.port": "80"})
    found = build([me, WEB], [task(me, 1), task(WEB, 1)])
    assert [s.name for s in found.snapshot.services] == ["shop_web"]


# -- task states: leave when asked to stop, pending while starting ----------------------------


@pytest.mark.parametrize(
    ("state", "desired", "outcome"),
    [
        ("running", "running", "in"),
        ("starting", "running", "pending"),  # its HEALTHCHECK has not passed yet
        ("running", "shutdown", "out"),  # scaled away or replaced: out before it stops
        ("running", "remove", "out"),
        ("starting", "shutdown", "out"),
        ("preparing", "running", "out"),
        ("assigned", "running", "out"),
        ("failed", "shutdown", "out"),
        ("complete", "shutdown", "out"),
    ],
)
def test_task_states(state: str, desired: str, outcome: str) -> None:
    one = task(WEB, 1, state=state, desired=desired)
    found = build([WEB], [one])
    assert bool(backends(found)) is (outcome == "in")
    assert [p.key for p in found.pending] == ([one["ID"]] if outcome == "pending" else [])


@pytest.mark.parametrize(
    ("state", "desired", "expected"),
    [
        ("assigned", "running", True),
        ("preparing", "running", True),
        ("ready", "running", True),
        ("pending", "running", False),  # waiting for resources: maybe for ever
        ("starting", "running", False),  # started: pylb probes it
        ("running", "running", False),
        ("preparing", "shutdown", False),
    ],
)
def test_a_task_on_its_way(state: str, desired: str, expected: bool) -> None:
    assert arriving([task(WEB, 1), task(WEB, 2, state=state, desired=desired)]) is expected


def test_a_probed_starting_task_joins_and_probes_say_what_to_check() -> None:
    checked = service("checked", labels={"pylb.port": "80", "pylb.check.http": "GET /health", "pylb.host": "a.test"})
    plain = service("plain", labels={"pylb.port": "80", "pylb.tcp": "5432"})
    starting = [task(checked, 1, state="starting"), task(plain, 1, state="starting")]
    found = build([checked, plain], starting)
    assert not found.snapshot.services
    by_name = {p.name.split(".")[0]: p for p in found.pending}
    assert by_name["checked"].probes == (Probe(found.pending[0].probes[0].backend, ("GET", "/health")),)
    ip = task_ip(starting[1])
    assert set(by_name["plain"].probes) == {Probe(Backend(ip, 80), None, True), Probe(Backend(ip, 5432))}
    assert by_name["checked"].name == f"checked.1.{starting[0]['ID'][:12]}"

    found = build([checked, plain], starting, probed=(starting[0]["ID"],))
    assert backends(found, "checked") == [f"{task_ip(starting[0])}:80"]
    assert [p.key for p in found.pending] == [starting[1]["ID"]]


def test_a_rolling_update_start_first_has_old_and_new_then_new() -> None:
    old = task(WEB, 1)
    new = task(WEB, 1, state="starting", generation=1)
    found = build([WEB], [old, new])
    assert backends(found) == [f"{task_ip(old)}:80"] and [p.key for p in found.pending] == [new["ID"]]
    retired = task(WEB, 1, desired="shutdown")
    found = build([WEB], [retired, task(WEB, 1, generation=1)])
    assert backends(found) == [f"{task_ip(new)}:80"]


# -- networks --------------------------------------------------------------------------------


def test_the_network_shared_with_pylb_and_never_the_ingress() -> None:
    web = service("shop_web", labels={"pylb.port": "80"}, networks=("ingress", "back", "front"), published=(80,))
    one = task(web, 1)
    assert backends(build([web], [one])) == [f"{task_ip(one, 'front')}:80"]
    on_back = SwarmOwn(frozenset({nid("back"), nid("ingress")}))
    assert backends(build([web], [one], own=on_back)) == [f"{task_ip(one, 'back')}:80"]
    outside = build([web], [one], own=None)  # the first network by name, never the ingress
    assert backends(outside) == [f"{task_ip(one, 'back')}:80"]


def test_no_shared_network_is_a_warning_with_the_fix() -> None:
    web = service("shop_web", labels={"pylb.port": "80"}, networks=("back", "ingress"))
    found = build([web], [task(web, 1)])
    assert found.warnings == (
        "service shop_web skipped: it shares no network with pylb (its networks: back; pylb's: front); attach it to "
        "one (docker service update --network-add NETWORK shop_web) or name one with --network or the label "
        "pylb.network",
    )
    only_ingress = service("mesh", labels={"pylb.port": "80"}, networks=("ingress",))
    found = build([only_ingress], [task(only_ingress, 1)], own=None)
    assert found.warnings[0].startswith("service mesh skipped: it is on no network but the ingress")


@pytest.mark.parametrize(
    ("labels", "options", "expected"),
    [
        ({"pylb.network": "back"}, {}, "back"),
        ({}, {"network": "back"}, "back"),
        ({"pylb.network": nid("back")[:8]}, {"network": "front"}, "back"),  # an id prefix; the label wins
        ({"pylb.network": "elsewhere"}, {}, None),
    ],
)
def test_a_named_network(labels: dict[str, str], options: dict[str, Any], expected: str | None) -> None:
    web = service("shop_web", labels={"pylb.port": "80", **labels}, networks=("front", "back"))
    one = task(web, 1)
    found = build([web], [one], **options)
    if expected is None:
        assert found.warnings == (
            "service shop_web skipped: it is not on network 'elsewhere' (named by the label pylb.network); attach "
            "it: docker service update --network-add elsewhere shop_web",
        )
    else:
        assert backends(found) == [f"{task_ip(one, expected)}:80"]


def test_a_task_without_an_address_yet_is_left_out() -> None:
    one = task(WEB, 1)
    one["NetworksAttachments"] = []
    assert backends(build([WEB], [one, task(WEB, 2)])) == [f"{task_ip(task(WEB, 2))}:80"]


# -- the virtual IP ----------------------------------------------------------------------------


def test_endpoint_vip_is_one_backend_while_a_task_runs() -> None:
    web = service("shop_web", labels={"pylb.port": "80", "pylb.endpoint": "vip"}, vips={"front": "10.0.9.2"})
    assert backends(build([web], [task(web, 1), task(web, 2)])) == ["10.0.9.2:80"]
    assert backends(build([web], [task(web, 1, state="starting")])) == []  # the VIP routes to healthy tasks only
    assert backends(build([web], [])) == []


@pytest.mark.parametrize(
    ("labels", "mode", "fragment"),
    [
        ({"pylb.endpoint": "vip"}, "dnsrr", "label pylb.endpoint=vip, but the service has no virtual IP"),
        ({"pylb.endpoint": "mesh"}, "vip", "label pylb.endpoint='mesh' must be tasks"),
    ],
)
def test_endpoint_refusals(labels: dict[str, str], mode: str, fragment: str) -> None:
    web = service("shop_web", labels={"pylb.port": "80", **labels}, endpoint_mode=mode)
    found = build([web], [task(web, 1)])
    assert not found.snapshot.services
    assert found.warnings[0].startswith("service shop_web skipped: ") and fragment in found.warnings[0]


# -- certificates, determinism, where pylb runs -------------------------------------------------


def test_a_service_certificate_counts_while_it_has_backends() -> None:
    pem = trustme.CA().issue_cert("shop.test").private_key_and_cert_chain_pem.bytes().decode()
    web = service("shop_web", env={"SERVICE_PORTS": "80", "VIRTUAL_HOST": "shop.test", "SSL_CERT": pem})
    assert len(build([web], [task(web, 1)]).certificates) == 1
    assert build([web], [task(web, 1, state="starting")]).certificates == ()


def test_any_order_gives_the_same_world() -> None:
    api = service("api", labels={"pylb.port": "80", "pylb.host": "api.test"})
    services = [WEB, api]
    tasks = [task(WEB, 1), task(WEB, 2), task(api, 1), task(api, 2, state="starting")]
    first = build(services, tasks)
    shuffler = random.Random(7)
    for _ in range(5):
        shuffler.shuffle(services)
        shuffler.shuffle(tasks)
        again = build(services, tasks)
        assert again == first and again.names == first.names


def test_where_pylb_runs() -> None:
    attrs = container("pylb-1", labels={"com.docker.swarm.service.id": sid("pylb")}, networks={"front": "10.0.1.9"})
    attrs["NetworkSettings"]["Networks"]["front"]["NetworkID"] = nid("front")
    assert own_from_container(attrs) == SwarmOwn(frozenset({nid("front")}), sid("pylb"), ("front",))
    me = service("pylb", networks=("front", "back"))
    assert own_from_task(task(me, 1)) == SwarmOwn(
        frozenset({nid("front"), nid("back")}), sid("pylb"), ("back", "front")
    )


def test_health_checks_of_a_service_go_with_its_backends() -> None:
    web = service("shop_web", labels={"pylb.port": "80", "pylb.check": "check inter 5s fall 2"})
    found = build([web], [task(web, i) for i in (1, 2)])
    shop = found.snapshot.service("shop_web")
    assert shop is not None and shop.check == HealthCheck(inter=5.0, fall=2)
    assert len(shop.backends) == 2
