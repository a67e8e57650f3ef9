"""A busybox httpd CGI script in a container serves through pylb (issue 15).

busybox httpd writes its own status line for a CGI script (CRLF), then passes on the script's
header lines as the script printed them, with a bare LF each, and the body until it closes: a
head RFC 9112 2.2 lets a recipient read, and that pylb used to refuse with 502. The container
(built from busybox-static with ``docker import``, no registry) publishes its port on 127.0.0.1;
pylb runs as ``pylb --backend`` on both drivers; the client must get the script's answer with a
canonical head (CRLF line ends). Containers are named under a per-run prefix, removed by id.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.conftest import run_pylb
from tests.discovery.docker_kit import docker, require_docker

IMAGE = "pylb-test-cgi:latest"
SCRIPT = b"""#!/bin/sh
echo "Content-type: text/plain"
echo "X-Script: busybox"
echo ""
echo "hello from a busybox CGI script"
"""
APPLETS = ("sh", "httpd", "echo")
READY_S = 30.0  # the container's httpd answering (docker-proxy accepts before it listens)


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o755, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    tar.addfile(info, None if data is None else io.BytesIO(data))


def build_image() -> None:
    """IMAGE: busybox-static's httpd serving /www, with /www/cgi-bin/hello (kept once built)."""
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return
    if not os.path.exists("/bin/busybox"):
        pytest.fail("/bin/busybox is missing: apt-get install busybox-static", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="pylb-cgi-image-") as tmp:
        archive = os.path.join(tmp, "rootfs.tar")
        with tarfile.open(archive, "w") as tar:
            for directory in ("bin", "www", "www/cgi-bin"):
                _add(tar, directory)
            with open("/bin/busybox", "rb") as busybox:
                _add(tar, "bin/busybox", busybox.read())
            for applet in APPLETS:
                _add(tar, f"bin/{applet}", link="busybox")
            _add(tar, "www/cgi-bin/hello", SCRIPT)
        with open(archive, "rb") as data:
            subprocess.run(
                ["docker", "import", "-c", 'CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]', "-c", "EXPOSE 80",
                 "-", IMAGE],
                stdin=data, check=True, capture_output=True, timeout=120,
            )  # fmt: skip


def get(port: int, path: str) -> bytes:
    """Every byte of the answer to one GET (the connection closes after it: the body ends there)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: cgi.test\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.fixture(scope="module")
def cgi_port() -> Iterator[int]:
    """A CGI container running, its port 80 published on 127.0.0.1; removed at the end."""
    require_docker()
    build_image()
    name = f"pylbcgi-{os.getpid()}-{secrets.token_hex(3)}"
    ident = docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", IMAGE)
    try:
        port = int(docker("port", ident, "80/tcp").splitlines()[0].rpartition(":")[2])
        deadline = time.monotonic() + READY_S
        while True:  # bounded: docker-proxy accepts (then closes) until httpd listens
            try:
                if get(port, "/cgi-bin/hello").startswith(b"HTTP/1.1 200"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the CGI container did not answer within {READY_S:g} s"
            time.sleep(0.05)
        yield port
    finally:
        subprocess.run(["docker", "rm", "-f", ident], capture_output=True, timeout=60)


def test_busybox_cgi_answers_with_bare_lf_lines(cgi_port: int) -> None:
    """What makes this case: the container's own answer, as pylb receives it."""
    assert get(cgi_port, "/cgi-bin/hello") == (
        b"HTTP/1.1 200 OK\r\nContent-type: text/plain\nX-Script: busybox\n\nhello from a busybox CGI script\n"
    )


@pytest.mark.parametrize("lanes", ["true", "false"])
def test_a_busybox_cgi_script_serves_through_pylb(cgi_port: int, lanes: str) -> None:
    with run_pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{cgi_port}", "--lanes", lanes) as pylb:
        answer = get(pylb.port, "/cgi-bin/hello")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK\r\nContent-type: text/plain\r\nX-Script: busybox\r\nConnection: close", answer
    assert body == b"hello from a busybox CGI script\n"
