"""What the package says about itself once installed: its license, its
version, and extras that keep the project's own tools out of users'
environments."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

import pylb

ROOT = Path(__file__).resolve().parents[1]


def _requires(extra: str | None) -> list[Requirement]:
    """The installed pylb's requirements for ``extra`` (None: the base ones)."""
    found = []
    for text in importlib.metadata.requires("pylb") or []:
        req = Requirement(text)
        env = {"extra": extra or ""}
        if (req.marker is None and extra is None) or (req.marker is not None and extra and req.marker.evaluate(env)):
            found.append(req)
    return found


def test_the_license_is_an_spdx_expression_and_its_file_ships() -> None:
    meta = importlib.metadata.metadata("pylb")
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Copyright (c) the pylb authors" in text


def test_the_version_is_written_once() -> None:
    assert importlib.metadata.version("pylb") == pylb.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", pylb.__version__)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pylb.__version__"}


def test_docker_is_a_dependency_and_the_old_extra_still_installs() -> None:
    assert "docker" in {r.name for r in _requires(None)}
    assert "docker" in (importlib.metadata.metadata("pylb").get_all("Provides-Extra") or [])
    assert _requires("docker") == []


def test_extras_by_audience() -> None:
    testing = {r.name for r in _requires("testing")}
    dev = {r.name for r in _requires("dev")}
    assert testing == {"trustme"}
    assert {"pytest", "mypy", "ruff", "sslyze", "hypothesis", "httpx"} <= dev
    assert not testing & {"pytest", "mypy", "ruff", "sslyze"}, "users' test suites get no linters or scanners"
    (itself,) = [r for r in _requires("dev") if r.name == "pylb"]
    assert itself.extras == {"testing", "docs"}, "dev includes what users' tests and the docs need"


def _caps(name: str, seen: set[str]) -> list[str]:
    """Upper bounds on cryptography in ``name``'s requirements, recursively
    (the distributions installed here)."""
    if name in seen:
        return []
    seen.add(name)
    caps = []
    for text in importlib.metadata.requires(name) or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.name.lower() == "cryptography" and any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier):
            caps.append(f"{name}: {req}")
        caps += _caps(req.name, seen)
    return caps


def test_the_testing_extra_does_not_hold_cryptography_back() -> None:
    # sslyze pins cryptography below the newest release: installing it into a user's
    # environment would downgrade cryptography there. It is in dev only.
    seen: set[str] = set()
    caps = [cap for req in _requires("testing") + _requires(None) for cap in _caps(req.name, seen)]
    assert caps == [], caps
    assert _caps("sslyze", set()), "the check above can see a cap (sslyze, installed for dev, has one)"
