"""The stats port as a user and Prometheus see it: /metrics, /stats.json, Basic auth, workers.

Metrics are scraped over HTTP and parsed with ``prometheus_client.parser``;
with two workers, the figures are the sum of both: every request is counted
once whichever worker served it (the access log says which: each worker's
request ids have their own prefix).
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.observe.kit import free_port, get, hello, pylb

LISTENING = r"listening on http://127\.0\.0\.1:(\d+)"


def scrape(port: int, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, answer_headers, body = get(f"http://127.0.0.1:{port}/metrics", headers)
    assert status == 200 and answer_headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, **labels: str) -> float:
    return samples[metric, tuple(sorted(labels.items()))]


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_count_every_request_once_whatever_the_workers(workers: int) -> None:
    stats = free_port()
    requests = 40
    with hello("web1") as one, hello("web2") as two, pylb(
        "--workers", str(workers), "--bind", "127.0.0.1:0",
        "--backend", f"127.0.0.1:{one.port}", "--backend", f"127.0.0.1:{two.port}",
        LOG_FORMAT="json", STATS_PORT=f"127.0.0.1:{stats}",
    ) as lb:  # fmt: skip
        for i in range(requests):
            assert get(f"{lb.url}/{i}")[0] == 200
        assert get(f"{lb.url}/x", {"Host": "bad host"})[0] == 400
        samples = scrape(stats)
        log = [json.loads(line) for line in lb.lines(requests + 1)]
    listener = f"http:{lb.port}"
    assert value(samples, "pylb_workers") == workers
    assert value(samples, "pylb_listener_requests_total", listener=listener) == requests + 1
    assert value(samples, "pylb_listener_http_responses_total", listener=listener, code="2xx") == requests
    assert value(samples, "pylb_listener_http_responses_total", listener=listener, code="4xx") == 1
    assert value(samples, "pylb_listener_errors_total", listener=listener, kind="request") == 1
    assert value(samples, "pylb_service_http_responses_total", service="default", code="2xx") == requests
    assert value(samples, "pylb_service_response_seconds_count", service="default") == requests
    assert value(samples, "pylb_service_response_seconds_bucket", service="default", le="+Inf") == requests
    assert value(samples, "pylb_service_backends_up", service="default") == 2
    served = [
        value(samples, "pylb_backend_http_responses_total", service="default", backend=f"127.0.0.1:{b.port}",
              name="", code="2xx")
        for b in (one, two)
    ]  # fmt: skip
    assert sum(served) == requests and all(served)  # round robin over both backends
    for b in (one, two):
        labels = {"service": "default", "backend": f"127.0.0.1:{b.port}", "name": ""}
        assert value(samples, "pylb_backend_up", **labels) == 1
    # Which worker served each request: its request id's prefix. With two workers both served
    # some, and the metrics are their sum.
    by_worker = Counter(entry["request_id"].rsplit("-", 1)[0] for entry in log)
    assert len(by_worker) == workers and sum(by_worker.values()) == requests + 1


def test_stats_json_and_metrics_need_the_password_when_one_is_set() -> None:
    stats = free_port()
    with hello("web1") as web, pylb(
        "--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}",
        STATS_PORT=f"127.0.0.1:{stats}", STATS_AUTH="admin:hunter2-s3cret",
    ) as lb:  # fmt: skip
        for path in ("/", "/stats.json", "/metrics"):
            status, headers, _ = get(f"http://127.0.0.1:{stats}{path}")
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
        wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}
        assert get(f"http://127.0.0.1:{stats}/stats.json", wrong)[0] == 401
        right = {"Authorization": "Basic " + base64.b64encode(b"admin:hunter2-s3cret").decode()}
        assert get(f"{lb.url}/")[0] == 200
        status, _, body = get(f"http://127.0.0.1:{stats}/stats.json", right)
        assert status == 200
        data = json.loads(body)
        assert data["requests"] == 1 and data["state"] == "serving" and data["workers"] == 1
        assert [b["state"] for b in data["backends"]] == ["up"]
        assert scrape(stats, right)["pylb_up", ()] == 1
        page = get(f"http://127.0.0.1:{stats}/", right)
        assert page[0] == 200 and b"stats.json" in page[2]
        assert b"http://" not in page[2] and b"https://" not in page[2]  # nothing fetched from elsewhere
        lb.proc.terminate()
        lb.proc.wait(15)
        assert lb.proc.stderr is not None
        assert "hunter2-s3cret" not in lb.proc.stderr.read()


def test_a_stats_port_in_use_is_one_line_and_exit_2() -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "pylb", "--workers", "1", "--bind", "127.0.0.1:0", "--backend", "127.0.0.1:9",
             "--stats-port", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("pylb: error: the stats port http://127.0.0.1:") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


async def test_every_metric_is_documented_and_served() -> None:
    """docs/observability.md's table is METRICS, and a scrape serves each of them."""
    from pathlib import Path

    import httpx

    import pylb
    from pylb.observe.metrics import METRICS
    from pylb.testing import open_hellos

    page = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    documented = set(re.findall(r"^\| `(pylb_\w+)` \|", page, re.MULTILINE))
    assert documented == {name for name, *_ in METRICS}
    async with open_hellos(1) as hellos, pylb.open_balancer([hellos[0].backend], stats="127.0.0.1:0") as lb:
        async with httpx.AsyncClient() as client:
            assert (await client.get(lb.url)).status_code == 200
            text = (await client.get(f"{lb.stats_url}/metrics")).text
    served = {family.name for family in text_string_to_metric_families(text)}
    for name, kind, _, _ in METRICS:
        assert (name.removesuffix("_total") if kind == "counter" else name) in served, name
