"""A user's synchronous tests with httpx: HTTPS from a test CA, timeouts, a cut body.

Run: pip install 'pylb[testing]' httpx && python -m pytest examples/
"""

import ssl

import httpx
import pytest
import trustme

import pylb
from pylb.testing import BackendFactory, BalancerFactory
from pylb.testing.faults import LimitData, ResetPeer, Timeout


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)  # the test CA, and only it
    return context


def test_https_with_a_test_ca(
    pylb_ca: trustme.CA, pylb_backends: BackendFactory, pylb_balancer: BalancerFactory
) -> None:
    lb = pylb_balancer(pylb_backends(2), tls=pylb_ca)  # a certificate for localhost, 127.0.0.1, ::1
    assert lb.url.startswith("https://")
    with httpx.Client(verify=trusting(pylb_ca)) as client:
        assert {client.get(lb.url).headers["X-Served-By"] for _ in range(2)} == {"backend-1", "backend-2"}
        assert client.get(lb.url).extensions["http_version"] == b"HTTP/1.1"


def test_a_hung_backend_gets_a_504_after_the_server_timeout(
    pylb_backends: BackendFactory, pylb_balancer: BalancerFactory
) -> None:
    (hung,) = pylb_backends(1)
    lb = pylb_balancer([hung], timeouts=pylb.Timeouts(server=0.5))
    with lb.fault(hung, Timeout()), httpx.Client() as client:  # nothing comes back while the block lasts
        assert client.get(lb.url).status_code == 504


def test_a_reset_backend_gets_a_502(pylb_backends: BackendFactory, pylb_balancer: BalancerFactory) -> None:
    (flaky,) = pylb_backends(1)
    lb = pylb_balancer([flaky])
    with httpx.Client() as client:
        with lb.fault(flaky, ResetPeer()):
            assert client.get(lb.url).status_code == 502
        assert client.get(lb.url).status_code == 200


def test_a_body_cut_short_is_an_error_never_a_short_success(
    pylb_backends: BackendFactory, pylb_balancer: BalancerFactory
) -> None:
    (big,) = pylb_backends(1)
    big.respond(body=b"z" * 200_000)
    lb = pylb_balancer([big])
    with httpx.Client() as client:
        with lb.fault(big, LimitData(10_000)), pytest.raises(httpx.HTTPError):
            client.get(lb.url)
        big.respond(body=b"z" * 1000, close_after=100, times=1)  # the backend itself dies mid-body
        with pytest.raises(httpx.HTTPError):
            client.get(lb.url)
        assert len(client.get(lb.url).content) == 200_000  # the standing answer again
