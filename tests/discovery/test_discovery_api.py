"""The discovery package's face, its purity rules, own-container evidence and fault lines."""

from __future__ import annotations

import ast
import errno
import pathlib

import pytest

import pylb.discovery
from pylb.core.errors import ConfigError
from pylb.discovery import engine, launch, own

PACKAGE = pathlib.Path(pylb.discovery.__file__).parent
PURE = ("assembly.py", "declared.py", "docker_build.py", "swarm_build.py", "links.py", "own.py")
FORBIDDEN = {"trio", "socket", "docker", "time", "threading", "asyncio", "requests", "urllib3", "logging"}


def test_public_names_are_pinned() -> None:
    assert set(pylb.discovery.__all__) == {
        "Discovered",
        "DockerOptions",
        "DockerWatcher",
        "Member",
        "SwarmOwn",
        "SwarmWatcher",
        "build_from_links",
        "build_snapshot",
        "build_swarm_snapshot",
        "has_links",
        "open_docker_discovery",
        "open_swarm_discovery",
    }


@pytest.mark.parametrize("name", PURE)
def test_builders_are_pure(name: str) -> None:
    tree = ast.parse((PACKAGE / name).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{name} imports {imported & FORBIDDEN}"


def test_every_module_says_what_it_owns() -> None:
    for path in PACKAGE.glob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and ("Owns" in doc or path.name == "__init__.py"), path.name


ID = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        (own.Evidence(), ()),
        (own.Evidence(cgroup=f"12:memory:/docker/{ID}\n"), (own.Candidate(ID),)),
        (own.Evidence(cgroup=f"0::/system.slice/docker-{ID}.scope\n"), (own.Candidate(ID),)),
        (
            own.Evidence(mountinfo=f"613 590 8:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw\n"),
            (own.Candidate(ID),),
        ),
        (own.Evidence(hostname=ID[:12]), (own.Candidate(ID[:12], by_hostname=True),)),
        (own.Evidence(cgroup=f"1:name=x:/docker/{ID}", hostname=ID[:12]), (own.Candidate(ID),)),
        (own.Evidence(cgroup="0::/\n", hostname="web"), ()),
        (own.Evidence(cgroup="4:memory:/process_api/98eb1c21df503c63698b51713a0d5f6b\n"), ()),
    ],
)
def test_own_container_candidates(evidence: own.Evidence, expected: tuple[own.Candidate, ...]) -> None:
    assert own.candidates(evidence) == expected


def test_a_hostname_candidate_must_match_the_containers_hostname() -> None:
    candidate = own.Candidate(ID[:12], by_hostname=True)
    assert own.matches(candidate, {"Id": ID, "Config": {"Hostname": ID[:12]}}, ID[:12])
    assert not own.matches(candidate, {"Id": ID, "Config": {"Hostname": "custom"}}, ID[:12])
    assert not own.matches(own.Candidate("ffff"), {"Id": ID}, "")


def _wrapped(inner: BaseException) -> Exception:
    outer = ConnectionError(("Connection aborted.", inner))
    outer.__context__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "fragment"),
    [
        (_wrapped(PermissionError(errno.EACCES, "Permission denied")), "permission denied on the Docker socket (H)"),
        (_wrapped(FileNotFoundError(errno.ENOENT, "No such file or directory")), "no Docker socket at H: mount it"),
        (_wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")), "the Docker daemon at H refuses"),
        (type("APIError", (Exception,), {"explanation": "boom"})("x"), "Docker API error from H: boom"),
        (RuntimeError("odd\nthing"), "cannot talk to the Docker daemon at H: RuntimeError: odd thing"),
    ],
)
def test_fault_lines(exc: BaseException, fragment: str) -> None:
    line = engine.describe_fault(exc, "H")
    assert line.startswith(fragment) and "\n" not in line


async def test_missing_docker_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(engine.importlib, "import_module", missing)
    with pytest.raises(ConfigError, match=r"--discover docker: Docker discovery needs the docker package: pip install"):
        await launch.prepare("docker", pylb.Config(discover="docker"), {})
