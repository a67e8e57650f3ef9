"""The proxies under comparison, each in front of its own recording backend.

Owns: starting HAProxy (http mode) and nginx (reverse proxy) with the configurations that
benchmarks/servers.py generates (the benchmark's HAProxy, with HAProxy's default `http-reuse
safe`: a case's first request never goes on a connection the backend is closing), and pylb
as a real process (``python -m pylb``), once per driver: the readiness
loop (``--lanes true``, the default) and a task per connection (``--lanes false``). Everything
is stopped by pid when the block ends.
Must not know: the cases, how outcomes are described.
Invariants: everything listens on 127.0.0.1 only; one recording backend per proxy, so that
what a backend records was sent by that proxy.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import Procs, free_port, wait_port
from benchmarks.servers import Frontend, haproxy_argv, nginx_proxy_argv
from tests.conformance.backend import RecordingBackend
from tests.conftest import run_pylb

OTHERS = ("haproxy", "nginx")
PYLBS = ("pylb", "pylb-task")  # the readiness loop, and a task per connection (--lanes false)
ALL = (*OTHERS, *PYLBS)
READY_DEADLINE_S = 20.0


@dataclass(frozen=True)
class Proxy:
    name: str
    port: int
    backend: RecordingBackend


def missing() -> list[str]:
    """The programs the comparison needs that are not installed."""
    return [name for name in ("haproxy", "nginx") if shutil.which(name) is None]


def versions() -> dict[str, str]:
    """HAProxy's and nginx's versions (the table says which it was measured with)."""
    haproxy = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False).stdout
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr
    return {  # upstream versions: a distribution's patch suffix (-1+deb12u4) left out
        "haproxy": haproxy.split()[2].split("-")[0] if haproxy.startswith("HAProxy version") else "?",
        "nginx": nginx.strip().rpartition("/")[2] or "?",
    }


@contextmanager
def open_proxies(names: tuple[str, ...] = ALL) -> Iterator[dict[str, Proxy]]:
    """Start the proxies ``names``, each before its own recording backend."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pylb-conformance-")))
        procs = Procs(tmp)
        stack.callback(procs.stop_all)
        proxies = {}
        for name in names:
            backend = stack.enter_context(RecordingBackend())
            if name in PYLBS:
                lanes = "true" if name == "pylb" else "false"
                running = stack.enter_context(
                    run_pylb(
                        "--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{backend.port}",
                        "--lanes", lanes, "--health-check", "none",
                    )
                )  # fmt: skip
                port = running.port
            else:
                port = free_port()
                if name == "haproxy":
                    argv = haproxy_argv(tmp, Frontend(reuse="safe"), port, [backend])
                else:
                    argv = nginx_proxy_argv(tmp, port, [backend])
                wait_port(procs.start(name, argv, None), port, READY_DEADLINE_S)
            proxies[name] = Proxy(name, port, backend)
        yield proxies
