"""A user's synchronous tests, standard library only: urllib and pylb's fixtures.

Run: pip install 'pylb[testing]' && python -m pytest examples/
No trio, no event loop in sight: the fixtures run the balancer and the
backends in a thread of their own and stop them when each test ends.
"""

import urllib.error
import urllib.request

import pytest

import pylb
from pylb.testing import BackendFactory, BalancerFactory
from pylb.testing.faults import Down, Latency


def get(url: str) -> tuple[int, str]:
    """Status and the name of the backend that answered."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("X-Served-By", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("X-Served-By", "")


def test_requests_alternate_between_the_backends(pylb_backends: BackendFactory, pylb_balancer: BalancerFactory) -> None:
    backends = pylb_backends(3)
    lb = pylb_balancer(backends)
    assert [get(lb.url)[1] for _ in range(6)] == ["backend-1", "backend-2", "backend-3"] * 2
    assert lb.served == ["backend-1", "backend-2", "backend-3"] * 2  # pylb's own record, no log parsing
    assert [len(b.requests) for b in backends] == [2, 2, 2]


def test_my_client_retries_a_503(pylb_backends: BackendFactory, pylb_balancer: BalancerFactory) -> None:
    (api,) = pylb_backends(1)
    lb = pylb_balancer([api])
    api.respond(503, {"Retry-After": "0"}, "try again", times=1)  # the next request only

    def client_call() -> int:  # the code under test: one retry on 503
        status, _ = get(lb.url)
        return get(lb.url)[0] if status == 503 else status

    assert client_call() == 200
    assert [r.status for r in lb.records] == [503, 200]


def test_a_backend_going_down_is_invisible_to_clients(
    pylb_backends: BackendFactory, pylb_balancer: BalancerFactory
) -> None:
    one, two = pylb_backends(2)
    lb = pylb_balancer([one, two], health=pylb.HealthCheck(inter=0.2, rise=1, fall=2))
    with lb.fault(one, Down()):  # its connections close, new ones are refused
        assert {get(lb.url) for _ in range(4)} == {(200, "backend-2")}
        lb.wait_until(lambda stats: not stats["backends"]["backend-1"]["healthy"])
    lb.wait_until(lambda stats: stats["backends"]["backend-1"]["healthy"])  # back when the block ends


@pytest.mark.parametrize("delay_ms", [100, 300])
def test_a_slow_backend_is_slow_through_pylb(
    delay_ms: int, pylb_backends: BackendFactory, pylb_balancer: BalancerFactory
) -> None:
    import time

    (slow,) = pylb_backends(1)
    lb = pylb_balancer([slow])
    with lb.fault(slow, Latency(delay_ms)):  # on the bytes the backend sends back
        start = time.monotonic()
        assert get(lb.url) == (200, "backend-1")
        assert time.monotonic() - start >= delay_ms / 1000
