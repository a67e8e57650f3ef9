"""Kit for the observability tests: pylb and hello backends as real processes.

``pylb`` runs as a user runs it (``python -m pylb`` with flags and
environment), its access log read from its standard output and its log
lines from standard error, both without sleep-and-poll (reads wait on the
pipes, within deadlines).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.conftest import read_until

DEADLINE = 20.0


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    port: int
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)  # the lines read until it was ready
    _pending: bytes = b""

    def lines(self, count: int, timeout: float = DEADLINE) -> list[str]:
        """Wait for at least ``count`` lines on standard output; all read so far."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while len(self.stdout) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise AssertionError(f"{count} lines not seen on stdout; got:\n{''.join(self.stdout)}")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"stdout ended after:\n{''.join(self.stdout)}")
                self._pending += chunk
                *complete, self._pending = self._pending.split(b"\n")
                self.stdout += [line.decode() + "\n" for line in complete]
        return list(self.stdout)

    def until(self, text: str, timeout: float = DEADLINE) -> list[str]:
        """Wait for a line holding ``text`` on standard output; all lines read so far."""
        count = len(self.stdout)
        while not any(text in line for line in self.stdout):
            count += 1
            self.lines(count, timeout)
        return list(self.stdout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYLB_", "LOG_", "STATS_", "MONITOR_"))}
    return {**base, "PYTHONUNBUFFERED": "1", **env}


@contextmanager
def hello(name: str) -> Iterator[Proc]:
    """``pylb hello`` on a free port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylb", "hello", "--bind", "127.0.0.1:0", "--name", name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        match, _ = read_until(proc, rf"hello {name} listening on 127\.0\.0\.1:(\d+)")
        yield Proc(proc, int(match.group(1)))
    finally:
        _stop(proc)


@contextmanager
def pylb(*args: str, ready: str = r"listening on http://127\.0\.0\.1:(\d+)", **env: str) -> Iterator[Proc]:
    """``python -m pylb ARGS`` with ``env``; ``ready``: the stderr line (its
    first group: the port) that says it serves. One process unless ARGS
    give ``--workers``."""
    if "--workers" not in args:
        args = ("--workers", "1", *args)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylb", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(**env),
        text=True,
    )
    try:
        match, lines = read_until(proc, ready)
        yield Proc(proc, int(match.group(1)), stderr=lines)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request (a new connection each time): status, headers, body."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
            return answer.status, dict(answer.headers.items()), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# HAProxy's httplog layout (configuration.txt, 8.2.3), field for field, with the captured
# request and response headers blocks; as the haproxy log tools (and logstash's HAPROXYHTTP) read it.
HAPROXY_HTTP = re.compile(
    r"^(?P<client_ip>[\d.:a-fA-F]+):(?P<client_port>\d+) "
    r"\[(?P<accept_date>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})\] "
    r"(?P<frontend>\S+) (?P<backend>\S+)/(?P<server>\S+) "
    r"(?P<TR>-?\d+)/(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tr>-?\d+)/(?P<Ta>\+?\d+) "
    r"(?P<status>\d{3}) (?P<bytes_read>\+?\d+) (?P<req_cookie>\S+) (?P<res_cookie>\S+) "
    r"(?P<termination_state>[-A-Za-z]{4}) "
    r"(?P<actconn>\d+)/(?P<feconn>\d+)/(?P<beconn>\d+)/(?P<srv_conn>\d+)/(?P<retries>\+?\d+) "
    r"(?P<srv_queue>\d+)/(?P<backend_queue>\d+) "
    r"(?:\{(?P<req_headers>[^}]*)\} )?(?:\{(?P<res_headers>[^}]*)\} )?"
    r'"(?P<request>[^"]*)"$'
)
# HAProxy's tcplog layout (8.2.2).
HAPROXY_TCP = re.compile(
    r"^(?P<client_ip>[\d.:a-fA-F]+):(?P<client_port>\d+) "
    r"\[(?P<accept_date>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})\] "
    r"(?P<frontend>\S+) (?P<backend>\S+)/(?P<server>\S+) "
    r"(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tt>\+?\d+) (?P<bytes_read>\+?\d+) (?P<termination_state>[-A-Za-z]{2}) "
    r"(?P<actconn>\d+)/(?P<feconn>\d+)/(?P<beconn>\d+)/(?P<srv_conn>\d+)/(?P<retries>\+?\d+) "
    r"(?P<srv_queue>\d+)/(?P<backend_queue>\d+)$"
)
# The combined log format as Apache documents it (and nginx writes it).
COMBINED = re.compile(
    r'^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r'(?P<status>\d{3}|-) (?P<size>\d+|-) "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)
