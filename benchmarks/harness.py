"""The benchmark run itself: command line, prerequisites, order of the run, clean-up.

Owns: the options of `python benchmarks/run.py`, the prerequisite check (it installs nothing; it
names what is missing and exits 2), the order of the run (nginx backends once, then for each case
a fresh HAProxy and a fresh pylb, measured in alternating slices: cases.py), and the guarantee
that every process it started is stopped, by pid, in a `finally` block, also on Ctrl-C or SIGTERM.
Knows nothing of how a case is measured or reported (cases.py, report.py).
Exit codes: 0 run complete (whatever the verdicts), 1 a HAProxy baseline failed, 2 cannot run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from benchmarks import report, servers
from benchmarks.cases import CASES, CASES_BY_NAME, PROXIES, SLICES, Bench, Case, run_case, slice_seconds
from benchmarks.procs import LOAD_CPU, PROXY_CPU, Procs, load_average, pin_self, raise_nofile
from benchmarks.servers import PylbInfo, other_checkout, probe_pylb, start_backends, start_stream_backend
from benchmarks.tls import write_certificate

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
TOOLS = {"wrk": "wrk", "haproxy": "haproxy", "nginx": "nginx-light", "taskset": "util-linux"}
NOFILE = 65_536
BUSY_LOAD = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="pylb vs HAProxy, side by side.")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    parser.add_argument("--cases", default=",".join(c.name for c in CASES), help="comma-separated cases (default: all)")
    parser.add_argument("--proxies", default=",".join(PROXIES), help="comma-separated proxies (default: haproxy,pylb)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep the temp dir (configs, logs) instead of removing it"
    )
    parser.add_argument(
        "--pylb-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run pylb with this environment variable (repeatable): LOG_FORMAT=haproxy measures pylb with its "
        "access log on (the lines go to pylb's log file in the temp dir)",
    )
    parser.add_argument(
        "--tree",
        metavar="DIR",
        help="run pylb from this checkout (another version of it, such as a git worktree of an older commit) "
        "with this harness and its cases; default: the checkout this script is in",
    )
    return parser.parse_args(argv)


def missing_prerequisites(cases: list[Case] | None = None) -> list[str]:
    """What the run of `cases` (default: all) needs and this machine lacks."""
    cases = list(CASES) if cases is None else cases
    tools = dict(TOOLS)
    if any(case.tls for case in cases):
        tools["openssl"] = "openssl"  # tls.probe: which group each proxy negotiates
    missing = [
        f"{tool} (apt-get install -y {package})" for tool, package in tools.items() if shutil.which(tool) is None
    ]
    modules = ["matplotlib", *(["trustme"] if any(case.tls for case in cases) else [])]
    for module in modules:
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module} (pip install -r benchmarks/requirements.txt)")
    if len(os.sched_getaffinity(0)) < 2 or max(os.sched_getaffinity(0)) < PROXY_CPU:
        missing.append(f"cores {LOAD_CPU} and {PROXY_CPU} (the proxy gets a core of its own)")
    return missing


def select_cases(names: str) -> list[Case]:
    unknown = [n for n in names.split(",") if n and n not in CASES_BY_NAME]
    if unknown:
        known = ", ".join(CASES_BY_NAME)
        raise ValueError(f"--cases: unknown {', '.join(unknown)}; known: {known}")
    return [CASES_BY_NAME[n] for n in names.split(",") if n]


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def environment() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = [
        _first_line(["haproxy", "-v"]).split(" - ")[0],
        _first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        _first_line(["wrk", "--version"]).split(" [")[0],
        f"Python {platform.python_version()}",
    ]
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}; " + ", ".join(versions)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop processes


def run_all(args: argparse.Namespace, cases: list[Case], proxies: list[str]) -> int:
    for spec in args.pylb_env:  # pylb_env() passes os.environ on; HAProxy and nginx read none of these
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise ValueError(f"--pylb-env {spec!r}: expected NAME=VALUE (example: LOG_FORMAT=haproxy)")
        os.environ[name] = value
    pylb = probe_pylb() if "pylb" in proxies else PylbInfo(False, "not selected")
    if "pylb" in proxies and not pylb.available:
        print(f"pylb: not available ({pylb.reason}); measuring HAProxy only")
    load = load_average()
    if load > BUSY_LOAD:
        print(f"warning: the machine is not idle (load average {load:.2f}): figures will be noisy")
    started, clock = time.localtime(), time.monotonic()
    run: dict[str, object] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", started),
        "stamp": time.strftime("%Y%m%d-%H%M%S", started),
        "duration_s": SLICES * slice_seconds(args.duration),  # of load per proxy and case
        "slices": SLICES,
        "command": shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "environment": environment(),
        "proxies": proxies,
        "pylb": asdict(pylb),
        "pylb_env": list(args.pylb_env),
        "pylb_tree": str(servers.PYLB_ROOT),
        "load_average_at_start": load,
    }
    tmp = Path(tempfile.mkdtemp(prefix="pylb-bench-"))
    tmp.chmod(0o755)
    procs = Procs(tmp)
    reports: list[report.CaseReport] = []
    try:
        backends = start_backends(procs, tmp)
        streams = [start_stream_backend(procs)] if any(case.streamed for case in cases) else []
        cert = write_certificate(tmp) if any(case.tls for case in cases) else tmp / "no-certificate"
        bench = Bench(procs, tmp, backends, args.duration, pylb, cert, streams)
        print(
            f"backends: nginx on ports {[b.port for b in backends]} (core {LOAD_CPU}); "
            f"proxy under test on core {PROXY_CPU}; temp dir {tmp}"
        )
        for case in cases:
            case_clock = time.monotonic()
            results = run_case(case, proxies, bench)
            took = time.monotonic() - case_clock
            for proxy, outcome in results.items():
                print(f"{case.name:<16} {proxy:<8} {outcome.summary()}", flush=True)
            print(f"{case.name:<16} took {took:.1f}s", flush=True)
            reports.append(report.CaseReport(case, results))
    finally:
        procs.stop_all()
        if args.keep_tmp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    run["elapsed_s"] = round(time.monotonic() - clock, 1)
    paths = report.write(run, reports, args.out)
    print()
    print(report.markdown(run, reports))
    print(f"took {run['elapsed_s']} s; wrote " + ", ".join(str(p) for p in paths))
    baseline = [rep.results.get("haproxy") for rep in reports]
    return 1 if any(outcome and outcome.error for outcome in baseline) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cases = select_cases(args.cases)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    missing = missing_prerequisites(cases)
    if missing:
        print("cannot run the benchmark; missing:", file=sys.stderr)
        for item in missing:
            print(f"  - {item}", file=sys.stderr)
        return 2
    if args.tree is not None:
        try:
            servers.use_tree(Path(args.tree))
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
    other = other_checkout(os.environ.get("PYTHONPATH")) if args.tree is None else None  # --tree comes first
    if other is not None:
        print(
            f"PYTHONPATH names another pylb checkout ({other}), but pylb runs from {servers.PYLB_ROOT}: "
            f"measure it with --tree {other}",
            file=sys.stderr,
        )
        return 2
    proxies = [p for p in args.proxies.split(",") if p]
    if not proxies or not set(proxies) <= set(PROXIES):
        print(f"--proxies: choose from {', '.join(PROXIES)}", file=sys.stderr)
        return 2
    pin_self(LOAD_CPU)
    raise_nofile(NOFILE)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run_all(args, cases, proxies)
    except KeyboardInterrupt:
        print("interrupted; every process the benchmark started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
