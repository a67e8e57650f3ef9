"""Kit for the image tests: the ``pylb`` image built by ``scripts/build-image``,
containers from it named under a per-run prefix and removed by id (only
ours), published ports read with ``docker port``, and small HTTP(S) clients.

Traffic goes only to 127.0.0.1 (ports published on 127.0.0.1 only) and to
containers these tests start.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tests.discovery import docker_kit
from tests.discovery.docker_kit import docker, get_once

# The image under test: "pylb" (CI builds it); PYLB_TEST_IMAGE names another tag, so that work on a
# shared engine can build and test its own (PYLB_TEST_IMAGE=pylb-mine) without touching "pylb".
IMAGE = os.environ.get("PYLB_TEST_IMAGE", "").strip() or "pylb"
ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-image"
SOCKET = "/var/run/docker.sock"


async def adocker(*args: str, timeout: float = 60) -> str:
    """The docker CLI from trio (other tasks keep running); its stdout."""
    with trio.fail_after(timeout):
        done = await trio.run_process(["docker", *args], capture_stdout=True, capture_stderr=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return done.stdout.decode().strip()


@dataclass
class Built:
    seconds: float
    size_mb: float
    output: str


def build_image() -> Built:
    """Run scripts/build-image for IMAGE (idempotent: seconds when everything is cached)."""
    started = time.monotonic()
    env = {**os.environ, "IMAGE": IMAGE}
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1500, cwd=ROOT, env=env)
    if done.returncode != 0:
        pytest.fail(f"scripts/build-image failed ({done.returncode}):\n{done.stderr[-4000:]}", pytrace=False)
    size = int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}"))
    return Built(time.monotonic() - started, size / 1e6, done.stderr)


@dataclass
class Container(docker_kit.Container):
    """A container of the image tests: the discovery kit's, plus what its hello says."""

    @property
    def hello(self) -> str:
        """What ``pylb hello`` in this container answers (its default name: host name and port)."""
        return f"Hello from {self.short}:80"


@dataclass
class Box:
    """The containers and networks of one test, named ``<prefix>...``."""

    prefix: str = field(default_factory=lambda: f"pylbi-{os.getpid()}-{secrets.token_hex(3)}-")
    created: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def name(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"

    async def run(self, name: str, *args: str) -> Container:
        """``docker run -d --name <prefix><name> ARGS`` (ARGS name the image)."""
        full = self.name(name)
        ident = await adocker("run", "-d", "--name", full, *args)
        self.created.append(ident)
        return Container(ident, full)

    async def network(self, suffix: str = "net") -> str:
        name = self.name(suffix)
        await adocker("network", "create", name)
        self.networks.append(name)
        return name

    async def remove(self, container: Container) -> None:
        await adocker("rm", "-f", container.id)
        self.created.remove(container.id)

    def cleanup(self) -> None:
        if self.created:
            subprocess.run(["docker", "rm", "-f", *self.created], capture_output=True, timeout=120)
            self.created.clear()
        for name in self.networks:
            subprocess.run(["docker", "network", "rm", name], capture_output=True, timeout=60)
        self.networks.clear()


def logs(container: Container, tail: int | None = None) -> str:
    """The container's output, stdout and stderr (pylb logs to stderr)."""
    args = ["docker", "logs", *(["--tail", str(tail)] if tail else []), container.id]
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    return done.stdout


def published(container: Container, port: int) -> int:
    """The 127.0.0.1 host port ``docker run -p 127.0.0.1::PORT`` chose."""
    lines = docker("port", container.id, f"{port}/tcp").splitlines()
    match = re.fullmatch(r"127\.0\.0\.1:(\d+)", lines[0].strip()) if lines else None
    assert match, f"port {port} of {container.name} is not published on 127.0.0.1: {lines}"
    return int(match.group(1))


async def wait_serving(port: int, host: str = "localhost", timeout: float = 30.0) -> tuple[float, str]:
    """Poll every 20 ms until a request through 127.0.0.1:``port`` gets a 200
    (docker-proxy accepts before pylb listens: early tries see the connection
    close); the seconds it took and the body."""
    started = time.monotonic()
    last = ""
    with trio.move_on_after(timeout):
        while True:
            try:
                status, body = await get_once(port, host)
            except (OSError, EOFError, trio.BrokenResourceError, ValueError, IndexError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    return time.monotonic() - started, body
                last = f"{status} {body[:200]}"
            await trio.sleep(0.02)
    raise AssertionError(f"127.0.0.1:{port} did not answer 200 within {timeout:g} s; last: {last}")


def docker_time(text: str) -> float:
    """Docker's RFC 3339 timestamp (nanoseconds, ``Z``) as seconds since the epoch."""
    stamp, _, fraction = text.strip().rstrip("Z").partition(".")
    moment = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC)
    return moment.timestamp() + float(f"0.{fraction or 0}")


async def listening_since(ident: str, timeout: float = 30.0) -> float:
    """When the container's ``pylb hello`` logged that it listens (its
    listener was bound just before), by Docker's log timestamps (wall clock)."""
    with trio.fail_after(timeout):
        while True:
            done = await trio.run_process(
                ["docker", "logs", "--timestamps", ident], capture_stdout=True, capture_stderr=True, check=False
            )
            for line in (done.stdout + done.stderr).decode(errors="replace").splitlines():
                if " listening on " in line:
                    return docker_time(line.split(" ", 1)[0])
            await trio.sleep(0.1)


def https_get(port: int, ca_context: ssl.SSLContext, server_name: str = "localhost") -> tuple[int, str, str]:
    """GET / over TLS to 127.0.0.1:``port`` with SNI ``server_name``, trusting
    only ``ca_context``'s CAs: (status, body, negotiated TLS version)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ca_context.wrap_socket(raw, server_hostname=server_name) as tls:
            version = tls.version() or "?"
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode("latin-1").strip(), version


def awk_newlines(text: str) -> str:
    """What ``awk 1 ORS='\\\\n' FILE`` prints for a file holding ``text``: each
    line followed by the two characters backslash and n (the last line too)."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return "".join(line + "\\n" for line in lines)
