"""pylb: a pure-Python load balancer for containers, without a config file.

This module only re-exports the public API; ``tests/test_exports.py`` pins it.
"""

from pylb.api import open_balancer
from pylb.config import Config
from pylb.core.errors import ConfigError, ProxyError
from pylb.core.health import HealthCheck
from pylb.core.models import Backend, Bind, Route, Service, Snapshot, TcpPort
from pylb.core.pool import Pool, SwapResult
from pylb.core.record import RequestRecord
from pylb.core.routing import parse_virtual_host
from pylb.core.timeouts import Timeouts
from pylb.net.server import Balancer, BindError, BoundAddress, serve

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "Balancer",
    "Bind",
    "BindError",
    "BoundAddress",
    "Config",
    "ConfigError",
    "HealthCheck",
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
]
