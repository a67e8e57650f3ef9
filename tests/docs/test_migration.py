"""docs/migration.md against the code: every row's status is what pylb does.

- **supported** on pylb's container: pylb reads the variable (an option of
  ``pylb.config.OPTIONS``, or a Docker SDK variable); on an application
  container: setting it changes what discovery builds (docker and links).
- **ignored**: setting it changes nothing, and no warning names it.
- **warned, ignored**: the snapshot is unchanged and a warning names it.
- **mapped**: ignored under that name, and the flags, variables and labels
  the row names in backticks exist.

When pylb learns a variable (or starts warning about one), the row's status
here fails until the page says so.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import trustme

from pylb import compat
from pylb.config import OPTIONS, from_sources
from pylb.discovery import DockerOptions, build_from_links, build_snapshot
from pylb.discovery.docker_build import ENV_SETTINGS, LABELS
from tests.docs.doctext import DOCS

ENV_NAMES = {option.env for option in OPTIONS if option.env}
FLAGS = {option.flag for option in OPTIONS if option.flag}
DOCKER_SDK = {"DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"}  # docker.from_env(environment=...) reads them
STATUSES = {"supported", "mapped", "ignored", "warned, ignored"}


def table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first table under ``## heading``."""
    text = (DOCS / "migration.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def names(cell: str) -> list[str]:
    """The variable names of a first cell: `A`, `B_<PORT>` (and the variables it names)."""
    found = re.findall(r"`([A-Z][A-Z0-9_]*(?:<[A-Z]+>)?)`", cell)
    assert found, f"no variable in {cell!r}"
    return found


def concrete(name: str) -> str:
    return name.replace("<PORT>", "80").replace("<NAME>", "WEB")


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


GLOBAL = table("Settings of the balancer (on pylb's container)")
PER_SERVICE = table("Settings of application services (on the app containers)")


def test_the_tables_are_whole() -> None:
    assert len(GLOBAL) >= 30 and len(PER_SERVICE) >= 15
    for row in GLOBAL:
        assert len(row) == 3 and row[1] in STATUSES, row
    for row in PER_SERVICE:
        assert len(row) == 4 and row[1] in STATUSES and row[2] in STATUSES, row
    listed = {name for row in GLOBAL + PER_SERVICE for name in names(row[0])}
    for expected in (
        "EXTRA_GLOBAL_SETTINGS",
        "EXTRA_DEFAULT_SETTINGS",
        "EXTRA_BIND_SETTINGS",
        "EXTRA_ROUTE_SETTINGS",
        "EXTRA_FRONTEND_SETTINGS_<PORT>",
        "EXTRA_SETTINGS",
        "HEALTH_CHECK",
        "HTTP_CHECK",
        "TCP_PORTS",
    ):
        assert expected in listed


# -- on pylb's own container ---------------------------------------------------------------------


@pytest.mark.parametrize("row", GLOBAL, ids=[row[0] for row in GLOBAL])
def test_balancer_setting(row: list[str]) -> None:
    cell, status, notes = row
    for name in map(concrete, names(cell)):
        read = name in ENV_NAMES or name in DOCKER_SDK
        if status == "supported":
            assert read, f"{name}: the page says supported, but pylb does not read it"
        else:
            assert not read, f"{name}: pylb reads it; the page says {status}"
            assert from_sources({}, {name: "x y, z"}) == from_sources({}, {}), name
            assert build_from_links({name: "x"}).snapshot == build_from_links({}).snapshot
            warned = bool(compat.unsupported({name: "x"}))
            if status == "warned, ignored":
                assert warned, f"{name}: the page says warned, but pylb does not warn"
            elif status == "ignored":
                assert not warned, f"{name}: pylb warns about it; the page says ignored"
    if status == "mapped":
        check_mapped(notes)


def check_mapped(notes: str) -> None:
    named = backticked(notes)
    assert named, "a mapped row names what to use instead"
    for token in named:
        word = token.split()[0]
        if word.startswith("--"):
            assert word in FLAGS, f"{word}: no such flag"
        elif word.startswith("pylb."):
            assert word.split("=")[0] in LABELS, f"{word}: no such label"
        elif re.fullmatch(r"(PYLB_|ROUTES)[A-Z_]*", word):
            assert word in ENV_NAMES, f"{word}: no such variable"


# -- on application containers -------------------------------------------------------------------

PEM = trustme.CA().issue_cert("a.test").private_key_and_cert_chain_pem.bytes().decode()
SAMPLES = {  # values that change something when the variable is read
    "VIRTUAL_HOST": "b.test",
    "VIRTUAL_HOST_WEIGHT": "5",
    "SERVICE_PORTS": "8080",
    "EXCLUDE_PORTS": "80",
    "BALANCE": "leastconn",
    "FORCE_SSL": "true",
    "SSL_CERT": PEM,
    "HSTS_MAX_AGE": "31536000",
    "DEFAULT_SSL_CERT": PEM,
    "TCP_PORTS": "2222, 9000/ssl",
    "HEALTH_CHECK": "check inter 500 rise 1 fall 1",
    "HTTP_CHECK": "GET /health",
}


def container(env: dict[str, str]) -> dict[str, Any]:
    return {
        "Id": "0123456789ab" * 5 + "0123",
        "Name": "/web1",
        "State": {"Running": True, "Paused": False, "Restarting": False, "Dead": False},
        "Config": {"Labels": {}, "Env": [f"{k}={v}" for k, v in env.items()], "ExposedPorts": {"80/tcp": {}}},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2", "NetworkID": "n1"}}, "Ports": {}},
    }


def by_docker(env: dict[str, str]) -> tuple[object, tuple[str, ...]]:
    found = build_snapshot([container(env)], None, DockerOptions())
    return (found.snapshot, found.certificates), found.warnings


def by_links(env: dict[str, str]) -> tuple[object, tuple[str, ...]]:
    variables = {
        "WEB1_NAME": "/lb/web1",
        "WEB1_PORT": "tcp://172.17.0.2:80",
        "WEB1_PORT_80_TCP_ADDR": "172.17.0.2",
        "WEB1_PORT_80_TCP_PORT": "80",
    }
    variables.update({f"WEB1_ENV_{k}": v for k, v in env.items()})
    found = build_from_links(variables)
    return (found.snapshot, found.certificates), found.warnings


@pytest.mark.parametrize(
    ("row", "provider"),
    [(row, p) for row in PER_SERVICE for p in (1, 2)],
    ids=[f"{row[0]}-{'docker' if p == 1 else 'links'}" for row in PER_SERVICE for p in (1, 2)],
)
def test_application_setting(row: list[str], provider: int) -> None:
    status, build = row[provider], by_docker if provider == 1 else by_links
    base = {"VIRTUAL_HOST": "a.test"}
    world, warnings = build(base)
    assert not warnings
    for name in map(concrete, names(row[0])):
        changed_world, changed_warnings = build({**base, name: SAMPLES.get(name, "balance source")})
        named = [w for w in changed_warnings if name in w]
        if status == "supported":
            assert (changed_world, changed_warnings) != (world, warnings), f"{name}: the page says supported"
        elif status == "warned, ignored":
            assert changed_world == world and named, f"{name}: the page says warned, ignored"
        else:
            assert (changed_world, changed_warnings) == (world, warnings), f"{name}: read, but the page says {status}"
        if provider == 1:
            assert (name in ENV_SETTINGS) == (status in ("supported", "warned, ignored")), name
    if status == "mapped":
        check_mapped(row[3])


def test_the_deactivate_label_maps_to_pylb_enable() -> None:
    assert "pylb.enable" in LABELS
    text = (DOCS / "migration.md").read_text(encoding="utf-8")
    sentence = "`com.docker.dockercloud.haproxy.deactivate=true` is the label `pylb.enable=false`"
    assert sentence in text.replace("\n", " ")
