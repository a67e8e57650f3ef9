"""The benchmark cases, their targets, and how one case is run against one proxy.

Owns: the table of cases (what load, which mode, which targets), the metric names, and the
measurement of a case against every proxy: start a fresh process of each, check it answers, warm
it up, then measure CPU time, memory and wrk's figures in short slices that alternate between the
proxies (HAProxy, pylb, pylb, HAProxy, ...), so that a host getting faster or slower during the
run weighs on both alike; stop them.
Knows nothing of report formats. Invariants: each (case, proxy) gets a fresh proxy process, stopped
before the function returns; CPU time is counted over the measured wrk runs only (not the warm-up);
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

from benchmarks import wrk
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
    Mode,
    ProxyUnavailable,
    PylbInfo,
    backend_requests,
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
}


@dataclass(frozen=True)
class Target:
    """A goal for pylb on one metric: on the pylb/HAProxy ratio, or on pylb's own value."""

    metric: str
    op: Literal[">=", "<="]
    value: float
    absolute: bool = False

    def describe(self) -> str:
        if self.absolute:
            return f"pylb {METRICS[self.metric]} {self.op} {self.value:g}"
        return f"{METRICS[self.metric]} {self.op} {self.value:g}x"

    def met(self, ratio: float | None, pylb_value: float | None) -> bool | None:
        """Whether the target is met; None when there is nothing to judge."""
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
    targets: tuple[Target, ...] = ()

    @property
    def response_bytes(self) -> int:
        sizes = {"/": len(SMALL_BODY), "/varied": len(SMALL_BODY), "/big": BIG_BYTES}
        return sizes.get(self.path, 0)


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
        "tcp mode, 1 MiB HTTP responses over 16 long-lived connections: bulk relay",
        path="/big",
        connections=16,
        targets=(Target("mib_s", ">=", 0.95),),
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
    """What every case needs: the started backends and where to put files."""

    procs: Procs
    tmp: Path
    backends: list[Backend]
    duration_s: int
    pylb: PylbInfo


def run_case(case: Case, proxies: list[str], bench: Bench) -> dict[str, Outcome]:
    """Run `case` against a fresh process of each of `proxies`; never raises for a proxy's failure.

    The idle-connections case measures one proxy at a time (alone, as memory is what it measures);
    the others alternate between the proxies in slices (`_measure_slices`).
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
    try:
        results.update(_measure_slices(case, started, bench))
    finally:
        for proc, _ in started.values():
            bench.procs.stop(proc)
    return {proxy: results[proxy] for proxy in proxies}


def _start(proxies: list[str], case: Case, bench: Bench) -> tuple[dict[str, tuple[Proc, int]], dict[str, Outcome]]:
    """Start each proxy and check that it answers: (the started ones, outcomes of the others)."""
    started: dict[str, tuple[Proc, int]] = {}
    failed: dict[str, Outcome] = {}
    for proxy in proxies:
        try:
            proc, port = start_proxy(bench.procs, bench.tmp, proxy, case.mode, bench.backends, bench.pylb)
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


def _guarded(proc: Proc, measure: Callable[[], Outcome]) -> Outcome:
    try:
        return measure()
    except (OSError, ValueError, wrk.WrkError, StartError) as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}\nproxy log:\n{proc.log_tail()}")


def _check_answers(case: Case, port: int) -> None:
    path = "/" if case.upload_bytes else case.path
    status, body = http_get(port, path, timeout_s=30.0)
    expected = len(SMALL_BODY) if path in ("/", "/varied") else case.response_bytes
    if status != 200 or len(body) != expected:
        raise ValueError(f"GET {path} through the proxy: status {status}, {len(body)} body bytes")


def _wrk(case: Case, port: int, bench: Bench, duration_s: int) -> wrk.WrkResult:
    script = None
    if case.upload_bytes:
        script = wrk.upload_script(bench.tmp / f"upload-{case.upload_bytes}.lua", case.upload_bytes)
    elif case.varied:
        script = wrk.varied_script(bench.tmp / "varied.lua", case.path)
    url = f"http://127.0.0.1:{port}{case.path}"
    return wrk.run(
        url,
        connections=case.connections,
        duration_s=duration_s,
        script=script,
        headers=case.headers,
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
