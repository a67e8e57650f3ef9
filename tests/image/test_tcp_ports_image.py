"""TCP_PORTS with pylb's own image and a real engine: containers list ports,
the balancer container (discovering through the socket) listens on them,
plain and with TLS terminated from SSL_CERT. Ports published on 127.0.0.1."""

from __future__ import annotations

import os
import ssl

import pytest
import trio
import trustme

from tests.discovery.docker_kit import in_ci
from tests.image.image_kit import IMAGE, SOCKET, Box, awk_newlines, logs, published

pytestmark = pytest.mark.timeout(600)


async def raw_get(port: int, context: ssl.SSLContext | None = None) -> str:
    """An HTTP/1.0 GET sent as raw TCP bytes (TLS first when ``context``): the body."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if context is not None:
        stream = trio.SSLStream(stream, context, server_hostname="localhost")
    async with stream:
        await stream.send_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head[:100]
    return body.decode().strip()


async def first_answer(port: int, context: ssl.SSLContext | None = None, timeout: float = 40) -> str:
    """Poll until the published port answers through pylb (docker-proxy
    accepts before pylb listens, and a container joins once healthy)."""
    last = ""
    with trio.move_on_after(timeout):
        while True:
            try:
                with trio.fail_after(5):
                    return await raw_get(port, context)
            except (OSError, trio.BrokenResourceError, trio.TooSlowError, AssertionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            await trio.sleep(0.1)
    raise AssertionError(f"127.0.0.1:{port} never answered through pylb; last: {last}")


async def test_tcp_ports_plain_and_ssl_through_the_image(box: Box) -> None:
    if not os.path.exists(SOCKET):
        reason = f"{SOCKET} is missing (the balancer container mounts it)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    pem = (leaf.private_key_pem.bytes() + b"".join(b.bytes() for b in leaf.cert_chain_pems)).decode()
    network = await box.network()
    health = ["--health-interval", "1s", "--health-start-period", "0s"]

    def hello(port: int, tcp_ports: str) -> list[str]:
        return ["--network", network, *health, "-e", f"TCP_PORTS={tcp_ports}", IMAGE, "hello", "--bind",
                f"0.0.0.0:{port}"]  # fmt: skip

    plain_a = await box.run("plain-a", *hello(7000, "7000"))
    plain_b = await box.run("plain-b", *hello(7000, "7000"))
    secure = await box.run("secure", *hello(7443, "7443/ssl"))
    lb = await box.run(
        "lb", "--network", network, "-p", "127.0.0.1::80", "-p", "127.0.0.1::7000", "-p", "127.0.0.1::7443",
        "-v", f"{SOCKET}:{SOCKET}:ro", "-e", f"SSL_CERT={awk_newlines(pem)}", IMAGE,
    )  # fmt: skip
    plain, tls = published(lb, 7000), published(lb, 7443)

    names = {f"Hello from {c.short}:7000" for c in (plain_a, plain_b)}
    seen = {await first_answer(plain)}
    with trio.fail_after(40):
        while seen != names:  # both join once healthy; connections then alternate
            seen.add(await raw_get(plain))
            await trio.sleep(0.05)

    context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
    assert await first_answer(tls, context) == f"Hello from {secure.short}:7443"

    await box.remove(plain_a)
    with trio.fail_after(20):
        while {await raw_get(plain) for _ in range(4)} != {f"Hello from {plain_b.short}:7000"}:
            await trio.sleep(0.1)
    output = logs(lb)
    assert "tcp port 7000 (service tcp:7000) opened on tcp://0.0.0.0:7000" in output
    assert "tcp port 7443/ssl (service tcp:7443) opened on tls://0.0.0.0:7443" in output
    assert "BEGIN" not in output and "PRIVATE" not in output  # the certificate never reaches the log
