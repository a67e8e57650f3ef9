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


TESTING = {
    # trio
    "open_backend",
    "open_backends",
    "open_test_balancer",
    "open_hello",
    "open_hellos",
    "MemoryNetwork",
    "MemoryStream",
    # synchronous code and asyncio
    "run_backends",
    "run_balancer",
    "Portal",
    # what they give
    "Answer",
    "BackendLike",
    "FaultScope",
    "HelloBackend",
    "HttpBackend",
    "LiveBalancer",
    "ReceivedRequest",
    "ThreadedBalancer",
    "BackendFactory",
    "BalancerFactory",
    # faults, toxiproxy's vocabulary
    "faults",
    "Bandwidth",
    "Down",
    "Latency",
    "LimitData",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Timeout",
}
FAULTS = {"Bandwidth", "Down", "Latency", "LimitData", "ResetPeer", "Slicer", "SlowClose", "Timeout"}


def test_testing_kit_exports() -> None:
    assert set(pylb.testing.__all__) == TESTING
    for name in TESTING:
        assert getattr(pylb.testing, name) is not None
    assert set(pylb.testing.faults.__all__) >= FAULTS
    assert {name for name in FAULTS if getattr(pylb.testing.faults, name) is getattr(pylb.testing, name)} == FAULTS


def test_the_pytest_plugin_has_its_fixtures() -> None:
    import pylb.testing.plugin as plugin

    assert {"pylb_ca", "pylb_backends", "pylb_balancer"} <= set(vars(plugin))
