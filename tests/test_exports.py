"""The public API is what pylb/__init__.py re-exports, and nothing moves silently."""

import pylb
import pylb.testing

API = {
    "Backend",
    "Balancer",
    "Bind",
    "BindError",
    "BoundAddress",
    "Config",
    "HealthCheck",
    "ConfigError",
    "Pool",
    "ProxyError",
    "RequestRecord",
    "Route",
    "Service",
    "Snapshot",
    "SwapResult",
    "TcpPort",
    "Timeouts",
    "__version__",
    "open_balancer",
    "parse_virtual_host",
    "serve",
}


def test_public_names_are_pinned() -> None:
    assert set(pylb.__all__) == API
    for name in API:
        assert getattr(pylb, name) is not None


def test_public_objects_live_in_private_modules_and_are_reexported() -> None:
    for name in API - {"__version__"}:
        module = getattr(pylb, name).__module__
        assert module.startswith("pylb.") and module != "pylb", name


def test_testing_kit_exports() -> None:
    assert set(pylb.testing.__all__) == {"HelloBackend", "MemoryNetwork", "MemoryStream", "open_hello", "open_hellos"}
