"""The pytest plugin: pylb in plain synchronous tests, no trio in sight.

Owns: the fixtures ``pylb_ca`` (a ``trustme.CA``), ``pylb_backends``
(``pylb_backends(n)`` -> n running ``HttpBackend``s) and ``pylb_balancer``
(``pylb_balancer(backends, tls=None, **options)`` -> a running
``ThreadedBalancer``). Everything a fixture started runs in one trio thread
per test and stops when the test ends, the balancer before the backends.
Must not know: the balancer's insides.

Registered by the ``pytest11`` entry point ``pylb`` (``pip install
'pylb[testing]'``), so pytest loads it in any project where pylb is
installed: it imports nothing heavy until a fixture is used, and a missing
trustme is one line saying what to install.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import trustme

    from pylb.testing.backends import HttpBackend
    from pylb.testing.balancer import BackendLike
    from pylb.testing.sync import BackendFactory, BalancerFactory, Portal, ThreadedBalancer


@pytest.fixture
def pylb_ca() -> trustme.CA:
    """A fresh ``trustme.CA``: give it as ``tls=`` and trust it in the client."""
    try:
        import trustme
    except ImportError:
        pytest.fail("pylb_ca needs trustme: pip install 'pylb[testing]'", pytrace=False)
    return trustme.CA()


@pytest.fixture
def _pylb_portal() -> Iterator[Portal]:
    from pylb.testing.sync import Portal

    portal = Portal("pylb-test")
    try:
        yield portal
    finally:
        portal.close()


@pytest.fixture
def pylb_backends(_pylb_portal: Portal) -> BackendFactory:
    """``pylb_backends(n, names=None, prefix="backend-")``: n backends on port 0
    that say who they are (``X-Served-By``), log what they receive and answer
    what ``respond()`` says; they stop when the test ends."""
    from pylb.testing.sync import start_backends

    def make(count: int = 1, *, names: Sequence[str] | None = None, prefix: str = "backend-") -> list[HttpBackend]:
        return start_backends(_pylb_portal, count, names=names, prefix=prefix)

    return make


@pytest.fixture
def pylb_balancer(_pylb_portal: Portal) -> BalancerFactory:
    """``pylb_balancer(backends, tls=None, **options)``: a running test
    balancer (``url``, ``set_backends``, ``statistics``, ``fault``,
    ``wait_until``, ``served``); it stops when the test ends."""
    from pylb.testing.sync import start_balancer

    def make(backends: Sequence[BackendLike] = (), tls: object = None, **options: Any) -> ThreadedBalancer:
        return start_balancer(_pylb_portal, backends, tls, **options)

    return make
