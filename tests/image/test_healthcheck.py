"""``pylb healthcheck``: the image's HEALTHCHECK, against real pylb
subprocesses and closed or silent ports on 127.0.0.1 (no Docker needed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trustme

from pylb import cli
from pylb.core.models import Bind
from tests.conftest import read_until, run_pylb


def healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYLB_BIND", "MODE")}
    return subprocess.run(
        [sys.executable, "-m", "pylb", "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env={**clean, **(env or {})},
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def listener(answer: bytes | None) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts, reads the request, then sends
    ``answer`` and closes (None: says nothing and keeps the connection open)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            held.append(conn)
            if answer is not None:
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(answer)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        sock.close()


@pytest.fixture
def hello() -> Iterator[int]:
    """``pylb hello`` on a free port of 127.0.0.1, as a subprocess."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylb", "hello", "--bind", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        match, _ = read_until(proc, r"listening on 127\.0\.0\.1:(\d+)")
        yield int(match.group(1))
    finally:
        proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


# -- against real pylb processes -------------------------------------------------------------


def test_healthy_when_pylb_answers_even_503() -> None:
    """No backend can be reached: pylb answers 503 (or 502), and that is alive."""
    with run_pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{closed_port()}", "--workers", "1") as lb:
        done = healthcheck("--url", f"http://127.0.0.1:{lb.port}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("pylb healthcheck: healthy: http://127.0.0.1:")
    assert " answered 50" in done.stderr and len(done.stderr.splitlines()) == 1


def test_healthy_through_pylb_to_a_backend(hello: int) -> None:
    with run_pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{hello}", "--workers", "1") as lb:
        done = healthcheck("--url", f"http://127.0.0.1:{lb.port}/")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"pylb healthcheck: healthy: http://127.0.0.1:{lb.port}/ answered 200 OK"


def test_pylb_bind_first_address_is_the_default_target(hello: int) -> None:
    env = {"PYLB_BIND": f"127.0.0.1:{hello} 127.0.0.1:{closed_port()}"}
    done = healthcheck(env=env)
    assert done.returncode == 0, done.stderr
    assert f"http://127.0.0.1:{hello}/ answered 200 OK" in done.stderr


def test_mode_tcp_is_a_plain_connect() -> None:
    silent_port = closed_port()
    with listener(None) as port:  # accepts and says nothing: fine for TCP, not for HTTP
        tcp = healthcheck(env={"PYLB_BIND": f"127.0.0.1:{port}", "MODE": "tcp"})
        started = time.monotonic()
        http = healthcheck(env={"PYLB_BIND": f"127.0.0.1:{port}"})
        took = time.monotonic() - started
    assert tcp.returncode == 0, tcp.stderr
    assert tcp.stderr.strip() == f"pylb healthcheck: healthy: tcp://127.0.0.1:{port} accepts connections"
    assert http.returncode == 1
    assert http.stderr.strip() == f"pylb healthcheck: unhealthy: http://127.0.0.1:{port}: no answer within 2 s"
    assert took < 10
    closed = healthcheck(env={"PYLB_BIND": f"127.0.0.1:{silent_port}", "MODE": "tcp"})
    assert closed.returncode == 1 and "connection refused" in closed.stderr


def test_tcp_listener_of_a_real_pylb(hello: int) -> None:
    with run_pylb("--bind", "tcp://127.0.0.1:0", "--backend", f"127.0.0.1:{hello}", "--workers", "1") as lb:
        done = healthcheck("--url", f"tcp://127.0.0.1:{lb.port}")
    assert done.returncode == 0, done.stderr


def test_https_listener(hello: int) -> None:
    leaf = trustme.CA().issue_cert("localhost")
    pem = leaf.private_key_and_cert_chain_pem.bytes().decode()
    args = ("--bind", "https://127.0.0.1:0", "--backend", f"127.0.0.1:{hello}", "--workers", "1")
    with run_pylb(*args, env={"SSL_CERT": pem}) as lb:
        done = healthcheck("--url", f"https://127.0.0.1:{lb.port}")
        plain = healthcheck("--url", f"http://127.0.0.1:{lb.port}")  # http to an https port
    assert done.returncode == 0, done.stderr
    assert f"https://127.0.0.1:{lb.port}/ answered 200 OK" in done.stderr
    assert plain.returncode == 1, plain.stderr


# -- failures ---------------------------------------------------------------------------------


def test_closed_port_is_unhealthy() -> None:
    port = closed_port()
    done = healthcheck("--url", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"pylb healthcheck: unhealthy: http://127.0.0.1:{port}: connection refused (is pylb listening there? see --url)"
    )


def test_default_is_port_80() -> None:
    target = cli._healthcheck_target(None, {})
    assert target == ("http", "127.0.0.1", 80, "/")


def test_not_http_and_closed_without_answer() -> None:
    with listener(b"SSH-2.0-OpenSSH_9.2\r\n") as port:
        garbage = healthcheck("--url", f"http://127.0.0.1:{port}")
    with listener(b"") as port:
        empty = healthcheck("--url", f"http://127.0.0.1:{port}")
    assert garbage.returncode == 1 and "the answer is not HTTP: 'SSH-2.0-OpenSSH_9.2'" in garbage.stderr
    assert empty.returncode == 1 and "the connection closed without an HTTP answer" in empty.stderr


@pytest.mark.parametrize("url", ["foo", "ftp://127.0.0.1:21", "tcp://127.0.0.1", "http://127.0.0.1:99999"])
def test_bad_url_is_a_usage_error(url: str) -> None:
    done = healthcheck("--url", url)
    assert done.returncode == 2
    assert done.stderr.startswith("pylb: error: --url: ") and len(done.stderr.splitlines()) == 1


# -- which listener: PID 1's flags (in the image, pylb is PID 1), then the environment ---------


@pytest.mark.parametrize(
    ("pid1", "environ", "expected"),
    [
        (["pylb", "--discover", "auto"], {}, Bind("http", "0.0.0.0", 80)),
        (["/opt/pylb/bin/pylb", "hello"], {"PYLB_BIND": "0.0.0.0:81"}, Bind("http", "0.0.0.0", 80)),
        (["pylb", "hello", "--bind", "0.0.0.0:8080"], {}, Bind("http", "0.0.0.0", 8080)),
        (["pylb", "--bind=127.0.0.1:8081", "--bind", "https://0.0.0.0:8443"], {}, Bind("http", "127.0.0.1", 8081)),
        (["pylb", "--bind", "0.0.0.0:5432"], {"MODE": "tcp"}, Bind("tcp", "0.0.0.0", 5432)),
        (["pylb", "--mode", "tcp"], {"PYLB_BIND": "6379"}, Bind("tcp", "0.0.0.0", 6379)),
        (["pylb"], {"PYLB_BIND": "https://0.0.0.0:8443;0.0.0.0:8080"}, Bind("https", "0.0.0.0", 8443)),
        (["python3", "-m", "pylb", "--bind", "9000"], {"PYLB_BIND": "8000"}, Bind("http", "0.0.0.0", 9000)),
        (
            ["/opt/pylb/bin/python3", "/opt/pylb/bin/pylb", "hello", "--bind", "0.0.0.0:8080"],
            {},
            Bind("http", "0.0.0.0", 8080),
        ),
        (["/usr/bin/python3", "/usr/bin/other", "--bind", "0.0.0.0:9"], {}, Bind("http", "0.0.0.0", 80)),
        (["/sbin/init"], {"PYLB_BIND": "0.0.0.0:8000"}, Bind("http", "0.0.0.0", 8000)),
        (["/bin/sh", "-c", "pylb --bind 0.0.0.0:9"], {}, Bind("http", "0.0.0.0", 80)),
    ],
)
def test_own_listener(pid1: list[str], environ: dict[str, str], expected: Bind) -> None:
    got = cli._own_listener(environ, pid1)
    assert (got.scheme, got.host, got.port) == (expected.scheme, expected.host, expected.port)
