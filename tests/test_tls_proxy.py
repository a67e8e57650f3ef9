"""https through pylb: certificates from code and from SSL_CERT, FORCE_SSL,
HSTS, runtime certificates, refused old clients. Clients trust only the
test CA (trustme)."""

import socket
import ssl
import subprocess
import sys

import httpx
import pytest
import trio
import trustme

import pylb
from pylb.testing import open_hello
from tests.conftest import run_pylb

pytestmark = pytest.mark.usefixtures("driver")  # the semantics hold on both drivers


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_https_from_a_trustme_ca_serves_and_forwards_proto(ca: trustme.CA) -> None:
    async with open_hello("web") as hello, pylb.open_balancer([hello.backend], tls=ca, hsts_max_age=600) as lb:
        assert lb.url.startswith("http://") and lb.https_url.startswith("https://")

        def get() -> tuple[httpx.Response, httpx.Response]:
            with httpx.Client(verify=client_context(ca)) as client:
                secure = client.get(lb.https_url.replace("127.0.0.1", "localhost") + "/headers")
                plain = client.get(lb.url + "/headers")
            return secure, plain

        secure, plain = await trio.to_thread.run_sync(get)
        assert secure.status_code == 200 and secure.http_version == "HTTP/1.1"
        assert b"X-Forwarded-Proto: https" in secure.content
        assert secure.headers["strict-transport-security"] == "max-age=600"
        assert b"X-Forwarded-Proto: http\r\n" in plain.content
        assert "strict-transport-security" not in plain.headers


async def test_force_ssl_redirects_keeping_host_and_path(ca: trustme.CA) -> None:
    async with open_hello() as hello, pylb.open_balancer([hello.backend], tls=ca, force_ssl=True) as lb:
        port = lb.addresses[1].port

        def requests() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            with httpx.Client(verify=client_context(ca)) as client:
                get = client.get(lb.url + "/a/b?c=1", headers={"Host": "shop.test"})
                post = client.post(lb.url + "/form", content=b"x", headers={"Host": "shop.test:8080"})
                secure = client.get(f"https://localhost:{port}/")
            return get, post, secure

        get, post, secure = await trio.to_thread.run_sync(requests)
        assert (get.status_code, get.headers["location"]) == (301, f"https://shop.test:{port}/a/b?c=1")
        assert (post.status_code, post.headers["location"]) == (308, f"https://shop.test:{port}/form")
        assert secure.status_code == 200
        assert hello.requests == 1  # the redirected requests never reached the backend


async def test_certificate_added_at_run_time_is_chosen_by_sni(ca: trustme.CA) -> None:
    other = ca.issue_cert("b.test")
    async with open_hello() as hello, pylb.open_balancer([hello.backend], tls=ca) as lb:
        port = lb.addresses[1].port

        def names_seen(server_name: str) -> list[str]:
            ctx = client_context(ca)
            ctx.check_hostname = False
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                ctx.wrap_socket(raw, server_hostname=server_name) as tls,
            ):
                cert = tls.getpeercert()
            return [v for k, v in cert["subjectAltName"] if k == "DNS"]

        assert await trio.to_thread.run_sync(names_seen, "b.test") == ["localhost"]
        lb.add_certificate(other.private_key_and_cert_chain_pem.bytes().decode())
        assert await trio.to_thread.run_sync(names_seen, "b.test") == ["b.test"]
        assert await trio.to_thread.run_sync(names_seen, "localhost") == ["localhost"]


async def test_tls_1_1_and_cbc_only_clients_are_refused(ca: trustme.CA) -> None:
    async with open_hello() as hello, pylb.open_balancer([hello.backend], tls=ca) as lb:
        port = lb.addresses[1].port

        def handshake(ctx: ssl.SSLContext) -> str:
            ca.configure_trust(ctx)
            try:
                with (
                    socket.create_connection(("127.0.0.1", port)) as raw,
                    ctx.wrap_socket(raw, server_hostname="localhost") as tls,
                ):
                    return f"accepted {tls.version()} {tls.selected_alpn_protocol()}"
            except (ssl.SSLError, ConnectionResetError) as exc:
                return f"refused {type(exc).__name__}"

        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        cbc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cbc.maximum_version = ssl.TLSVersion.TLSv1_2
        cbc.set_ciphers("ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA")
        good = ssl.create_default_context()
        good.set_alpn_protocols(["h2", "http/1.1"])
        assert (await trio.to_thread.run_sync(handshake, old)).startswith("refused")
        assert (await trio.to_thread.run_sync(handshake, cbc)).startswith("refused")
        assert (await trio.to_thread.run_sync(handshake, good)) in (
            "accepted TLSv1.3 http/1.1",
            "accepted TLSv1.2 http/1.1",
        )


def test_ssl_cert_env_with_escaped_newlines_serves_https_beside_http(ca: trustme.CA) -> None:
    pem = ca.issue_cert("localhost").private_key_and_cert_chain_pem.bytes().decode()
    escaped = pem.replace("\n", "\\n")  # what awk 1 ORS='\\n' cert.pem prints
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        https_port = probe.getsockname()[1]
    args = ["--bind", "127.0.0.1:0", "--bind", f"https://127.0.0.1:{https_port}", "--backend", "127.0.0.1:9"]
    with run_pylb(*args, env={"SSL_CERT": escaped}) as lb, httpx.Client(verify=client_context(ca)) as client:
        secure = client.get(f"https://localhost:{https_port}/")
        plain = client.get(lb.url)
    assert secure.status_code == 502  # nothing listens on port 9: the https path reached the proxy
    assert plain.status_code == 502
    assert "listening on" in "".join(lb.lines)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SSL_CERT": "-----BEGIN CERTIFICATE-----\\nZm9v\\n-----END CERTIFICATE-----"}, "SSL_CERT: "),
        ({"SSL_CERT": "hello"}, "SSL_CERT: "),
    ],
)
def test_bad_certificate_is_one_line_naming_the_variable_without_its_value(env: dict[str, str], fragment: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pylb", "--backend", "127.0.0.1:9"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pylb: error: " + fragment), result.stderr
    assert "Zm9v" not in result.stderr and "hello" not in result.stderr


def test_https_bind_without_certificate_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pylb", "--bind", "https://127.0.0.1:0", "--backend", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "no certificate for https (set SSL_CERT or pass --ssl-cert FILE)" in result.stderr
