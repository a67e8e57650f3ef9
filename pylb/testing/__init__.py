"""pylb's test kit: backends, a balancer with fault injection, pytest fixtures.

This package only re-exports; ``tests/test_exports.py`` pins its names.

- trio: ``open_backends(n)`` and ``open_test_balancer(backends, tls=None, **options)``
  (``async with``); ``open_hello(s)`` (``pylb hello`` in-process); ``MemoryNetwork``.
- synchronous code and asyncio programs: ``run_backends(n)`` and
  ``run_balancer(backends, tls=None, **options)`` (``with``: trio in a thread).
- pytest (``pip install 'pylb[testing]'``): the fixtures ``pylb_ca``,
  ``pylb_backends`` and ``pylb_balancer`` (``pylb.testing.plugin``).
- faults, toxiproxy's vocabulary: ``pylb.testing.faults`` (``with lb.fault(backend, Latency(200)):``).

Example::

    with run_backends(2) as backends, run_balancer(backends) as lb:
        ...  # requests to lb.url alternate: lb.served == ["backend-1", "backend-2", ...]
"""

from pylb.testing import faults
from pylb.testing.backends import Answer, HttpBackend, ReceivedRequest, open_backend, open_backends
from pylb.testing.balancer import BackendLike, FaultScope, LiveBalancer, open_test_balancer
from pylb.testing.faults import Bandwidth, Down, Latency, LimitData, ResetPeer, Slicer, SlowClose, Timeout
from pylb.testing.hello import HelloBackend, open_hello, open_hellos
from pylb.testing.memory import MemoryNetwork, MemoryStream
from pylb.testing.sync import (
    BackendFactory,
    BalancerFactory,
    Portal,
    ThreadedBalancer,
    run_backends,
    run_balancer,
)

__all__ = [
    "Answer",
    "BackendFactory",
    "BackendLike",
    "BalancerFactory",
    "Bandwidth",
    "Down",
    "FaultScope",
    "HelloBackend",
    "HttpBackend",
    "Latency",
    "LimitData",
    "LiveBalancer",
    "MemoryNetwork",
    "MemoryStream",
    "Portal",
    "ReceivedRequest",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "ThreadedBalancer",
    "Timeout",
    "faults",
    "open_backend",
    "open_backends",
    "open_hello",
    "open_hellos",
    "open_test_balancer",
    "run_backends",
    "run_balancer",
]
