"""The layers' import rules, held by a test rather than by memory.

- ``pylb.core`` is sans-IO (``tests/core/test_purity.py``) and imports only
  ``pylb.core``: the machine at the centre knows nothing above it.
- The data plane (``pylb.net``) and discovery (``pylb.discovery``) take their
  own settings: they import nothing from ``pylb.config`` or ``pylb.cli``.
- Every error type that carries an HTTP status lives in ``pylb/core/errors.py``.
- The records and statistics of exchanges live outside the drivers
  (``pylb.core.record``), so that the access log, stats and metrics never
  reach into the proxy loop.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil

import pytest

import pylb
from pylb.core.errors import ProxyError

PACKAGE = pathlib.Path(pylb.__file__).resolve().parent


def _modules(package: str) -> list[pathlib.Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute module names ``path`` imports (relative ones resolved)."""
    tree = ast.parse(path.read_text())
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level]
                names.add(".".join((*base, node.module or "")).rstrip("."))
            elif node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_imports_only_core(path: pathlib.Path) -> None:
    pylb_imports = {name for name in _imports(path) if name == "pylb" or name.startswith("pylb.")}
    outside = {name for name in pylb_imports if not name.startswith("pylb.core")}
    assert not outside, f"pylb/core/{path.name} imports {sorted(outside)}"


@pytest.mark.parametrize(
    "path", _modules("net") + _modules("discovery"), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_the_data_plane_and_discovery_take_their_own_settings(path: pathlib.Path) -> None:
    forbidden = {name for name in _imports(path) if name.split(".")[:2] in (["pylb", "config"], ["pylb", "cli"])}
    assert not forbidden, f"{path.parent.name}/{path.name} imports {sorted(forbidden)}"


def test_every_error_with_a_status_lives_in_core_errors() -> None:
    outside = []
    for info in pkgutil.walk_packages(pylb.__path__, "pylb."):
        if info.name == "pylb.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            defined_here = inspect.isclass(obj) and obj.__module__ == info.name
            if defined_here and issubclass(obj, ProxyError) and info.name != "pylb.core.errors":
                outside.append(f"{info.name}.{name}")
    assert outside == []


def test_records_and_statistics_types_live_outside_the_drivers() -> None:
    assert pylb.RequestRecord.__module__ == "pylb.core.record"
    for path in (PACKAGE / "net").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        assert not [n for n in names if n.endswith(("Record", "Stats", "Statistics"))], path.name
