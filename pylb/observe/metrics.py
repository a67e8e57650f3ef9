"""Prometheus metrics: the statistics as ``/metrics`` shows them.

Owns: ``Metrics``, one ``prometheus_client.CollectorRegistry`` per balancer
(several balancers in one process never share a metric) whose collector
turns the statistics (``pylb.observe.stats.present``: with workers, already
summed over them) into metric families at each scrape, and the text of a
scrape (``render``). Must not know: sockets, how the statistics are gathered.

Names follow HAProxy's own exporter where one exists (``*_http_responses_total``
with a ``code`` label of 1xx...5xx, ``*_current_sessions``-like gauges as
``*_in_flight``); ``METRICS`` lists them all, for the docs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from pylb.observe.stats import BOUNDS, CLASSES, EXPOSED, KINDS

METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("pylb_up", "gauge", "", "1 while pylb serves, 0 while it drains"),
    ("pylb_workers", "gauge", "", "worker processes whose figures are summed here"),
    ("pylb_uptime_seconds", "gauge", "", "seconds since pylb started"),
    ("pylb_connections", "gauge", "", "client connections open"),
    ("pylb_listener_requests_total", "counter", "listener", "requests (TCP: connections) a listener took"),
    ("pylb_listener_http_responses_total", "counter", "listener, code", "answers by class: 1xx...5xx, other"),
    ("pylb_listener_errors_total", "counter", "listener, kind", "errors by class (see the docs)"),
    ("pylb_listener_bytes_in_total", "counter", "listener", "bytes from clients"),
    ("pylb_listener_bytes_out_total", "counter", "listener", "bytes to clients"),
    ("pylb_monitor_requests_total", "counter", "listener", "requests for MONITOR_URI"),
    ("pylb_service_backends", "gauge", "service", "backends of the service"),
    ("pylb_service_backends_up", "gauge", "service", "backends of the service taking requests"),
    ("pylb_service_in_flight", "gauge", "service", "requests in flight to the service"),
    ("pylb_service_http_responses_total", "counter", "service, code", "answers by class"),
    ("pylb_service_errors_total", "counter", "service, kind", "errors by class"),
    ("pylb_service_bytes_in_total", "counter", "service", "bytes from clients"),
    ("pylb_service_bytes_out_total", "counter", "service", "bytes to clients"),
    ("pylb_service_retries_total", "counter", "service", "other connections or backends tried"),
    ("pylb_service_response_seconds", "histogram", "service", "time from a request's first byte to its answer's last"),
    ("pylb_backend_up", "gauge", "service, backend, name", "1 while it takes requests (healthy, not draining)"),
    ("pylb_backend_draining", "gauge", "service, backend, name", "1 while the backend drains (it left the pool)"),
    ("pylb_backend_in_flight", "gauge", "service, backend, name", "requests in flight to the backend"),
    ("pylb_backend_requests_total", "counter", "service, backend, name", "requests sent to the backend (tries)"),
    ("pylb_backend_failures_total", "counter", "service, backend, name", "failed connects or answers"),
    ("pylb_backend_http_responses_total", "counter", "service, backend, name, code", "answers by class"),
    ("pylb_backend_response_seconds", "histogram", "service, backend, name", "as the service's, per backend"),
    ("pylb_errors_total", "counter", "kind", "errors by class, every listener"),
    ("pylb_events_total", "counter", "kind", "discovery and health events (backends added, removed, up, down...)"),
    ("pylb_discovery_faults_total", "counter", "", "discovery errors (the engine unreachable...)"),
)


class _Collector(Collector):
    def __init__(self) -> None:
        self.data: Mapping[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        yield from families(self.data)


class Metrics:
    """One registry for one balancer; ``render(statistics)`` is a scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = _Collector()
        self.registry.register(self._collector)

    def render(self, statistics: Mapping[str, Any]) -> bytes:
        self._collector.data = statistics
        try:
            return generate_latest(self.registry)
        finally:
            self._collector.data = {}


def _gauge(name: str, help_text: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=list(labels))


def _counter(name: str, help_text: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, labels=list(labels))


def _histogram(name: str, help_text: str, labels: Sequence[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, help_text, labels=list(labels))


def _buckets(counts: Sequence[int]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets at the EXPOSED bounds (``+Inf`` last), and an
    estimate of the sum (each sample at its bucket's middle)."""
    cumulative = 0
    at: dict[float, int] = {}
    total_sum = 0.0
    for i, n in enumerate(counts):
        cumulative += n
        if i < len(BOUNDS):
            at[BOUNDS[i]] = cumulative
            low = BOUNDS[i - 1] if i else 0.0
            total_sum += n * (low + BOUNDS[i]) / 2
        else:
            total_sum += n * BOUNDS[-1]
    buckets = [(floatToGoString(bound), float(at[bound])) for bound in EXPOSED]  # type: ignore[no-untyped-call]
    buckets.append(("+Inf", float(cumulative)))
    return buckets, total_sum


def families(data: Mapping[str, Any]) -> Iterator[Metric]:
    """The metric families of the statistics ``data`` (METRICS)."""
    if not data:
        return
    helps = {name: help_text for name, _, _, help_text in METRICS}
    up = _gauge("pylb_up", helps["pylb_up"])
    up.add_metric([], 0 if data["state"] == "draining" else 1)
    yield up
    scalars = (("pylb_workers", "workers"), ("pylb_uptime_seconds", "uptime"), ("pylb_connections", "connections"))
    for name, key in scalars:
        gauge = _gauge(name, helps[name])
        gauge.add_metric([], data[key])
        yield gauge

    listeners = data["listeners"]
    yield from _per(listeners, "pylb_listener", ["listener"], lambda row: [row["name"]], helps, histogram=False)
    monitor = _counter("pylb_monitor_requests", helps["pylb_monitor_requests_total"], ["listener"])
    for row in listeners:
        monitor.add_metric([row["name"]], row["monitor"])
    requests = _counter("pylb_listener_requests", helps["pylb_listener_requests_total"], ["listener"])
    for row in listeners:
        requests.add_metric([row["name"]], row["requests"])
    yield requests
    yield monitor

    services = data["services"]
    gauges = {
        "backends": _gauge("pylb_service_backends", helps["pylb_service_backends"], ["service"]),
        "up": _gauge("pylb_service_backends_up", helps["pylb_service_backends_up"], ["service"]),
        "in_flight": _gauge("pylb_service_in_flight", helps["pylb_service_in_flight"], ["service"]),
    }
    for row in services:
        for key, gauge in gauges.items():
            gauge.add_metric([row["name"]], row[key])
    yield from gauges.values()
    yield from _per(services, "pylb_service", ["service"], lambda row: [row["name"]], helps, histogram=True)

    backends = data["backends"]
    labels = ["service", "backend", "name"]

    def backend_labels(row: Mapping[str, Any]) -> list[str]:
        return [row["service"], row["address"], row["name"]]

    backend_gauges = {
        "up": _gauge("pylb_backend_up", helps["pylb_backend_up"], labels),
        "draining": _gauge("pylb_backend_draining", helps["pylb_backend_draining"], labels),
        "in_flight": _gauge("pylb_backend_in_flight", helps["pylb_backend_in_flight"], labels),
    }
    requests = _counter("pylb_backend_requests", helps["pylb_backend_requests_total"], labels)
    failures = _counter("pylb_backend_failures", helps["pylb_backend_failures_total"], labels)
    for row in backends:
        values = backend_labels(row)
        backend_gauges["up"].add_metric(values, 1 if row["state"] == "up" else 0)
        backend_gauges["draining"].add_metric(values, 1 if row["state"] == "draining" else 0)
        backend_gauges["in_flight"].add_metric(values, row["in_flight"])
        requests.add_metric(values, row["requests"])
        failures.add_metric(values, row["failures"])
    yield from backend_gauges.values()
    yield requests
    yield failures
    responses = _counter("pylb_backend_http_responses", helps["pylb_backend_http_responses_total"], [*labels, "code"])
    latency = _histogram("pylb_backend_response_seconds", helps["pylb_backend_response_seconds"], labels)
    for row in backends:
        values = backend_labels(row)
        for code in CLASSES:
            responses.add_metric([*values, code], row["responses"][code])
        buckets, total = _buckets(row["latency"]["counts"])
        latency.add_metric(values, buckets, total)
    yield responses
    yield latency

    errors = _counter("pylb_errors", helps["pylb_errors_total"], ["kind"])
    for kind in KINDS:
        errors.add_metric([kind], data["totals"]["errors"][kind])
    yield errors
    events = _counter("pylb_events", helps["pylb_events_total"], ["kind"])
    for kind, count in sorted(data.get("event_counts", {}).items()):
        events.add_metric([kind], count)
    yield events
    faults = _counter("pylb_discovery_faults", helps["pylb_discovery_faults_total"])
    faults.add_metric([], data.get("event_counts", {}).get("fault", 0))
    yield faults


def _per(
    rows: Sequence[Mapping[str, Any]],
    prefix: str,
    labels: list[str],
    values: Any,
    helps: Mapping[str, str],
    histogram: bool,
) -> Iterator[Metric]:
    """The figures every listener and service has: responses and errors by
    class, bytes, (retries and latency for services)."""
    responses = _counter(f"{prefix}_http_responses", helps[f"{prefix}_http_responses_total"], [*labels, "code"])
    errors = _counter(f"{prefix}_errors", helps[f"{prefix}_errors_total"], [*labels, "kind"])
    bytes_in = _counter(f"{prefix}_bytes_in", helps[f"{prefix}_bytes_in_total"], labels)
    bytes_out = _counter(f"{prefix}_bytes_out", helps[f"{prefix}_bytes_out_total"], labels)
    for row in rows:
        row_labels = values(row)
        for code in CLASSES:
            responses.add_metric([*row_labels, code], row["responses"][code])
        for kind in KINDS:
            errors.add_metric([*row_labels, kind], row["errors"][kind])
        bytes_in.add_metric(row_labels, row["bytes_in"])
        bytes_out.add_metric(row_labels, row["bytes_out"])
    yield from (responses, errors, bytes_in, bytes_out)
    if histogram:
        retries = _counter(f"{prefix}_retries", helps[f"{prefix}_retries_total"], labels)
        latency = _histogram(f"{prefix}_response_seconds", helps[f"{prefix}_response_seconds"], labels)
        for row in rows:
            retries.add_metric(values(row), row["retries"])
            buckets, total = _buckets(row["latency"]["counts"])
            latency.add_metric(values(row), buckets, total)
        yield retries
        yield latency
