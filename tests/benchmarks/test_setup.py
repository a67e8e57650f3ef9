"""What the benchmark generates and starts, checked by the programs that consume it: HAProxy's
own config check, pylb started with the benchmark's command (TLS included) and asked through the
latency client and the TLS probe, wrk running the browser-like script against a recording server,
and the streaming backend read through the latency client. No speed is asserted."""

from __future__ import annotations

import os
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks import latency, stream_backend, tls, wrk
from benchmarks.cases import CASES_BY_NAME, wrk_load
from benchmarks.servers import Backend, Frontend, PylbInfo, haproxy_config, pylb_argv
from tests.conftest import run_pylb


def _needs(tool: str) -> pytest.MarkDecorator:
    """Skip without ``tool`` outside CI; in CI (CI=true, .ci/run installs it) the test runs and fails."""
    missing = shutil.which(tool) is None and os.environ.get("CI", "").lower() != "true"
    return pytest.mark.skipif(missing, reason=f"{tool} not installed")


needs_haproxy, needs_wrk, needs_openssl = _needs("haproxy"), _needs("wrk"), _needs("openssl")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tls.write_certificate(tmp_path_factory.mktemp("cert"))


def _backends(*ports: int) -> list[Backend]:
    return [Backend(f"b{n}", port, None) for n, port in enumerate(ports)]  # type: ignore[arg-type]


@contextmanager
def _serving(server: socketserver.BaseServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]  # type: ignore[misc]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_certificate_is_one_pem_with_an_ecdsa_p256_key(cert: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem = cert.read_bytes()
    key = load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    leaf = x509.load_pem_x509_certificates(pem)[0]
    assert leaf.public_key() == key.public_key()
    assert cert.stat().st_mode & 0o077 == 0


@needs_haproxy
@pytest.mark.parametrize(
    ("case", "present", "absent"),
    [
        ("https_keepalive", ["ssl crt ", "alpn http/1.1", "option splice-auto"], ["splice-request"]),
        ("tcp_bulk", ["mode tcp", "option splice-request", "option splice-response"], ["splice-auto", "ssl crt"]),
        ("small_keepalive", ["mode http", "option splice-auto", "http-reuse always"], ["ssl crt", "httplog"]),
        (
            "small_keepalive_log",
            ["log stdout format raw", "option httplog", "capture request header Host", "capture response header"],
            ["ssl crt"],
        ),
    ],
)
def test_haproxy_accepts_the_generated_config(
    case: str, present: list[str], absent: list[str], cert: Path, tmp_path: Path
) -> None:
    frontend = CASES_BY_NAME[case].frontend(cert)
    text = haproxy_config(tmp_path, frontend, 18_443, _backends(18_001, 18_002))
    for line in present:
        assert line in text
    for line in absent:
        assert line not in text
    assert "stats socket " in text
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(text)
    done = subprocess.run(["haproxy", "-c", "-f", str(conf)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_tls_is_terminated_in_http_mode_only(cert: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http mode only"):
        haproxy_config(tmp_path, Frontend("tcp", cert), 18_443, _backends(18_001))


def test_the_s_client_reader_takes_both_openssl_forms() -> None:
    old = "Protocol version: TLSv1.3\nCiphersuite: TLS_AES_256_GCM_SHA384\nSignature type: ECDSA\n"
    old += "Server Temp Key: X25519, 253 bits\n"
    new = old.replace("Server Temp Key: X25519, 253 bits", "Negotiated TLS1.3 group: X25519")
    expected = {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "group": "X25519", "signature": "ECDSA"}
    assert tls.parse_s_client(old) == expected == tls.parse_s_client(new)
    assert set(tls.parse_s_client("connect: Connection refused").values()) == {"?"}


@needs_openssl
def test_pylb_with_the_benchmark_command_serves_tls13_to_the_latency_client(cert: Path) -> None:
    server = stream_backend._Server(("127.0.0.1", 0), stream_backend._Handler)
    server.chunks, server.gap_s = 3, 0.001
    with _serving(server) as backend_port:
        argv = pylb_argv(PylbInfo(True, "", True, True), Frontend("http", cert), 0, _backends(backend_port))
        assert argv[:3] == [sys.executable, "-m", "pylb"]
        assert "https://127.0.0.1:0" in argv and argv[argv.index("--ssl-cert") + 1] == str(cert)
        with run_pylb(*argv[3:]) as pylb:
            assert pylb.url.startswith("https://")
            facts = tls.probe(pylb.port)
            samples = latency.run(pylb.port, kind="new", tls=True, max_samples=3, seconds=30)
            streamed = latency.run(pylb.port, kind="stream", tls=True, max_samples=3, seconds=30)
    assert (facts.version, facts.signature) == ("TLSv1.3", "ECDSA")
    for got in (samples, streamed):
        assert len(got) == 3 and got.errors == 0, got.last_error
        assert all(first <= total for first, total in zip(got.first_ms, got.total_ms, strict=True))


def test_the_stream_backend_sends_its_pieces_one_by_one() -> None:
    server = stream_backend._Server(("127.0.0.1", 0), stream_backend._Handler)
    server.chunks, server.gap_s, server.payload = 4, 0.002, b"p" * 7
    with _serving(server) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        answers = []
        for _ in range(2):  # two requests, one connection
            sock.sendall(latency.request("/stream"))
            answers.append(latency.read_answer(sock))
    assert [answer.status for answer in answers] == [200, 200]
    assert all(answer.first_byte <= answer.first_body_byte <= answer.done for answer in answers)


class _Recorder(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordHandler)
        self.heads: list[bytes] = []


class _RecordHandler(socketserver.BaseRequestHandler):
    server: _Recorder

    def handle(self) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = self.request.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                self.server.heads.append(head)
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            return


@needs_wrk
def test_wrk_sends_browser_like_heads_no_two_alike(tmp_path: Path) -> None:
    recorder = _Recorder()
    with _serving(recorder) as port:
        load = wrk_load(CASES_BY_NAME["browser_varied"], port, tmp_path)
        assert load.script is not None and load.url == f"http://127.0.0.1:{port}/app/"
        cmd = wrk.argv(load.url, connections=2, duration_s=1, script=load.script)[3:]  # not pinned to a core
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    heads = recorder.heads
    assert len(heads) >= 10
    assert len(set(heads)) == len(heads)
    for head in heads:
        assert 400 <= len(head) <= 900
        lines = head.decode().split("\r\n")
        assert re.fullmatch(r"GET /app/\w+/\d+\?q=item\+\d+&page=\d+&\S+ HTTP/1\.1", lines[0])
        names = [line.split(":", 1)[0] for line in lines[1:]]
        expected = ["Host", "User-Agent", "Accept", "Accept-Language", "Accept-Encoding", "Referer", "Cookie"]
        assert names == [*expected, "X-Request-Id"]
    for name in ("Cookie", "X-Request-Id", "Referer"):
        values = [re.search(rf"\r\n{name}: ([^\r]*)", head.decode()).group(1) for head in heads]  # type: ignore[union-attr]
        assert len(set(values)) >= len(values) - 1  # the Referer repeats once per connection, at its start


def test_a_pythonpath_naming_another_checkout_is_refused_not_silently_ignored(tmp_path: Path) -> None:
    """pylb runs from the checkout the benchmark lives in (or --tree's): PYTHONPATH=<other checkout>
    would measure this one under the other's name, so the run stops and says how to measure it."""
    other = tmp_path / "other"
    (other / "pylb").mkdir(parents=True)
    (other / "pylb" / "__init__.py").write_text("")
    env = dict(os.environ, PYTHONPATH=str(other))
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--cases", "small_keepalive"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"PYTHONPATH names another pylb checkout ({other})" in done.stderr
    assert f"measure it with --tree {other}" in done.stderr
