"""The benchmark cases, their targets, and how one case is run against one proxy.

Owns: the table of cases (what load, which mode, TLS or not, which targets), the metric names, and
the measurement of a case against every proxy: start a fresh process of each, check it answers
(and with TLS, what it negotiates), warm it up, then measure CPU time, memory and wrk's figures
(or, for the latency cases, one user's requests timed one by one: latency.py) in short slices that
alternate between the proxies (HAProxy, pylb, pylb, HAProxy, ...), so that a host getting faster
or slower during the run weighs on both alike; ask HAProxy what it did (`show info`: splicing,
TLS resumption); stop them.
Knows nothing of report formats. Invariants: each (case, proxy) gets a fresh proxy process, stopped
before the function returns; CPU time is counted over the measured runs only (not the warm-up);
an unavailable proxy or a failed run is an `Outcome` with a reason, never an exception.
"""

from __future__ import annotations

import functools
import json
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmarks import latency, tls, wrk
from benchmarks.latency import Kind as LatencyKind
from benchmarks.procs import (
    LOAD_CPU,
    PROXY_CPU,
    CoreTimes,
    Proc,
    Procs,
    StartError,
    core_times,
    cpu_seconds,
    open_fds,
    tree_kib,
)
from benchmarks.servers import (
    BIG_BYTES,
    SMALL_BODY,
    UPLOAD_BYTES,
    Backend,
    Frontend,
    Mode,
    ProxyUnavailable,
    PylbInfo,
    Splice,
    backend_requests,
    haproxy_info,
    http_get,
    start_proxy,
)

PROXIES = ("haproxy", "pylb")
WARMUP_S = 1
SLICES = 5
"""Measured wrk runs per proxy and case (`slice_seconds` each), alternating between the proxies."""


def slice_seconds(duration_s: int) -> int:
    """One slice's wrk run for `--duration`: a fifth of it, rounded, at least 1 s."""
    return max(1, round(duration_s / SLICES))


LATENCY_MAX_PER_SLICE = 200
"""Latency cases: at most this many requests per slice (and at most the slice's seconds)..."""
LATENCY_MIN_PER_SLICE = 40
"""... but at least this many (a slow answer, e.g. 45 ms, still gives 200 samples per proxy),
within LATENCY_HARD_S more seconds."""
LATENCY_HARD_S = 10.0
LATENCY_WARMUP = 10
IDLE_SETTLE_S = 1.0
IDLE_DEADLINE_S = 120.0
SHARED_CORE_PCT = 5.0
"""Above this share of the proxy's core going to other processes (or stolen), a run is flagged."""
MIB = 1024 * 1024

# metric key -> column label. Ratios are pylb / HAProxy for each.
METRICS: dict[str, str] = {
    "req_s": "req/s",
    "mib_s": "MiB/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "cpu_us_per_req": "CPU us/req",
    "peak_rss_mib": "peak RSS MiB",
    "kib_per_conn": "KiB/idle conn",
    "first_p50_ms": "first byte p50 ms",
    "first_p99_ms": "first byte p99 ms",
}
LOAD_METRICS = ("req_s", "mib_s", "p50_ms", "p99_ms", "cpu_us_per_req", "peak_rss_mib", "kib_per_conn")
"""The columns of the load and idle cases."""
LATENCY_METRICS = ("first_p50_ms", "first_p99_ms", "p50_ms", "p99_ms", "cpu_us_per_req")
"""The columns of the latency cases, where p50/p99 are of the total time of one request."""


@dataclass(frozen=True)
class Target:
    """A goal for pylb on one metric: on the pylb/HAProxy ratio, or on pylb's own value; with
    `plus`, on pylb's value against HAProxy's times `value` plus `plus` (in the metric's unit:
    "within 2x HAProxy's + 1 ms")."""

    metric: str
    op: Literal[">=", "<="]
    value: float
    absolute: bool = False
    plus: float = 0.0

    def describe(self) -> str:
        if self.absolute:
            return f"pylb {METRICS[self.metric]} {self.op} {self.value:g}"
        if self.plus:
            return f"{METRICS[self.metric]} {self.op} {self.value:g}x + {self.plus:g}"
        return f"{METRICS[self.metric]} {self.op} {self.value:g}x"

    def bound(self, base: float | None) -> float | None:
        """The value pylb's figure is held to, given HAProxy's (`base`); None if it needs one and has none."""
        if self.absolute:
            return self.value
        return None if base is None else base * self.value + self.plus

    def met(self, ratio: float | None, pylb_value: float | None, base: float | None = None) -> bool | None:
        """Whether the target is met; None when there is nothing to judge."""
        if self.plus:
            bound = self.bound(base)
            if pylb_value is None or bound is None:
                return None
            return pylb_value >= bound if self.op == ">=" else pylb_value <= bound
        actual = pylb_value if self.absolute else ratio
        if actual is None:
            return None
        return actual >= self.value if self.op == ">=" else actual <= self.value


@dataclass(frozen=True)
class Case:
    name: str
    mode: Mode
    measures: str
    path: str = "/"
    connections: int = 50
    headers: tuple[str, ...] = ()
    upload_bytes: int = 0
    idle_count: int = 0  # > 0: the idle-connections case instead of a wrk run
    varied: bool = False  # every request head differs (query string), and every response head (X-Request-Id)
    browser: bool = False  # browser-like request heads, no two alike (wrk.browser_script)
    tls: bool = False  # both proxies terminate TLS (the run's ECDSA P-256 certificate)
    splice: Splice = "auto"  # HAProxy's splicing: automatic, or forced for every transfer
    latency: LatencyKind | None = None  # one user's requests timed one by one instead of a wrk run
    access_log: bool = False  # both proxies write an access log line per request (servers.Frontend)
    targets: tuple[Target, ...] = ()

    @property
    def response_bytes(self) -> int:
        if self.path.startswith("/app/"):
            return len(SMALL_BODY)
        sizes = {"/": len(SMALL_BODY), "/varied": len(SMALL_BODY), "/big": BIG_BYTES}
        return sizes.get(self.path, 0)

    @property
    def kind(self) -> Literal["load", "latency", "idle"]:
        return "idle" if self.idle_count else "latency" if self.latency else "load"

    @property
    def bulk(self) -> bool:
        """Large bodies move: whether HAProxy spliced them is worth saying."""
        return self.path == "/big" or bool(self.upload_bytes) or self.splice == "forced"

    @property
    def streamed(self) -> bool:
        """Its backend is `stream_backend.py` (a chunked, paced answer), not the nginx servers."""
        return self.latency == "stream"

    def frontend(self, cert: Path) -> Frontend:
        return Frontend(self.mode, cert if self.tls else None, self.splice, access_log=self.access_log)


CASES: tuple[Case, ...] = (
    Case(
        "small_keepalive",
        "http",
        "100-byte responses over 50 keep-alive connections: per-request overhead",
        targets=(Target("req_s", ">=", 0.5), Target("cpu_us_per_req", "<=", 2.0)),
    ),
    Case(
        "small_varied",
        "http",
        "small_keepalive with no two request heads alike (a counter in the query string) and no two response "
        "heads alike (X-Request-Id): per-request overhead when nothing repeats",
        path="/varied",
        varied=True,
        targets=(Target("req_s", ">=", 0.5), Target("cpu_us_per_req", "<=", 1.5)),
    ),
    Case(
        "browser_varied",
        "http",
        "browser-like keep-alive traffic, 50 connections: about 600 bytes of realistic request headers "
        "(User-Agent, Accept*, Referer, a Cookie and a request id that change every request, a varying path "
        "and query) and a unique X-Request-Id in every answer head; no two heads alike either way",
        path="/app/",
        browser=True,
        targets=(Target("req_s", ">=", 0.7), Target("cpu_us_per_req", "<=", 1.5)),
    ),
    Case(
        "small_keepalive_log",
        "http",
        "small_keepalive with each proxy's access log on, to its standard output (a file here): HAProxy's "
        "`option httplog` capturing Host and X-Request-Id, pylb's LOG_FORMAT=haproxy (the same line; the "
        "image's default). With small_keepalive in the same run, the notes give each proxy's cost of its log",
        access_log=True,
        targets=(Target("req_s", ">=", 0.5), Target("cpu_us_per_req", "<=", 2.0)),
    ),
    Case(
        "small_close",
        "http",
        "100-byte responses, a new client connection per request (Connection: close)",
        headers=("Connection: close",),
        targets=(Target("req_s", ">=", 0.4),),
    ),
    Case(
        "https_keepalive",
        "http",
        "small_keepalive over TLS 1.3: both proxies terminate it with the same ECDSA P-256 certificate",
        tls=True,
        targets=(Target("req_s", ">=", 0.6), Target("cpu_us_per_req", "<=", 2.0)),
    ),
    Case(
        "https_close",
        "http",
        "100-byte responses over TLS 1.3, a new TLS connection per request (Connection: close); wrk resumes "
        "each session with the ticket of the one before, on both proxies",
        tls=True,
        headers=("Connection: close",),
        targets=(Target("req_s", ">=", 0.8),),
    ),
    Case(
        "big_1mib",
        "http",
        "1 MiB responses over 16 keep-alive connections: body streaming throughput",
        path="/big",
        connections=16,
        targets=(Target("mib_s", ">=", 0.8),),
    ),
    Case(
        "upload_10mib",
        "http",
        "10 MiB POST bodies over 8 keep-alive connections: request body streaming",
        path="/upload",
        connections=8,
        upload_bytes=UPLOAD_BYTES,
    ),
    Case(
        "tcp_small",
        "tcp",
        "tcp mode, 100-byte HTTP responses over 50 long-lived connections: small relays",
        targets=(Target("req_s", ">=", 0.85),),
    ),
    Case(
        "tcp_bulk",
        "tcp",
        "tcp mode, 1 MiB HTTP responses over 16 long-lived connections: bulk relay, against HAProxy with forced "
        "splicing (splice-request and splice-response)",
        path="/big",
        connections=16,
        splice="forced",
        targets=(Target("mib_s", ">=", 1.0),),
    ),
    Case(
        "latency_new",
        "http",
        "one user: a new plain connection, one GET (100 B), then the next: first byte after the connect, and "
        "the total from the connect's start",
        latency="new",
    ),
    Case(
        "latency_tls_new",
        "http",
        "one user: a new TLS 1.3 connection (a full handshake), one GET (100 B), from a client with the kernel's "
        "default socket options (Nagle on, as Python's http.client or Java's): the first byte of the answer after "
        "the handshake (a server silent after the client's Finished lets its delayed ACK hold the request), and "
        "the total",
        tls=True,
        latency="new",
        targets=(Target("first_p50_ms", "<=", 2.0, plus=1.0),),
    ),
    Case(
        "latency_keepalive",
        "http",
        "one user: GETs (100 B) one after another on a kept-alive connection",
        latency="keepalive",
    ),
    Case(
        "latency_stream",
        "http",
        "one user: a streamed answer on a kept-alive connection, its backend sending the head, then 10 chunks "
        "of 100 B 5 ms apart: the first body byte, and the last (HAProxy by default holds a body's pieces until "
        "the answer ends; `option http-no-delay` would send each at once)",
        path="/stream",
        latency="stream",
    ),
    Case(
        "idle_10k",
        "http",
        "10,000 idle keep-alive client connections after one request each: memory per connection",
        idle_count=10_000,
        targets=(Target("kib_per_conn", "<=", 10.0, absolute=True),),
    ),
)
CASES_BY_NAME = {case.name: case for case in CASES}


@dataclass
class Outcome:
    """What one (case, proxy) run gave: metrics, or why there are none."""

    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    error: str | None = None
    unavailable: str | None = None

    def summary(self) -> str:
        if self.unavailable:
            return f"n/a ({self.unavailable})"
        if self.error:
            return f"ERROR {self.error.splitlines()[0]}"
        return "  ".join(f"{METRICS[k]}={v:,.4g}" for k, v in self.metrics.items() if k in METRICS)


@dataclass(frozen=True)
class Bench:
    """What every case needs: the started backends, the certificate, and where to put files."""

    procs: Procs
    tmp: Path
    backends: list[Backend]
    duration_s: int
    pylb: PylbInfo
    cert: Path  # the PEM (key and ECDSA P-256 certificate) both proxies serve in the TLS cases
    stream_backends: list[Backend] = field(default_factory=list)  # started when a case needs one

    def backends_for(self, case: Case) -> list[Backend]:
        return self.stream_backends if case.streamed else self.backends


def run_case(case: Case, proxies: list[str], bench: Bench) -> dict[str, Outcome]:
    """Run `case` against a fresh process of each of `proxies`; never raises for a proxy's failure.

    The idle-connections case measures one proxy at a time (alone, as memory is what it measures);
    the others alternate between the proxies in slices (`_measure_slices`, `_measure_latency`).
    """
    if case.idle_count:
        results = {}
        for proxy in proxies:
            started, outcomes = _start([proxy], case, bench)
            try:
                for name, (proc, port) in started.items():
                    outcomes[name] = _guarded(proc, functools.partial(_measure_idle, case, proc, port, bench))
            finally:
                for proc, _ in started.values():
                    bench.procs.stop(proc)
            results.update(outcomes)
        return results
    started, results = _start(proxies, case, bench)
    facts = {proxy: _tls_facts(case, port) for proxy, (_, port) in started.items()}
    try:
        measure = _measure_latency if case.latency else _measure_slices
        results.update(measure(case, started, bench))
        if "haproxy" in started:
            facts["haproxy"].update(_haproxy_facts(case, bench.tmp, started["haproxy"][1]))
    finally:
        for proc, _ in started.values():
            bench.procs.stop(proc)
    for proxy, extra in facts.items():
        results[proxy].info.update(extra)
    return {proxy: results[proxy] for proxy in proxies}


def _start(proxies: list[str], case: Case, bench: Bench) -> tuple[dict[str, tuple[Proc, int]], dict[str, Outcome]]:
    """Start each proxy and check that it answers: (the started ones, outcomes of the others)."""
    started: dict[str, tuple[Proc, int]] = {}
    failed: dict[str, Outcome] = {}
    for proxy in proxies:
        try:
            frontend, backends = case.frontend(bench.cert), bench.backends_for(case)
            proc, port = start_proxy(bench.procs, bench.tmp, proxy, frontend, backends, bench.pylb)
        except ProxyUnavailable as exc:
            failed[proxy] = Outcome(unavailable=str(exc))
            continue
        except StartError as exc:
            failed[proxy] = Outcome(error=str(exc))
            continue
        try:
            _check_answers(case, port)
        except (OSError, ValueError) as exc:
            failed[proxy] = Outcome(error=f"{type(exc).__name__}: {exc}\nproxy log:\n{proc.log_tail()}")
            bench.procs.stop(proc)
            continue
        started[proxy] = (proc, port)
    return started, failed


def _tls_facts(case: Case, port: int) -> dict[str, object]:
    """With TLS: what the proxy negotiates with a default OpenSSL client (tls.probe), for the report."""
    if not case.tls:
        return {}
    try:
        return {"tls": tls.probe(port).as_dict()}
    except OSError as exc:
        return {"tls_probe_error": f"{type(exc).__name__}: {exc}"}


def _haproxy_facts(case: Case, tmp: Path, port: int) -> dict[str, object]:
    """What HAProxy did, from `show info`: with bulk bodies, whether it spliced (it takes pipes only
    to splice: PipesUsed + PipesFree > 0); with TLS, how many sessions it resumed."""
    wanted = []
    if case.bulk:
        wanted += ["PipesUsed", "PipesFree"]
    if case.tls:
        wanted += ["CumSslConns", "SslFrontendSessionReuse_pct"]
    if not wanted:
        return {}
    try:
        info = haproxy_info(tmp, port)
    except OSError as exc:
        return {"haproxy_info_error": f"{type(exc).__name__}: {exc}"}
    return {"haproxy_show_info": {key: info.get(key, "?") for key in wanted}}


def _guarded(proc: Proc, measure: Callable[[], Outcome]) -> Outcome:
    try:
        return measure()
    except (OSError, ValueError, wrk.WrkError, StartError) as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}\nproxy log:\n{proc.log_tail()}")


def _check_answers(case: Case, port: int) -> None:
    if case.latency:
        samples = latency.run(port, kind=case.latency, tls=case.tls, path=case.path, max_samples=1, seconds=30.0)
        if not len(samples):
            raise ValueError(f"GET {case.path} through the proxy: {samples.last_error}")
        return
    path = "/" if case.upload_bytes else case.path
    status, body = http_get(port, path, timeout_s=30.0, tls=case.tls)
    expected = len(SMALL_BODY) if path in ("/", "/varied") else case.response_bytes
    if status != 200 or len(body) != expected:
        raise ValueError(f"GET {path} through the proxy: status {status}, {len(body)} body bytes")


@dataclass(frozen=True)
class WrkLoad:
    """What wrk is given for a case: the URL, the Lua script if any, extra headers."""

    url: str
    script: Path | None
    headers: tuple[str, ...]


def wrk_load(case: Case, port: int, tmp: Path) -> WrkLoad:
    """The wrk load of `case` against a proxy on `port` (its script, if any, written into `tmp`)."""
    script = None
    if case.upload_bytes:
        script = wrk.upload_script(tmp / f"upload-{case.upload_bytes}.lua", case.upload_bytes)
    elif case.varied:
        script = wrk.varied_script(tmp / "varied.lua", case.path)
    elif case.browser:
        script = wrk.browser_script(tmp / "browser.lua", case.path)
    scheme = "https" if case.tls else "http"
    return WrkLoad(f"{scheme}://127.0.0.1:{port}{case.path}", script, case.headers)


def _wrk(case: Case, port: int, bench: Bench, duration_s: int) -> wrk.WrkResult:
    load = wrk_load(case, port, bench.tmp)
    return wrk.run(
        load.url,
        connections=case.connections,
        duration_s=duration_s,
        script=load.script,
        headers=load.headers,
    )


@dataclass
class _Sum:
    """What the slices of one proxy add up to."""

    requests: int = 0
    duration_s: float = 0.0
    moved: int = 0
    cpu_s: float = 0.0
    core: CoreTimes = field(default_factory=lambda: CoreTimes(0.0, 0.0, 0.0))
    socket_errors: int = 0
    non_2xx_3xx: int = 0
    backend_requests: list[int] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


def _measure_slices(case: Case, started: dict[str, tuple[Proc, int]], bench: Bench) -> dict[str, Outcome]:
    """Warm each proxy up, then measure them in SLICES rounds, the order reversed every round.

    Throughput and CPU per request are over all slices together; p50 is the median of the slices'
    medians and p99 the highest of their p99s (wrk reports percentiles per run only).
    """
    outcomes: dict[str, Outcome] = {}
    sums = {proxy: _Sum(backend_requests=[0] * len(bench.backends)) for proxy in started}
    for proxy, (proc, port) in started.items():
        try:
            _wrk(case, port, bench, WARMUP_S)
        except (OSError, ValueError, wrk.WrkError) as exc:
            outcomes[proxy] = Outcome(error=f"{type(exc).__name__}: {exc}\nproxy log:\n{proc.log_tail()}")
    seconds = slice_seconds(bench.duration_s)
    order = [proxy for proxy in started if proxy not in outcomes]
    for round_ in range(SLICES):
        for proxy in order if round_ % 2 == 0 else order[::-1]:
            if proxy in outcomes:
                continue
            proc, port = started[proxy]
            try:
                _measure_slice(case, proc, port, bench, seconds, sums[proxy])
            except (OSError, ValueError, wrk.WrkError, StartError) as exc:
                outcomes[proxy] = Outcome(error=f"{type(exc).__name__}: {exc}\nproxy log:\n{proc.log_tail()}")
    for proxy, total in sums.items():
        if proxy not in outcomes:
            outcomes[proxy] = _outcome(total, started[proxy][0], case)
    return outcomes


def _measure_slice(case: Case, proc: Proc, port: int, bench: Bench, seconds: int, total: _Sum) -> None:
    counts = [backend_requests(b) for b in bench.backends]
    cpu, core = cpu_seconds(proc.pid), core_times(PROXY_CPU)
    result = _wrk(case, port, bench, seconds)
    cpu, core = cpu_seconds(proc.pid) - cpu, core_times(PROXY_CPU) - core
    if proc.popen.poll() is not None:
        raise StartError(proc.name, f"exited with {proc.popen.returncode} during the run", None)
    counts = [backend_requests(b) - n - 1 for b, n in zip(bench.backends, counts, strict=True)]
    total.requests += result.requests
    total.duration_s += result.duration_s
    total.moved += result.bytes_read + result.requests * case.upload_bytes
    total.cpu_s += cpu
    total.core = total.core + core
    total.socket_errors += result.socket_errors
    total.non_2xx_3xx += result.non_2xx_3xx
    total.backend_requests = [a + b for a, b in zip(total.backend_requests, counts, strict=True)]
    total.p50.append(result.latency_ms[50])
    total.p99.append(result.latency_ms[99])


def _outcome(total: _Sum, proc: Proc, case: Case) -> Outcome:
    duration = max(total.duration_s, 1e-9)
    metrics = {
        "req_s": total.requests / duration,
        "mib_s": total.moved / duration / MIB,
        "p50_ms": statistics.median(total.p50),
        "p99_ms": max(total.p99),
        "cpu_us_per_req": total.cpu_s / max(total.requests, 1) * 1e6,
        "peak_rss_mib": tree_kib(proc.pid, "VmHWM") / 1024,
        "errors": float(total.socket_errors + total.non_2xx_3xx),
    }
    info: dict[str, object] = {
        "requests": total.requests,
        "duration_s": round(total.duration_s, 2),
        "slices": len(total.p50),
        "cpu_s": total.cpu_s,
        "socket_errors": total.socket_errors,
        "non_2xx_3xx": total.non_2xx_3xx,
        "backend_requests": total.backend_requests,
        "p50_ms_per_slice": total.p50,
        "p99_ms_per_slice": total.p99,
        **_sharing(total.cpu_s, total.core),
    }
    return Outcome(metrics, info)


def _sharing(proxy_cpu_s: float, core: CoreTimes, flag: bool = True) -> dict[str, object]:
    """How much of the proxy's core went to anything else (other processes, the hypervisor).

    With `flag`, a share above SHARED_CORE_PCT adds a note: the throughput figures are noisy.
    """
    total = max(core.total, 1e-9)
    other_pct = max(0.0, core.busy - proxy_cpu_s) / total * 100
    steal_pct = core.steal / total * 100
    info: dict[str, object] = {"proxy_core_other_pct": round(other_pct, 1), "steal_pct": round(steal_pct, 1)}
    if flag and other_pct + steal_pct > SHARED_CORE_PCT:
        info["note"] = (
            f"core {PROXY_CPU} was shared: {other_pct:.0f}% other processes, {steal_pct:.0f}% stolen; figures are noisy"
        )
    return info


def _measure_latency(case: Case, started: dict[str, tuple[Proc, int]], bench: Bench) -> dict[str, Outcome]:
    """One user's requests, timed one by one (latency.py), in slices alternating between the
    proxies as `_measure_slices` does; medians and 99th percentiles over all the slices' samples."""
    assert case.latency is not None
    kind = case.latency
    outcomes: dict[str, Outcome] = {}
    samples = {proxy: latency.Samples() for proxy in started}
    cpu_s = dict.fromkeys(started, 0.0)
    core = {proxy: CoreTimes(0.0, 0.0, 0.0) for proxy in started}
    seconds = slice_seconds(bench.duration_s)
    for _, port in started.values():
        latency.run(port, kind=kind, tls=case.tls, path=case.path, max_samples=LATENCY_WARMUP, seconds=WARMUP_S)
    order = list(started)
    for round_ in range(SLICES):
        for proxy in order if round_ % 2 == 0 else order[::-1]:
            proc, port = started[proxy]
            cpu_before, core_before = cpu_seconds(proc.pid), core_times(PROXY_CPU)
            got = latency.run(
                port,
                kind=kind,
                tls=case.tls,
                path=case.path,
                max_samples=LATENCY_MAX_PER_SLICE,
                seconds=seconds,
                min_samples=LATENCY_MIN_PER_SLICE,
                hard_seconds=seconds + LATENCY_HARD_S,
            )
            cpu_s[proxy] += cpu_seconds(proc.pid) - cpu_before
            core[proxy] = core[proxy] + (core_times(PROXY_CPU) - core_before)
            samples[proxy].extend(got)
    for proxy, (proc, _) in started.items():
        got = samples[proxy]
        if not len(got):
            error = f"no answer in {got.errors} tries: {got.last_error}"
            outcomes[proxy] = Outcome(error=f"{error}\nproxy log:\n{proc.log_tail()}")
            continue
        figures = latency.summary(got)
        metrics = {
            "first_p50_ms": figures["first_p50_ms"],
            "first_p99_ms": figures["first_p99_ms"],
            "p50_ms": figures["total_p50_ms"],
            "p99_ms": figures["total_p99_ms"],
            "cpu_us_per_req": cpu_s[proxy] / len(got) * 1e6,
            "peak_rss_mib": tree_kib(proc.pid, "VmHWM") / 1024,
            "errors": float(got.errors),
        }
        info: dict[str, object] = {
            "samples": len(got),
            "first_ms_min_max": [round(min(got.first_ms), 3), round(max(got.first_ms), 3)],
            "total_ms_min_max": [round(min(got.total_ms), 3), round(max(got.total_ms), 3)],
            "cpu_s": cpu_s[proxy],
            **({"last_error": got.last_error} if got.errors else {}),
            **_sharing(cpu_s[proxy], core[proxy]),
        }
        outcomes[proxy] = Outcome(metrics, info)
    return outcomes


def _read_json_line(proc: Proc, timeout_s: float) -> dict[str, float]:
    stdout = proc.popen.stdout
    assert stdout is not None
    ready, _, _ = select.select([stdout], [], [], timeout_s)
    line = stdout.readline() if ready else b""
    if not line:
        raise StartError(proc.name, f"no report within {timeout_s:.0f}s:\n{proc.log_tail()}", None)
    data: dict[str, float] = json.loads(line)
    return data


def _measure_idle(case: Case, proc: Proc, port: int, bench: Bench) -> Outcome:
    _wrk(case, port, bench, WARMUP_S)
    time.sleep(IDLE_SETTLE_S)
    rss_before = tree_kib(proc.pid, "VmRSS")
    cpu, core = cpu_seconds(proc.pid), core_times(PROXY_CPU)
    script = Path(__file__).with_name("idle_clients.py")
    argv = [sys.executable, str(script), "--port", str(port), "--count", str(case.idle_count)]
    argv += ["--deadline-s", str(IDLE_DEADLINE_S - 10)]
    clients = bench.procs.start("idle-clients", argv, LOAD_CPU, stdin=subprocess.PIPE, capture_stdout=True)
    try:
        opened = _read_json_line(clients, IDLE_DEADLINE_S)
        time.sleep(IDLE_SETTLE_S)
        rss_after = tree_kib(proc.pid, "VmRSS")
        cpu, core = cpu_seconds(proc.pid) - cpu, core_times(PROXY_CPU) - core
        fds = open_fds(proc.pid)
        assert clients.popen.stdin is not None
        clients.popen.stdin.write(b"done\n")
        clients.popen.stdin.flush()
        held = _read_json_line(clients, 30.0)
    finally:
        bench.procs.stop(clients)
    ok = int(opened["ok"])
    metrics = {
        "cpu_us_per_req": cpu / max(ok, 1) * 1e6,
        "peak_rss_mib": tree_kib(proc.pid, "VmHWM") / 1024,
        "kib_per_conn": (rss_after - rss_before) / max(ok, 1),
        "errors": float(opened["failed"]),
    }
    info: dict[str, object] = {
        **opened,
        **held,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "proxy_open_fds": fds,
        **_sharing(cpu, core, flag=False),  # memory is what this case measures
    }
    if held["still_open"] < ok:
        info["note"] = f"the proxy closed {ok - int(held['still_open'])} idle connections"
    return Outcome(metrics, info)
