"""The pytest plugin, as a user's test suite sees it.

Each test writes a user's test file and runs pytest on it in-process
(``pytester``): no conftest and no ``-p`` option, so the fixtures come from
the ``pytest11`` entry point that ``pip install`` registered.
"""

from __future__ import annotations

import json
import socket

import httpcore  # noqa: F401  imported before pytester's in-process runs, which forget modules first imported inside them
import pytest

pytest_plugins = ["pytester"]


def refused(url: str) -> bool:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_plugin_is_registered_by_its_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "plugins:*pylb-*",  # the distribution's entry point, as pytest lists it
            "*fixtures defined from pylb.testing.plugin*",
            "pylb_ca -- *",
            "*",
            "*",
            "pylb_backends -- *",
        ]
    )
    result.stdout.fnmatch_lines(["pylb_balancer -- *"])


def test_a_synchronous_test_suite_with_urllib(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
        import json
        import urllib.error
        import urllib.request

        import pytest

        from pylb.testing.faults import Down


        def get(url):
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.headers["X-Served-By"]


        def test_roundrobin_and_who_served(pylb_backends, pylb_balancer):
            backends = pylb_backends(2)
            lb = pylb_balancer(backends)
            assert [get(lb.url)[1] for _ in range(4)] == ["backend-1", "backend-2"] * 2
            assert lb.served == ["backend-1", "backend-2"] * 2
            assert len(backends[0].requests) == 2
            with open("urls.json", "w") as f:
                json.dump([lb.url, backends[0].url, backends[1].url], f)


        def test_programmed_answers(pylb_backends, pylb_balancer):
            (backend,) = pylb_backends(1)
            lb = pylb_balancer([backend])
            backend.respond(503, body="busy", times=1)
            with pytest.raises(urllib.error.HTTPError) as caught:
                get(lb.url)
            assert caught.value.code == 503
            assert get(lb.url) == (200, "backend-1")


        def test_a_backend_down(pylb_backends, pylb_balancer):
            from pylb import HealthCheck

            one, two = pylb_backends(2)
            lb = pylb_balancer([one, two], health=HealthCheck(inter=0.2, rise=1, fall=2))
            with lb.fault(one, Down()):
                assert {get(lb.url)[1] for _ in range(3)} == {"backend-2"}
                lb.wait_until(lambda stats: not stats["backends"]["backend-1"]["healthy"])
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    urls = json.loads((pytester.path / "urls.json").read_text())
    assert all(refused(url) for url in urls)  # the fixtures stopped what they started


def test_https_with_the_ca_fixture_and_httpx(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_tls="""
        import ssl

        import httpx


        def test_https(pylb_ca, pylb_backends, pylb_balancer):
            lb = pylb_balancer(pylb_backends(1), tls=pylb_ca)
            assert lb.url.startswith("https://")
            context = ssl.create_default_context()
            pylb_ca.configure_trust(context)
            with httpx.Client(verify=context) as client:
                assert client.get(lb.url).headers["X-Served-By"] == "backend-1"
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_failing_user_test_still_stops_everything(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fails="""
        import json


        def test_fails(pylb_backends, pylb_balancer):
            lb = pylb_balancer(pylb_backends(1))
            with open("urls.json", "w") as f:
                json.dump([lb.url], f)
            assert lb.served == ["nobody"]
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert [] == ['nobody']*"])
    assert refused(json.loads((pytester.path / "urls.json").read_text())[0])


def test_the_synchronous_fixtures_work_in_a_trio_test_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mixed="""
        import httpx
        import pytest

        from pylb.testing.faults import Latency


        @pytest.mark.trio
        async def test_mixed(pylb_backends, pylb_balancer):
            lb = pylb_balancer(pylb_backends(1))  # its own trio thread, beside the test's loop
            async with httpx.AsyncClient() as client:
                assert (await client.get(lb.url)).status_code == 200
            with lb.fault("backend-1", Latency(1)):
                assert lb.statistics()["backends"]["backend-1"]["faults"]
            assert lb.served == ["backend-1"]
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
