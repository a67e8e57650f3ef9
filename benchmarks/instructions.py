"""Instructions per request on pylb's forwarding path, counted by callgrind: a figure for comparing
two versions of the hot path that does not move with the host's speed.

    python benchmarks/instructions.py [--cases small_varied,tcp_small] [--duration 8]
                                      [--tree LABEL=DIR ...] [--access-log haproxy]

Owns: running pylb (one worker, the benchmark's command: `servers.pylb_argv`, with the run's
certificate for the HTTPS case) under `valgrind --tool=callgrind` with wrk's load of a case (from
cases.py: `wrk_load`, the same URL, Lua script and headers as the side-by-side run), in one wrk
run: zeroing the counts after a warm-up (`callgrind_control -z`; 3 s, 10 s with TLS, where 50
handshakes under valgrind take about 5 s), dumping them after the measured seconds (`-d`), and
dividing the instructions pylb executed in user space by the requests the nginx backends served
in between (their stub_status counters). Connection set-up (and TLS handshakes) stay in the
warm-up: the figure is the per-request path alone. Each `--tree` is a checkout (a `git worktree`
of another commit, say) measured the same way, one after the other; the default is this one.
Knows nothing of HAProxy or of the side-by-side report (harness.py): the kernel's share of a
request is not counted here (system calls count as the instructions that make them).

On this project's 2-core VM, wall-clock figures of the same build drift by 20-40% from one minute
to the next; instruction counts of the same build repeat within about 1.5% (the batching of
events per wake-up varies a little), so a change worth 3% shows. Under valgrind pylb runs about
50 times slower: wrk's load then finds more events ready per wake-up than at full speed, so these
counts weigh per-wake-up costs less than a real run does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `benchmarks` as a package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import wrk
from benchmarks.cases import CASES_BY_NAME, WARMUP_S, Case, wrk_load
from benchmarks.procs import PROXY_CPU, Procs, free_port, raise_nofile, wait_port
from benchmarks.servers import Backend, PylbInfo, backend_requests, pylb_argv, start_backends
from benchmarks.tls import write_certificate

REPO_ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE_S = 120.0  # pylb starts about 50 times slower under valgrind
DUMP_WAIT_S = 10.0
WARMUP_PLAIN_S = WARMUP_S + 2
WARMUP_TLS_S = 10
TAIL_S = 5  # wrk runs this much past the dump, so the load never stops inside the measured window
CASES = ("small_keepalive", "small_varied", "browser_varied", "https_keepalive", "tcp_small")
"""The cases where the per-request path is the cost."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="pylb's instructions per request, counted by callgrind.")
    parser.add_argument("--cases", default="small_varied,tcp_small", help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--duration", type=int, default=8, help="seconds of measured load per tree and case")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"seconds before counting (default {WARMUP_PLAIN_S}, TLS {WARMUP_TLS_S})",
    )
    parser.add_argument(
        "--tree", action="append", default=[], metavar="LABEL=DIR", help="a checkout to measure (repeatable)"
    )
    parser.add_argument(
        "--access-log",
        default="",
        metavar="FORMAT",
        help="measure each tree twice: as it runs by default, and with LOG_FORMAT=FORMAT (haproxy, combined, "
        "json: the access log's lines go to a file, as a container's standard output does to its log)",
    )
    return parser.parse_args(argv)


def trees(specs: list[str]) -> list[tuple[str, Path]]:
    if not specs:
        return [("this", REPO_ROOT)]
    out = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not (Path(path) / "pylb" / "__init__.py").is_file():
            raise ValueError(f"--tree {spec!r}: expected LABEL=DIR, DIR a pylb checkout (with pylb/__init__.py)")
        out.append((label, Path(path).resolve()))
    return out


def measure(
    procs: Procs,
    tmp: Path,
    case: Case,
    tree: Path,
    backends: list[Backend],
    duration_s: int,
    warmup_s: int,
    extra_env: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Run the case's load against pylb from `tree` under callgrind: (requests, instructions)."""
    port = free_port()
    dump = tmp / f"callgrind-{time.monotonic_ns()}.out"
    cert = write_certificate(tmp) if case.tls else tmp / "no-certificate"
    command = pylb_argv(PylbInfo(True, "", workers_flag=True, maxconn_flag=True), case.frontend(cert), port, backends)
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", *command]
    env = dict(os.environ, PYTHONPATH=str(tree), **(extra_env or {}))
    proc = procs.start("pylb-callgrind", argv, PROXY_CPU, env=env, cwd=tree)
    load = None
    try:
        wait_port(proc, port, START_DEADLINE_S)
        spec = wrk_load(case, port, tmp)
        seconds = warmup_s + duration_s + TAIL_S
        cmd = wrk.argv(
            spec.url, connections=case.connections, duration_s=seconds, script=spec.script, headers=spec.headers
        )
        load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(warmup_s)
        before = _served(backends)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True, timeout=30)
        time.sleep(duration_s)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True, timeout=30)
        requests = _served(backends) - before - len(backends)  # each counter counts its own query
        if load.poll() is not None:
            raise RuntimeError(f"wrk ended (exit {load.returncode}) before the measured window did")
        return requests, _dumped_total(dump)
    finally:
        if load is not None and load.poll() is None:
            load.terminate()
            load.wait(30)
        procs.stop(proc)


def _served(backends: list[Backend]) -> int:
    """Requests the backends have served so far (this query included, one per backend)."""
    return sum(backend_requests(backend) for backend in backends)


def _dumped_total(base: Path) -> int:
    """The `summary:` of the newest dump callgrind wrote next to `base` (base.1, base.2...)."""
    deadline = time.monotonic() + DUMP_WAIT_S
    while time.monotonic() < deadline:
        dumps = sorted(base.parent.glob(base.name + ".*"), key=lambda p: p.stat().st_mtime)
        for line in dumps[-1].read_text().splitlines() if dumps else ():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump next to {base} within {DUMP_WAIT_S:.0f}s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control", "wrk", "nginx", "taskset") if not shutil.which(tool)]
    if missing:
        hint = "apt-get install -y valgrind wrk nginx-light"
        print(f"cannot run: missing {', '.join(missing)} ({hint})", file=sys.stderr)
        return 2
    try:
        checkouts = trees(args.tree)
        unknown = [name for name in args.cases.split(",") if name not in CASES]
        if unknown:
            raise ValueError(f"--cases: {', '.join(unknown)} not among {', '.join(CASES)}")
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    raise_nofile(65_536)
    tmp = Path(tempfile.mkdtemp(prefix="pylb-instructions-"))
    procs = Procs(tmp)
    try:
        backends = start_backends(procs, tmp)
        variants: list[tuple[str, dict[str, str]]] = [("", {})]
        if args.access_log:
            variants.append((f"+log:{args.access_log}", {"LOG_FORMAT": args.access_log}))
        for name in args.cases.split(","):
            for label, tree in checkouts:
                for suffix, extra in variants:
                    case = CASES_BY_NAME[name]
                    warmup = args.warmup or (WARMUP_TLS_S if case.tls else WARMUP_PLAIN_S)
                    requests, instructions = measure(procs, tmp, case, tree, backends, args.duration, warmup, extra)
                    per = instructions / max(requests, 1)
                    shown = label + suffix
                    print(
                        f"{name:<16} {shown:<12} {requests:>8} requests  {per:>10,.0f} instructions/request",
                        flush=True,
                    )
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
