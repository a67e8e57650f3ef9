"""The servers of a benchmark run: the backends and the proxies under test.

Owns: the nginx backend configuration and its content (a 100-byte body, a 1 MiB file, an upload
sink, browser-like answers), the streaming backend's command (`stream_backend.py`), the generated
HAProxy configurations (http and tcp mode, plain or terminating TLS, splicing automatic or forced,
connection reuse, a stats socket for `show info`), nginx as a reverse proxy (the conformance
suite's third proxy), the pylb command template, and starting any of these through
`Procs` on the right core.
Knows nothing of wrk or of the cases' metrics.
Invariants: everything listens on 127.0.0.1 only; configurations live in the run's temp dir; the
proxy under test always runs pinned to PROXY_CPU, the backends to LOAD_CPU; with TLS, both
proxies serve the same PEM file and otherwise their TLS defaults (which `tls.probe` checks agree).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from benchmarks.procs import LOAD_CPU, PROXY_CPU, Proc, Procs, StartError, free_port, wait_port
from benchmarks.tls import client_context

Mode = Literal["http", "tcp"]
Splice = Literal["auto", "forced"]

REPO_ROOT = Path(__file__).resolve().parent.parent
PYLB_ROOT = REPO_ROOT  # the checkout pylb runs from (run.py --tree: another version, same harness)


def use_tree(tree: Path) -> None:
    """Run pylb from ``tree`` (a checkout with a ``pylb`` package) instead of this one."""
    global PYLB_ROOT
    if not (tree / "pylb" / "__init__.py").is_file():
        raise ValueError(f"--tree {tree}: no pylb package there (give a checkout of pylb, such as a git worktree)")
    PYLB_ROOT = tree.resolve()
SMALL_BODY = (b"pylb benchmark " * 7)[:100]  # exactly 100 bytes
BIG_BYTES = 1024 * 1024
UPLOAD_BYTES = 10 * 1024 * 1024
READY_DEADLINE_S = 20.0
STATS_TIMEOUT_S = 5.0
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
        location /app/ {{
            default_type "text/html; charset=utf-8";
            add_header X-Request-Id $request_id always;
            add_header Cache-Control "private, no-cache" always;
            add_header Vary "Accept-Encoding, Cookie" always;
            return 200 "{small}";
        }}
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


def http_get(port: int, path: str, timeout_s: float = 10.0, *, tls: bool = False) -> tuple[int, bytes]:
    """One HTTP/1.1 GET to 127.0.0.1:`port` (over TLS with `tls`) with `Connection: close`; (status, body)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as raw:
        sock = client_context().wrap_socket(raw, server_hostname="localhost") if tls else raw
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ssl.SSLEOFError:  # a TLS peer closing without close_notify after the answer
            pass
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    return status, body


def start_stream_backend(procs: Procs) -> Backend:
    """Start `stream_backend.py` (a chunked answer, 10 pieces 5 ms apart) on the load core."""
    port = free_port()
    script = Path(__file__).with_name("stream_backend.py")
    proc = procs.start("stream-backend", [sys.executable, str(script), "--port", str(port)], LOAD_CPU)
    wait_port(proc, port, READY_DEADLINE_S)
    return Backend("stream", port, proc)


def backend_requests(backend: Backend) -> int:
    """Requests served so far by `backend` (nginx stub_status; counts this query too)."""
    _, body = http_get(backend.port, "/nginx_status")
    return int(body.splitlines()[2].split()[2])


# ---- HAProxy -------------------------------------------------------------------------------

# One thread, as pylb runs one worker here. http mode: keep-alive on both sides with backend
# connections shared between clients (http-reuse always) and X-Forwarded-For added, the work pylb
# does too. Splicing: `auto` (kernel splicing once a buffer fills, i.e. for bodies, not for
# small responses), since pylb splices large bodies (and its tcp mode does): bulk figures are
# compared with HAProxy splicing, as the design says (ARCHITECTURE.md, Performance); `forced`
# (splice-request and splice-response: every transfer spliced, whatever its size), HAProxy's
# fastest bulk relay, for `tcp_bulk`.
# TLS: `ssl crt` with the same PEM as pylb's --ssl-cert, ALPN http/1.1 as pylb offers, and
# otherwise HAProxy's defaults: TLS 1.2-1.3, the OpenSSL default groups and TLS 1.3 suites (the
# ones pylb's Python context has), session tickets on (as Python's are). `tls.probe` checks
# that both proxies negotiate the same, and the report says so.
# `stats socket`: `show info` tells whether HAProxy spliced (pipes) and resumed TLS sessions.
# `no strict-limits`: HAProxy wants 2 fds per maxconn and refuses to start when it cannot raise
# RLIMIT_NOFILE that far (e.g. a hard limit of 20000 in a container); an idle client holds one
# fd, so it runs fine below its own estimate.
_HAPROXY_CONF = """\
global
    nbthread 1
    maxconn {maxconn}
    no strict-limits
    stats socket {stats} mode 600 level admin
{global_log}
defaults
    mode {mode}
    timeout connect 5s
    timeout client 120s
    timeout server 120s
{mode_options}{splice_options}
frontend bench
    bind 127.0.0.1:{port}{bind_options}
    maxconn {maxconn}
{frontend_log}    default_backend backends

backend backends
    balance roundrobin
{servers}
"""
_HAPROXY_MODE_OPTIONS = {
    "http": "    timeout http-keep-alive 120s\n    option forwardfor\n    http-reuse {reuse}\n",
    "tcp": "",
}
_HAPROXY_HTTPLOG = (
    "    log global\n    option httplog\n    capture request header Host len 64\n"
    "    capture response header X-Request-Id len 64\n"
)
_HAPROXY_SPLICE_OPTIONS = {
    "auto": "    option splice-auto\n",
    "forced": "    option splice-request\n    option splice-response\n",
}


@dataclass(frozen=True)
class Frontend:
    """How a proxy under test listens: its mode, the TLS it terminates, HAProxy's splicing."""

    mode: Mode = "http"
    cert: Path | None = None  # terminate TLS with this PEM file (key and certificate)
    splice: Splice = "auto"  # HAProxy only: pylb decides for itself when to splice
    # HAProxy only: `http-reuse` (the benchmark shares backend connections between clients, `always`;
    # the conformance suite runs HAProxy's default, `safe`: a client's first request never goes on a
    # connection the backend may be closing)
    reuse: str = "always"
    # Each proxy's access log on, to its standard output (a file here): HAProxy's `option httplog`
    # with Host and X-Request-Id captured, pylb's LOG_FORMAT=haproxy (the same line, field for field)
    access_log: bool = False

    @property
    def tls(self) -> bool:
        return self.cert is not None


def haproxy_stats_socket(tmp: Path, port: int) -> Path:
    return tmp / f"haproxy-{port}.sock"


def haproxy_config(tmp: Path, frontend: Frontend, port: int, backends: Sequence[Upstream]) -> str:
    """The HAProxy configuration for `frontend` on `port`, forwarding to `backends`."""
    if frontend.tls and frontend.mode != "http":
        raise ValueError("TLS is terminated in http mode only")
    if frontend.access_log and frontend.mode != "http":
        raise ValueError("the access-log cases are in http mode")
    bind_options = f" ssl crt {frontend.cert} alpn http/1.1" if frontend.cert is not None else ""
    return _HAPROXY_CONF.format(
        mode=frontend.mode,
        mode_options=_HAPROXY_MODE_OPTIONS[frontend.mode].format(reuse=frontend.reuse),
        splice_options=_HAPROXY_SPLICE_OPTIONS[frontend.splice],
        port=port,
        bind_options=bind_options,
        stats=haproxy_stats_socket(tmp, port),
        servers="\n".join(f"    server {b.name} 127.0.0.1:{b.port}" for b in backends),
        maxconn=MAXCONN,
        global_log="    log stdout format raw local0\n" if frontend.access_log else "",
        frontend_log=_HAPROXY_HTTPLOG if frontend.access_log else "",
    )


def haproxy_argv(tmp: Path, frontend: Frontend, port: int, backends: Sequence[Upstream]) -> list[str]:
    """Write the HAProxy config for `frontend` into `tmp`; return the command that runs it."""
    tls = "-tls" if frontend.tls else ""
    conf = tmp / f"haproxy-{frontend.mode}{tls}-{frontend.splice}-{port}.cfg"
    conf.write_text(haproxy_config(tmp, frontend, port, backends))
    return ["haproxy", "-db", "-f", str(conf)]


def haproxy_info(tmp: Path, port: int) -> dict[str, str]:
    """HAProxy's `show info` (name -> value) from the stats socket of the instance on `port`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(STATS_TIMEOUT_S)
        sock.connect(str(haproxy_stats_socket(tmp, port)))
        sock.sendall(b"show info\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    info = {}
    for line in data.decode(errors="replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            info[name.strip()] = value.strip()
    return info


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
            cwd=PYLB_ROOT,
            env=pylb_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return PylbInfo(False, "`python -m pylb --help` did not finish in 60s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return PylbInfo(False, f"`python -m pylb --help` failed: {last}")
    return PylbInfo(True, "", "--workers" in done.stdout, "--maxconn" in done.stdout)


def other_checkout(pythonpath: str | None) -> Path | None:
    """A pylb checkout other than the one pylb runs from named by PYTHONPATH: the benchmark would not
    run it (PYLB_ROOT comes first), so a comparison of two versions made that way compares one with
    itself. `run.py --tree` names the checkout to run."""
    for entry in (pythonpath or "").split(os.pathsep):
        path = Path(entry)
        if entry and (path / "pylb" / "__init__.py").is_file() and path.resolve() != PYLB_ROOT:
            return path
    return None


def pylb_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PYLB_ROOT), env.get("PYTHONPATH")) if p)
    return env


def pylb_argv(info: PylbInfo, frontend: Frontend, port: int, backends: list[Backend]) -> list[str]:
    """The pylb command template: one worker, roundrobin over `backends`, HAProxy's maxconn; with
    TLS, an https listener and `--ssl-cert` (pylb's TLS defaults otherwise)."""
    scheme = "tcp://" if frontend.mode == "tcp" else "https://" if frontend.tls else ""
    cmd = [sys.executable, "-m", "pylb", "--bind", f"{scheme}127.0.0.1:{port}"]
    if frontend.cert is not None:
        cmd += ["--ssl-cert", str(frontend.cert)]
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
    frontend: Frontend,
    backends: list[Backend],
    pylb: PylbInfo,
) -> tuple[Proc, int]:
    """Start `proxy` ("haproxy" or "pylb") listening as `frontend` on a free port, pinned to the proxy core.

    Returns the process and its port once the port accepts connections. Raises ProxyUnavailable
    when pylb exits at once with the usage exit code in tcp mode, StartError on any other failure.
    """
    port = free_port()
    if proxy == "haproxy":
        argv, env = haproxy_argv(tmp, frontend, port, backends), None
    elif proxy == "pylb":
        if not pylb.available:
            raise ProxyUnavailable(f"pylb not available: {pylb.reason}")
        argv, env = pylb_argv(pylb, frontend, port, backends), pylb_env()
        if frontend.access_log:
            env["LOG_FORMAT"] = "haproxy"
    else:
        raise ValueError(f"unknown proxy {proxy!r}")
    label = f"{proxy}-{frontend.mode}{'-tls' if frontend.tls else ''}"
    proc = procs.start(label, argv, PROXY_CPU, env=env, cwd=PYLB_ROOT)
    try:
        wait_port(proc, port, READY_DEADLINE_S)
    except StartError as exc:
        procs.stop(proc)
        if proxy == "pylb" and frontend.mode == "tcp" and exc.returncode == EXIT_USAGE:
            raise ProxyUnavailable("pylb: tcp mode not available") from exc
        raise StartError(proc.name, f"{exc.message}; log:\n{proc.log_tail()}", exc.returncode) from exc
    return proc, port
