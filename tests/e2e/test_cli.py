"""The ``pylb`` command as a user runs it: a real subprocess.

Readiness comes from the line the process prints once it listens (read with
a bounded deadline), never from sleeping.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from e2e_kit import free_port

import pylb

DEADLINE = 20.0
_PYLB_ROOT = str(Path(pylb.__file__).resolve().parent.parent)

def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PYLB_") and k not in ("BALANCE", "MAXCONN", "TIMEOUT")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PYLB_ROOT, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pylb", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *naming: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for text in naming:
        assert text in lines[0], (text, lines[0])
    assert result.stdout == ""


@contextmanager
def running(*args: str, ready: str, stream: str = "stderr", **env: str) -> Iterator[tuple[re.Match[str], list[str]]]:
    """Run ``pylb ARGS`` until the block ends; yields the match of ``ready``
    on the first line of ``stream`` that has it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylb", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_env(**env),
    )
    try:
        pipe = proc.stderr if stream == "stderr" else proc.stdout
        assert pipe is not None
        lines: list[str] = []
        deadline = time.monotonic() + DEADLINE
        match = None
        with selectors.DefaultSelector() as selector:
            selector.register(pipe, selectors.EVENT_READ)
            while match is None and time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    break
                line = pipe.readline()
                if not line:
                    break
                lines.append(line)
                match = re.search(ready, line)
        assert match is not None, f"{ready!r} not seen on {stream}; got {lines!r}; rc={proc.poll()}"
        yield match, lines
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


# ---------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("args", "naming"),
    [
        (["--bind", "nonsense", "--backend", "127.0.0.1:9"], ["--bind", "nonsense"]),
        (["--bind", "127.0.0.1:notaport", "--backend", "127.0.0.1:9"], ["--bind", "notaport"]),
        (["--bind", "127.0.0.1:70000", "--backend", "127.0.0.1:9"], ["--bind", "70000"]),
        (["--bind", "ftp://127.0.0.1:8080", "--backend", "127.0.0.1:9"], ["--bind", "ftp"]),
        (["--balance", "fastest", "--backend", "127.0.0.1:9"], ["--balance", "fastest"]),
        (["--backend", "127.0.0.1:9,weight=0"], ["--backend", "weight"]),
        (["--backend", "not a host:80"], ["--backend", "not a host"]),
        (["--timeout", "server soon", "--backend", "127.0.0.1:9"], ["--timeout", "soon"]),
        (["--frobnicate"], ["--frobnicate"]),
        ([], ["backend"]),
        (["hello", "--bind", "nonsense"], ["--bind", "nonsense"]),
        (["hello", "--delay", "forever"], ["--delay", "forever"]),
        (["demo", "--balance", "fastest"], ["--balance", "fastest"]),
        (["demo", "--backends", "0"], ["--backends", "0"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_invalid_input_is_one_line_on_stderr_and_exit_2(args: list[str], naming: list[str]) -> None:
    assert_one_line_error(run_cli(*args), *naming)


@pytest.mark.parametrize(
    ("env", "naming"),
    [
        ({"BALANCE": "fastest", "PYLB_BACKENDS": "127.0.0.1:9"}, ["BALANCE", "fastest"]),
        ({"PYLB_BACKENDS": "127.0.0.1:9 nohost"}, ["PYLB_BACKENDS", "nohost"]),
        ({"PYLB_BIND": "127.0.0.1:x", "PYLB_BACKENDS": "127.0.0.1:9"}, ["PYLB_BIND", "x"]),
    ],
)
def test_invalid_environment_is_one_line_naming_the_variable(env: dict[str, str], naming: list[str]) -> None:
    assert_one_line_error(run_cli(**env), *naming)


@contextmanager
def _port_in_use() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use_is_one_line_and_exit_2() -> None:
    with _port_in_use() as port:
        result = run_cli("--bind", f"127.0.0.1:{port}", "--backend", "127.0.0.1:9")
    assert_one_line_error(result, "--bind", str(port))


def test_unresolvable_bind_address_is_one_line_and_exit_2() -> None:
    assert_one_line_error(run_cli("--bind", "999.1.1.1:8080", "--backend", "127.0.0.1:9"), "--bind", "999.1.1.1")


def test_hello_port_in_use_is_one_line_and_exit_2() -> None:
    with _port_in_use() as port:
        result = run_cli("hello", "--bind", f"127.0.0.1:{port}")
    assert_one_line_error(result, "--bind", str(port))


def test_demo_port_in_use_is_one_line_and_exit_2() -> None:
    with _port_in_use() as port:
        result = run_cli("demo", "--bind", f"127.0.0.1:{port}")
    assert_one_line_error(result, "--bind", str(port))


# ---------------------------------------------------------------- running

LISTENING = r"listening on (http://127\.0\.0\.1:(\d+)); (\d+) backends,.*\b(roundrobin|leastconn)\b"


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ([], {}, "roundrobin"),
        ([], {"BALANCE": "leastconn"}, "leastconn"),
        (["--balance", "roundrobin"], {"BALANCE": "leastconn"}, "roundrobin"),
        (["--balance", "leastconn"], {"BALANCE": "roundrobin"}, "leastconn"),
        (["--balance", "roundrobin"], {"BALANCE": "fastest"}, "roundrobin"),  # a flag wins, even over bad env
    ],
)
def test_balance_from_flag_then_env(flags: list[str], env: dict[str, str], expected: str) -> None:
    args = ["--bind", "127.0.0.1:0", "--backend", "127.0.0.1:9", *flags]
    with running(*args, ready=LISTENING, **env) as (match, _):
        assert match.group(4) == expected
        assert match.group(3) == "1"


def test_balancer_subprocess_forwards_to_hello_subprocesses() -> None:
    ports = [free_port(), free_port()]
    hello_ready = r"hello (\S+) listening"
    with (
        running("hello", "--bind", f"127.0.0.1:{ports[0]}", "--name", "one", ready=hello_ready),
        running("hello", "--bind", f"127.0.0.1:{ports[1]}", "--name", "two", ready=hello_ready),
    ):
        backends = " ".join(f"127.0.0.1:{p}" for p in ports)
        with running("--bind", "127.0.0.1:0", ready=LISTENING, PYLB_BACKENDS=backends) as (match, _):
            names = [httpx.get(match.group(1), timeout=DEADLINE).headers["x-served-by"] for _ in range(4)]
    assert names == ["one", "two", "one", "two"]


def test_hello_answers_with_its_name() -> None:
    port = free_port()
    with running("hello", "--bind", f"127.0.0.1:{port}", "--name", "x", ready=r"hello x listening"):
        resp = httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE)
        assert resp.status_code == 200
        assert resp.headers["x-served-by"] == "x"
        assert "x" in resp.text


def test_demo_spreads_two_requests_over_two_backends() -> None:
    port = free_port()
    with running("demo", "--bind", f"127.0.0.1:{port}", ready=r"pylb demo: .*http://", stream="stdout"):
        # like two curl invocations: a new connection each
        first = httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE)
        second = httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-served-by"] != second.headers["x-served-by"]
    assert first.text != second.text
