"""Process plumbing for the benchmark harness.

Owns: starting every long-lived process the harness needs (pinned to one core with `taskset`),
waiting for a port to accept connections, reading CPU time and memory from /proc, and stopping
exactly the processes it started, by pid.
Knows nothing of wrk, nginx, HAProxy or pylb.
Invariants: every process started through `Procs` is stopped (SIGTERM, then SIGKILL after a grace
period) together with the descendants it has at that moment, when `Procs.stop_all()` runs, which
the harness calls from a `finally` block; no wait here is unbounded.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOAD_CPU = 0
"""Core for wrk, the backends, the idle-connection client and the harness itself."""
PROXY_CPU = 1
"""Core for the proxy under test, alone."""

CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_GRACE_S = 5.0


class StartError(Exception):
    """A process exited before its port accepted connections, or did not open it in time."""

    def __init__(self, name: str, message: str, returncode: int | None) -> None:
        super().__init__(f"{name}: {message}")
        self.message = message
        self.returncode = returncode


@dataclass
class Proc:
    """One process started by the harness; its output goes to `log`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} returncode={self.popen.returncode}>"


class Procs:
    """The set of processes the harness started; stops all of them, by pid, on `stop_all()`."""

    def __init__(self, logdir: Path) -> None:
        self._logdir = logdir
        self._procs: list[Proc] = []
        self._count = 0

    def start(
        self,
        name: str,
        argv: list[str],
        cpu: int | None,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        capture_stdout: bool = False,
    ) -> Proc:
        """Start `argv` pinned to core `cpu` (None: not pinned, as the conformance suite runs its
        proxies); stderr (and stdout unless captured) to a log file."""
        self._count += 1
        log = self._logdir / f"{self._count:02d}-{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv if cpu is None else ["taskset", "-c", str(cpu), *argv],
                stdin=stdin,
                stdout=subprocess.PIPE if capture_stdout else out,
                stderr=out,
                env=env,
                cwd=cwd,
            )
        proc = Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> int | None:
        """Stop `proc` and the descendants it has now; return its exit code (None if unknown)."""
        popen = proc.popen
        if popen.poll() is None:
            kids = descendants(popen.pid)
            popen.terminate()
            try:
                popen.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(STOP_GRACE_S)
            for kid in kids:
                _kill_quietly(kid)
        for stream in (popen.stdin, popen.stdout):
            if stream is not None:
                stream.close()
        if proc in self._procs:
            self._procs.remove(proc)
        return popen.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            try:
                self.stop(proc)
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"warning: could not stop {proc!r}: {exc}")


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def wait_port(proc: Proc, port: int, deadline_s: float, host: str = "127.0.0.1") -> float:
    """Poll `host:port` with connect attempts until it accepts or `deadline_s` passes.

    Returns the seconds it took. Raises StartError if `proc` exits first or the deadline passes.
    """
    start = time.monotonic()
    while True:
        code = proc.popen.poll()
        if code is not None:
            raise StartError(proc.name, f"exited with code {code} before listening", code)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > deadline_s:
            raise StartError(proc.name, f"port {port} not open after {deadline_s:.0f}s", None)
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin_self(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit (inherited by children) to `wanted`; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if new_soft > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        return new_soft
    return soft


# ---- /proc readers -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat from field 3 (state) on; the command name may hold spaces."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Live descendants of `pid` (children, grandchildren, ...), from a scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used by `pid` and its descendants, live or reaped.

    Each live process counts its own utime+stime plus cutime+cstime (its reaped children), so a
    worker that exited is still counted, once, by its parent.
    """
    ticks = 0
    for member in tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat(5); fields[0] is field 3.
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLK_TCK


@dataclass(frozen=True)
class CoreTimes:
    """Seconds one core spent, from /proc/stat: busy (user, nice, system, irq, softirq), stolen, total.

    irq and softirq count as busy because a process's own stime includes the ticks that landed in
    interrupt context while it ran; so busy minus the proxy's CPU time is what others had.
    """

    busy: float
    steal: float
    total: float

    def __sub__(self, other: CoreTimes) -> CoreTimes:
        return CoreTimes(self.busy - other.busy, self.steal - other.steal, self.total - other.total)

    def __add__(self, other: CoreTimes) -> CoreTimes:
        return CoreTimes(self.busy + other.busy, self.steal + other.steal, self.total + other.total)


def core_times(cpu: int) -> CoreTimes:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(value) for value in line.split()[1:]]
            busy = sum(ticks[:3]) + ticks[5] + ticks[6]  # user nice system (idle iowait) irq softirq
            return CoreTimes(busy / CLK_TCK, ticks[7] / CLK_TCK, sum(ticks[:8]) / CLK_TCK)
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def load_average() -> float:
    """The 1-minute load average: above ~0.2 the machine is not idle and figures get noisy."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def status_kib(pid: int, key: str) -> int:
    """One `kB` line of /proc/PID/status (VmRSS, VmHWM, ...), in KiB; 0 if absent."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def tree_kib(pid: int, key: str) -> int:
    """`status_kib` summed over `pid` and its descendants (e.g. a master and its workers)."""
    return sum(status_kib(member, key) for member in tree(pid))


def open_fds(pid: int) -> int:
    """Open file descriptors of `pid` and its descendants."""
    total = 0
    for member in tree(pid):
        try:
            total += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            continue
    return total
