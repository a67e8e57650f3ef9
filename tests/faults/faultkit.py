"""Kit for the fault-injection suite (issue 7): backends that misbehave on
purpose, a port whose connects hang, and pylb as a subprocess with a log
that can be awaited.

Reuses the e2e kit (``tests/e2e/e2e_kit.py``): its raw client ``Peer`` reads
responses with its own small parser, so pylb's framing bugs are not hidden
by sharing code with it. Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import socket as stdsocket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import trio

import pylb
from tests.e2e.e2e_kit import HOST, Backend, Handler, Message, Peer, response_bytes

NO_CHECKS = pylb.HealthCheck(enabled=False)


# --------------------------------------------------------------------------- backends


def describe(req: Message) -> bytes:
    """A response saying what the backend received (robust to odd heads)."""
    body = json.dumps(
        {"start": req.start_line.decode("latin-1"), "body_length": len(req.body), "body": req.body.decode("latin-1")}
    ).encode()
    return response_bytes(200, "OK", [("Content-Type", "application/json")], body)


def recording(respond: Callable[[Message], bytes] = describe) -> Handler:
    """A keep-alive backend answering ``respond(req)``; a request it cannot
    even parse is recorded in ``server.garbled`` (the connection then closes)."""

    async def handler(server: Backend, peer: Peer) -> None:
        garbled: list[str] = server.__dict__.setdefault("garbled", [])
        while True:
            try:
                req = await server.next_request(peer)
            except (ValueError, IndexError, AssertionError) as exc:
                garbled.append(f"{exc!r} buffered={peer.buf[:200]!r}")
                return
            if req is None:
                return
            await peer.send(respond(req))

    return handler


def start_lines(server: Backend) -> list[str]:
    return [m.start_line.decode("latin-1") for m in server.seen]


def garbled(server: Backend) -> list[str]:
    return list(server.__dict__.get("garbled", []))


# --------------------------------------------------------------------------- a port whose connects hang


def _connect_hangs(address: tuple[str, int], fillers: list[stdsocket.socket], wait: float) -> bool:
    sock = stdsocket.socket()
    sock.setblocking(False)
    fillers.append(sock)  # kept (open) until the end: it occupies the queue if it connects
    sock.connect_ex(address)
    _, writable, _ = select.select([], [sock], [], wait)
    return not writable


@contextmanager
def hanging_port() -> Iterator[int]:
    """A port that listens with ``listen(0)`` and never accepts: once its
    accept queue is full (filled here with unaccepted connections) the
    kernel drops further SYNs, so a connect neither succeeds nor fails.
    Skips the test when this kernel completes connects anyway."""
    listener = stdsocket.socket()
    fillers: list[stdsocket.socket] = []
    try:
        listener.bind((HOST, 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(8):  # Linux: one connection fills a listen(0) queue; the next SYN is dropped
            if _connect_hangs(address, fillers, 0.3):
                break
        else:
            pytest.skip("connect to a full listen(0) queue does not hang on this kernel")
        yield address[1]
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


# --------------------------------------------------------------------------- pylb as a process


def vm_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (pylb's worker processes)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += [child for child, parent in parents.items() if parent == current]
    return tree


def tree_kib(pid: int, field: str = "VmRSS") -> int:
    """``field`` summed over ``pid`` and its descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            total += vm_kib(member, field)
        except (OSError, AssertionError):
            continue  # gone, or a zombie
    return total


class Process:
    """``python -m pylb ARGS`` with its stderr collected by a thread, so the
    pipe never fills and lines can be awaited without blocking trio."""

    def __init__(self, args: list[str], nofile: int | None = None) -> None:
        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pylb", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
            preexec_fn=limit,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20.0, start: int = 0, count: int = 1) -> re.Match[str]:
        """Block until ``count`` stderr lines (from line ``start`` on) match;
        returns the last match."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [m for m in (re.search(pattern, line) for line in self.lines[start:]) if m]
                if len(matches) >= count:
                    return matches[count - 1]
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    raise AssertionError(f"{pattern!r} not seen {count} times in pylb's stderr:\n{''.join(self.lines)}")
                self._changed.wait(left)

    async def await_line(self, pattern: str, timeout: float = 20.0, start: int = 0, count: int = 1) -> re.Match[str]:
        return await trio.to_thread.run_sync(self.wait_for, pattern, timeout, start, count)

    async def await_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout``."""

        def wait() -> int | None:
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None

        return await trio.to_thread.run_sync(wait)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@contextmanager
def pylb_process(*args: str, nofile: int | None = None) -> Iterator[tuple[Process, int]]:
    """pylb running until the block ends; yields it and its HTTP port."""
    process = Process(list(args), nofile)
    try:
        match = process.wait_for(r"listening on http://[\d.]+:(\d+)")
        yield process, int(match.group(1))
    finally:
        process.stop()


async def get_status(port: int, target: str = "/") -> int:
    async with await Peer.connect(port) as peer:
        return (await peer.request("GET", target)).status


async def connect_refused(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream(HOST, port)
    except OSError:
        return True
    await stream.aclose()
    return False
