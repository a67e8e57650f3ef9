"""Shared helpers: pylb as a real subprocess, started without sleep-and-poll."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


@dataclass
class Running:
    proc: subprocess.Popen[str]
    url: str
    port: int
    lines: list[str]

    def peak_rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")


def read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 20.0) -> tuple[re.Match[str], list[str]]:
    """Read the process's stderr (unbuffered, so no line hides in a buffer)
    until a line matches ``pattern``. Lines read past the match are kept for
    the next call on the same process."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    lines: list[str] = []
    queued, pending = _UNREAD.pop(proc, ([], b""))
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            while queued:
                line = queued.pop(0)
                lines.append(line)
                match = re.search(pattern, line)
                if match:
                    _UNREAD[proc] = (queued, pending)
                    return match, lines
            if time.monotonic() >= deadline or not selector.select(deadline - time.monotonic()):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            queued = [raw.decode(errors="replace") + "\n" for raw in complete]
    raise AssertionError(f"{pattern!r} not seen; stderr was:\n{''.join(lines)}")


# lines and bytes read past a match, per process
_UNREAD: weakref.WeakKeyDictionary[subprocess.Popen[str], tuple[list[str], bytes]] = weakref.WeakKeyDictionary()


@contextmanager
def run_pylb(*args: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    """``python -m pylb ARGS`` until the block ends (SIGTERM, then kill).
    One process (``--workers 1``) unless ARGS say otherwise, so that its
    pid is the one serving (tests read its memory)."""
    if "--workers" not in args:
        args = ("--workers", "1", *args)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylb", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        match, lines = read_until(proc, r"listening on ((?:https?|tcp|tls)://[\d.]+:(\d+))")
        yield Running(proc, match.group(1), int(match.group(2)), lines)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


# -- the two drivers of the HTTP exchange machine -------------------------------------------------

DRIVERS = ("lane", "task")


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per driver of the exchange machine: ``lane`` (the
    readiness loop, with tasks for what it hands over) and ``task`` (a task
    per connection, the loop off: ``--lanes false``). Modules that hold HTTP
    semantics say ``pytestmark = pytest.mark.usefixtures("driver")``, so a
    behaviour cannot differ between the two."""
    import pylb.net.server

    if request.param == "task":
        original = pylb.net.server.Balancer.__init__

        def without_lanes(self: pylb.net.server.Balancer, *args: object, **kwargs: object) -> None:
            kwargs["fast_lane"] = False
            original(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(pylb.net.server.Balancer, "__init__", without_lanes)
    return str(request.param)
