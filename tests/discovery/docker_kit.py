"""Real-Docker test kit: a backend image built locally, containers and networks
under a per-run name prefix (removed by id, only ours), and a small raw
HTTP/1.1 keep-alive client with a bounded load generator.

Traffic goes only to 127.0.0.1 and to containers these tests start.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
import trio

IMAGE = "pylb-test-backend:latest"
# Writes the container's hostname (its short id) as the page, so every answer
# says which container served it. On SIGTERM it keeps serving STOP_DELAY
# seconds (an app draining its requests), then exits.
START_SH = """#!/bin/sh
hostname > /www/index.html
busybox httpd -f -p 80 -h /www &
pid=$!
trap 'sleep "${STOP_DELAY:-1}"; kill $pid; exit 0' TERM INT
wait $pid
"""
APPLETS = ("sh", "httpd", "sleep", "hostname", "kill", "touch", "rm", "test", "cat", "echo", "mkdir")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    """Run the docker CLI; its stdout, stripped."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def unavailable() -> str | None:
    """Why Docker cannot be used here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        import docker as _sdk  # noqa: F401
    except ImportError:
        return "the docker Python package is not installed (a dependency of pylb: pip install -e .)"
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 20 s"
    if done.returncode != 0:
        return f"docker info failed: {done.stderr.strip()[:300]}"
    return None


def require_docker() -> None:
    """Skip with the reason outside CI; fail loudly in CI (CI=true)."""
    reason = unavailable()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"Docker is required in CI and is unavailable: {reason}", pytrace=False)
    pytest.skip(f"Docker unavailable: {reason}")


def build_image() -> None:
    """Build IMAGE from a busybox rootfs with ``docker import`` (no registry);
    kept if it already exists."""
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return
    busybox = "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.fail("/bin/busybox is missing: apt-get install busybox-static", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="pylb-image-") as tmp:
        archive = os.path.join(tmp, "rootfs.tar")
        with tarfile.open(archive, "w") as tar:
            _add_dir(tar, "bin")
            _add_dir(tar, "www")
            tar.add(busybox, "bin/busybox")
            for applet in APPLETS:
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
            _add_bytes(tar, "start.sh", START_SH.encode(), 0o755)
        with open(archive, "rb") as data:
            subprocess.run(
                ["docker", "import", "-c", 'CMD ["/bin/sh", "/start.sh"]', "-c", "EXPOSE 80", "-", IMAGE],
                stdin=data,
                check=True,
                capture_output=True,
                timeout=120,
            )


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


@dataclass
class Container:
    id: str
    name: str

    @property
    def short(self) -> str:
        return self.id[:12]


@dataclass
class DockerKit:
    """Containers and networks of this test run, named ``<prefix>-...``."""

    prefix: str = field(default_factory=lambda: f"pylbt-{os.getpid()}-{secrets.token_hex(3)}")
    network: str = ""
    created: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    count: int = 0

    def host(self, tag: str) -> str:
        """A virtual host name unique to this run."""
        return f"{tag}.{self.prefix}.test"

    def create_network(self, suffix: str = "net") -> str:
        name = f"{self.prefix}-{suffix}"
        docker("network", "create", name)
        self.networks.append(name)
        return name

    def run_args(
        self,
        labels: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        extra: Sequence[str] = (),
        network: str | None = None,
        command: Sequence[str] = (),
    ) -> tuple[str, list[str]]:
        self.count += 1
        name = f"{self.prefix}-{self.count}"
        args = ["run", "-d", "--name", name, "--network", network or self.network]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        return name, [*args, *extra, IMAGE, *command]

    def run(self, **kwargs: object) -> Container:
        name, args = self.run_args(**kwargs)  # type: ignore[arg-type]
        ident = docker(*args)
        self.created.append(ident)
        return Container(ident, name)

    async def arun(self, **kwargs: object) -> Container:
        name, args = self.run_args(**kwargs)  # type: ignore[arg-type]
        done = await trio.run_process(["docker", *args], capture_stdout=True, capture_stderr=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"docker run failed: {done.stderr.decode().strip()}")
        ident = done.stdout.decode().strip()
        self.created.append(ident)
        return Container(ident, name)

    async def acommand(self, *args: str) -> None:
        done = await trio.run_process(["docker", *args], capture_stdout=True, capture_stderr=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.decode().strip()}")

    def remove_containers(self) -> None:
        if self.created:
            subprocess.run(["docker", "rm", "-f", *self.created], capture_output=True, timeout=120)
            self.created.clear()

    def cleanup(self) -> None:
        self.remove_containers()
        for name in self.networks:
            subprocess.run(["docker", "network", "rm", name], capture_output=True, timeout=60)
        self.networks.clear()


def wait_for_output(proc: subprocess.Popen[bytes], pattern: str, timeout: float = 20.0) -> re.Match[str]:
    """Read ``proc``'s stderr (unbuffered, so no line hides in a buffer) until
    ``pattern`` matches the text so far; bounded by ``timeout``."""
    assert proc.stderr is not None
    fd, text = proc.stderr.fileno(), ""
    deadline = time.monotonic() + timeout
    while (match := re.search(pattern, text)) is None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{pattern!r} not seen within {timeout:g} s; stderr was:\n{text}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"{pattern!r} not seen before the process ended; stderr was:\n{text}")
        text += chunk.decode("utf-8", "replace")
    return match


# -- a raw HTTP/1.1 client -------------------------------------------------------------------


class HttpClient:
    """One keep-alive connection to 127.0.0.1:``port``, sending ``Host: host``."""

    def __init__(self, port: int, host: str) -> None:
        self.port, self.host = port, host
        self.stream: trio.SocketStream | None = None
        self.buffer = b""

    async def get(self, path: str = "/") -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buffer = b""
        await self.stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        body = await self._exactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            await stream.aclose()

    async def _more(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("connection closed by pylb")
        self.buffer += data

    async def _until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            await self._more()
        head, self.buffer = self.buffer[:end], self.buffer[end + len(marker) :]
        return head

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._more()
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return body


async def get_once(port: int, host: str) -> tuple[int, str]:
    client = HttpClient(port, host)
    try:
        status, body = await client.get()
    finally:
        await client.close()
    return status, body.decode("latin-1").strip()


async def wait_served_by(port: int, host: str, shorts: set[str], timeout: float = 10.0) -> float:
    """Probe every 5 ms (bounded by ``timeout``) until every container in
    ``shorts`` has answered; return the seconds it took."""
    start = time.monotonic()
    seen: set[str] = set()
    with trio.fail_after(timeout):
        while not shorts <= seen:
            status, body = await get_once(port, host)
            if status == 200:
                seen.add(body)
            else:
                await trio.sleep(0.005)
    return time.monotonic() - start


@dataclass
class Failure:
    started: float
    detail: str


@dataclass
class LoadStats:
    """What a load run saw. ``first_seen``: when (wall clock, ``time.time()``:
    comparable with Docker's timestamps) each backend's first answer came;
    ``on_new(body)`` is called at that moment."""

    ok: int = 0
    failures: list[Failure] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)
    on_new: Callable[[str], None] | None = None

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)


async def load(port: int, host: str, connections: int, stop: trio.Event, stats: LoadStats, limit: float = 60) -> None:
    """``connections`` keep-alive clients sending GETs back to back until
    ``stop`` is set (or ``limit`` seconds pass). Every request that does not
    get a 200 from a backend is a failure, timed by when it started."""

    async def client() -> None:
        http = HttpClient(port, host)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    with trio.fail_after(10):
                        status, body = await http.get()
                except (OSError, EOFError, trio.BrokenResourceError, trio.TooSlowError, ValueError) as exc:
                    stats.failures.append(Failure(started, f"{type(exc).__name__}: {exc}"))
                    await http.close()
                    continue
                if status == 200:
                    stats.ok += 1
                    name = body.decode("latin-1").strip()
                    stats.served_by[name] += 1
                    if name not in stats.first_seen:
                        stats.first_seen[name] = time.time()
                        if stats.on_new is not None:
                            stats.on_new(name)
                else:
                    stats.failures.append(Failure(started, f"{status} {body[:200]!r}"))
        finally:
            await http.close()

    with trio.move_on_after(limit):
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(client)
