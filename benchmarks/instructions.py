"""Instructions per request on pylb's forwarding path, counted by callgrind: a figure for comparing
two versions of the hot path that does not move with the host's speed.

    python benchmarks/instructions.py [--cases small_varied,tcp_small] [--duration 8]
                                      [--tree LABEL=DIR ...]

Owns: running pylb (one worker, the benchmark's command) under `valgrind --tool=callgrind` with
wrk's load of a case (from cases.py), zeroing the counts after a warm-up (`callgrind_control -z`),
dumping them after the measured run (`-d`), and dividing the instructions pylb executed in user
space by the requests wrk completed. Each `--tree` is a checkout (a `git worktree` of another
commit, say) measured the same way, one after the other; the default is this one.
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
from benchmarks.cases import CASES_BY_NAME, WARMUP_S, Case
from benchmarks.procs import PROXY_CPU, Procs, free_port, raise_nofile, wait_port
from benchmarks.servers import MAXCONN, Backend, start_backends

REPO_ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE_S = 120.0  # pylb starts about 50 times slower under valgrind
DUMP_WAIT_S = 10.0
CASES = ("small_keepalive", "small_varied", "tcp_small")  # where the per-request path is the cost


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="pylb's instructions per request, counted by callgrind.")
    parser.add_argument("--cases", default="small_varied,tcp_small", help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--duration", type=int, default=8, help="seconds of measured load per tree and case")
    parser.add_argument(
        "--tree", action="append", default=[], metavar="LABEL=DIR", help="a checkout to measure (repeatable)"
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
    procs: Procs, tmp: Path, case: Case, tree: Path, backends: list[Backend], duration_s: int
) -> tuple[int, int]:
    """Run the case's load against pylb from `tree` under callgrind: (requests, instructions)."""
    port = free_port()
    bind = f"tcp://127.0.0.1:{port}" if case.mode == "tcp" else f"127.0.0.1:{port}"
    dump = tmp / f"callgrind-{time.monotonic_ns()}.out"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", sys.executable, "-m", "pylb"]
    argv += ["--bind", bind, "--balance", "roundrobin", "--workers", "1", "--maxconn", str(MAXCONN)]
    for backend in backends:
        argv += ["--backend", f"127.0.0.1:{backend.port}"]
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = procs.start("pylb-callgrind", argv, PROXY_CPU, env=env, cwd=tree)
    try:
        wait_port(proc, port, START_DEADLINE_S)
        script = wrk.varied_script(tmp / "varied.lua", case.path) if case.varied else None
        url = f"http://127.0.0.1:{port}{case.path}"
        wrk.run(url, connections=case.connections, duration_s=WARMUP_S + 2, script=script, headers=case.headers)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True, timeout=30)
        result = wrk.run(url, connections=case.connections, duration_s=duration_s, script=script, headers=case.headers)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True, timeout=30)
        return result.requests, _dumped_total(dump)
    finally:
        procs.stop(proc)


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
        for name in args.cases.split(","):
            for label, tree in checkouts:
                requests, instructions = measure(procs, tmp, CASES_BY_NAME[name], tree, backends, args.duration)
                per = instructions / max(requests, 1)
                print(f"{name:<16} {label:<12} {requests:>8} requests  {per:>10,.0f} instructions/request", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
