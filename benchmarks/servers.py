"""The servers of a benchmark run: the nginx backends and the proxies under test.

Owns: the nginx backend configuration and its content (a 100-byte body, a 1 MiB file, an upload
sink), the generated HAProxy configurations (http and tcp mode), nginx as a reverse proxy (the
conformance suite's third proxy), the pylb command template, and starting any of these through
`Procs` on the right core.
Knows nothing of wrk or of the cases' metrics.
Invariants: everything listens on 127.0.0.1 only; configurations live in the run's temp dir; the
proxy under test always runs pinned to PROXY_CPU, the backends to LOAD_CPU.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from benchmarks.procs import LOAD_CPU, PROXY_CPU, Proc, Procs, StartError, free_port, wait_port

Mode = Literal["http", "tcp"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL_BODY = (b"pylb benchmark " * 7)[:100]  # exactly 100 bytes
BIG_BYTES = 1024 * 1024
UPLOAD_BYTES = 10 * 1024 * 1024
READY_DEADLINE_S = 20.0
MAXCONN = 12_000
"""Client connections each proxy accepts: room for the 10,000 idle ones of `idle_10k`."""
EXIT_USAGE = 2  # pylb's exit code for invalid input, e.g. a mode it does not support yet


class ProxyUnavailable(Exception):
    """The proxy cannot run this case at all (e.g. pylb without tcp mode); not a failure."""


class Upstream(Protocol):
    """What a proxy's configuration needs of a backend: a name and a port on 127.0.0.1."""

    @property
    def name(self) -> str: ...

    @property
    def port(self) -> int: ...


@dataclass(frozen=True)
class Backend:
    name: str
    port: int
    proc: Proc


# ---- nginx backends ------------------------------------------------------------------------

# /upload must answer only after nginx has read the whole body: an early answer lets the proxy
# skip forwarding the rest, and wrk 4 stalls a connection whose response arrives before its
# request is fully written. `return 200` would answer at once (nginx discards the body in the
# background), so: `mirror` with `mirror_request_body on` reads the entire body (kept in memory by
# client_body_buffer_size) before the content phase; the mirror subrequest goes to an internal
# 204; the static handler then refuses POST with 405, which error_page turns into `200 ok`.
_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
        client_max_body_size 20m;
        location = / {{ return 200 "{small}"; }}
        location = /varied {{ add_header X-Request-Id $request_id; return 200 "{small}"; }}
        location = /big {{ }}
        location = /upload {{
            client_body_buffer_size 11m;
            mirror /_upload_sink;
            mirror_request_body on;
            error_page 405 =200 @upload_ok;
        }}
        location @upload_ok {{ return 200 "ok\\n"; }}
        location = /_upload_sink {{ internal; return 204; }}
        location = /nginx_status {{ stub_status; }}
    }}
}}
"""


def write_www(tmp: Path) -> Path:
    """The backends' document root: /big (1 MiB of varied bytes) and /upload (static 'ok')."""
    www = tmp / "www"
    www.mkdir(mode=0o755)
    (www / "big").write_bytes(bytes(range(256)) * (BIG_BYTES // 256))
    (www / "upload").write_bytes(b"ok\n")
    return www


def start_backends(procs: Procs, tmp: Path, count: int = 2) -> list[Backend]:
    """Start `count` nginx servers on 127.0.0.1, pinned to the load core, and wait for them."""
    www = write_www(tmp)
    backends = []
    for index in range(1, count + 1):
        name, port = f"nginx{index}", free_port()
        conf = tmp / f"{name}.conf"
        small = SMALL_BODY.decode()
        conf.write_text(_NGINX_CONF.format(tmp=tmp, www=www, name=name, port=port, small=small))
        argv = ["nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / f"{name}.error.log")]
        proc = procs.start(name, argv, LOAD_CPU)
        wait_port(proc, port, READY_DEADLINE_S)
        backends.append(Backend(name, port, proc))
    return backends


def http_get(port: int, path: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """One HTTP/1.1 GET to 127.0.0.1:`port` with `Connection: close`; (status, body)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    return status, body


def backend_requests(backend: Backend) -> int:
    """Requests served so far by `backend` (nginx stub_status; counts this query too)."""
    _, body = http_get(backend.port, "/nginx_status")
    return int(body.splitlines()[2].split()[2])


# ---- HAProxy -------------------------------------------------------------------------------

# One thread, as pylb runs one worker here. http mode: keep-alive on both sides with backend
# connections shared between clients (http-reuse always) and X-Forwarded-For added, the work pylb
# does too. Both modes: splice-auto (kernel splicing once a buffer fills, i.e. for bodies, not for
# small responses), since pylb splices large bodies (and its tcp mode is meant to): bulk figures
# are compared with HAProxy splicing, as the design says (ARCHITECTURE.md, Performance).
# `no strict-limits`: HAProxy wants 2 fds per maxconn and refuses to start when it cannot raise
# RLIMIT_NOFILE that far (e.g. a hard limit of 20000 in a container); an idle client holds one
# fd, so it runs fine below its own estimate.
_HAPROXY_CONF = """\
global
    nbthread 1
    maxconn {maxconn}
    no strict-limits

defaults
    mode {mode}
    timeout connect 5s
    timeout client 120s
    timeout server 120s
{mode_options}
frontend bench
    bind 127.0.0.1:{port}
    maxconn {maxconn}
    default_backend backends

backend backends
    balance roundrobin
{servers}
"""
_HAPROXY_MODE_OPTIONS = {
    "http": "    timeout http-keep-alive 120s\n    option forwardfor\n    http-reuse {reuse}\n    option splice-auto\n",
    "tcp": "    option splice-auto\n",
}


def haproxy_argv(
    tmp: Path, mode: Mode, port: int, backends: Sequence[Upstream], reuse: str = "always"
) -> list[str]:
    """Write the HAProxy config for `mode` into `tmp`; return the command that runs it.

    `reuse`: HAProxy's `http-reuse` (the benchmark shares backend connections between clients,
    `always`; the conformance suite runs HAProxy's default, `safe`: a client's first request
    never goes on a connection the backend may be closing)."""
    servers = "\n".join(f"    server {b.name} 127.0.0.1:{b.port}" for b in backends)
    conf = tmp / f"haproxy-{mode}.cfg"
    conf.write_text(
        _HAPROXY_CONF.format(
            mode=mode,
            mode_options=_HAPROXY_MODE_OPTIONS[mode].format(reuse=reuse),
            port=port,
            servers=servers,
            maxconn=MAXCONN,
        )
    )
    return ["haproxy", "-db", "-f", str(conf)]


# ---- nginx as a reverse proxy --------------------------------------------------------------

# The usual reverse-proxy setup: HTTP/1.1 and keep-alive toward the backends (`keepalive`, and
# the Connection header cleared), the Host header passed as the client sent it, X-Forwarded-For
# added, WebSocket upgrades passed on (the map nginx's documentation gives). Everything else is
# nginx's default (request and response buffering on, invalid and underscored header names
# dropped), so that it is compared as it is usually run.
_NGINX_PROXY_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream backends {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def nginx_proxy_argv(tmp: Path, port: int, backends: Sequence[Upstream], name: str = "nginx-proxy") -> list[str]:
    """Write an nginx reverse-proxy config into `tmp`; return the command that runs it."""
    servers = "\n".join(f"        server 127.0.0.1:{b.port};" for b in backends)
    conf = tmp / f"{name}.conf"
    conf.write_text(_NGINX_PROXY_CONF.format(tmp=tmp, name=name, port=port, servers=servers))
    return ["nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / f"{name}.error.log")]


# ---- pylb ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PylbInfo:
    available: bool
    reason: str  # why it is not available, or "" when it is
    workers_flag: bool = False  # `--help` lists `--workers`: pass `--workers 1`
    maxconn_flag: bool = False  # `--help` lists `--maxconn`: pass HAProxy's maxconn


def probe_pylb() -> PylbInfo:
    """Check that `python -m pylb --help` works, and which optional flags it lists."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pylb", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
            env=pylb_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return PylbInfo(False, "`python -m pylb --help` did not finish in 60s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return PylbInfo(False, f"`python -m pylb --help` failed: {last}")
    return PylbInfo(True, "", "--workers" in done.stdout, "--maxconn" in done.stdout)


def pylb_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def pylb_argv(info: PylbInfo, mode: Mode, port: int, backends: list[Backend]) -> list[str]:
    """The pylb command template: one worker, roundrobin over `backends`, HAProxy's maxconn."""
    bind = f"127.0.0.1:{port}" if mode == "http" else f"tcp://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "pylb", "--bind", bind]
    for backend in backends:
        cmd += ["--backend", f"127.0.0.1:{backend.port}"]
    cmd += ["--balance", "roundrobin"]
    if info.workers_flag:
        cmd += ["--workers", "1"]
    if info.maxconn_flag:
        cmd += ["--maxconn", str(MAXCONN)]
    return cmd


# ---- starting a proxy under test -----------------------------------------------------------


def start_proxy(
    procs: Procs,
    tmp: Path,
    proxy: str,
    mode: Mode,
    backends: list[Backend],
    pylb: PylbInfo,
) -> tuple[Proc, int]:
    """Start `proxy` ("haproxy" or "pylb") in `mode` on a free port, pinned to the proxy core.

    Returns the process and its port once the port accepts connections. Raises ProxyUnavailable
    when pylb exits at once with the usage exit code in tcp mode, StartError on any other failure.
    """
    port = free_port()
    if proxy == "haproxy":
        argv, env = haproxy_argv(tmp, mode, port, backends), None
    elif proxy == "pylb":
        if not pylb.available:
            raise ProxyUnavailable(f"pylb not available: {pylb.reason}")
        argv, env = pylb_argv(pylb, mode, port, backends), pylb_env()
    else:
        raise ValueError(f"unknown proxy {proxy!r}")
    proc = procs.start(f"{proxy}-{mode}", argv, PROXY_CPU, env=env, cwd=REPO_ROOT)
    try:
        wait_port(proc, port, READY_DEADLINE_S)
    except StartError as exc:
        procs.stop(proc)
        if proxy == "pylb" and mode == "tcp" and exc.returncode == EXIT_USAGE:
            raise ProxyUnavailable("pylb: tcp mode not available") from exc
        raise StartError(proc.name, f"{exc.message}; log:\n{proc.log_tail()}", exc.returncode) from exc
    return proc, port
