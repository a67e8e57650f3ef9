"""The access log as a user reads it: pylb's standard output, parsed back in each format.

Every line is read back with a parser of its format: HAProxy's documented
``httplog`` and ``tcplog`` layouts (``kit.HAPROXY_HTTP``/``HAPROXY_TCP``),
Apache's combined regex, ``json.loads``. Authorization and Cookie values
never appear, whatever the format.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.observe.kit import COMBINED, HAPROXY_HTTP, HAPROXY_TCP, get, hello, pylb

SECRET_HEADERS = {
    "Authorization": "Basic dXNlcjpodW50ZXIy",  # user:hunter2
    "Cookie": "session=s3cr3t-cookie",
    "User-Agent": "observe-test/1.0",
    "Referer": "http://ref.test/from",
}


def _bad_request(port: int) -> None:
    """A head pylb cannot read: pylb answers 400 (HAProxy logs <BADREQ>)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /\x01bad HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")


def _no_secret(lines: list[str]) -> None:
    text = "".join(lines)
    for value in ("dXNlcjpodW50ZXIy", "hunter2", "s3cr3t-cookie", "session="):
        assert value not in text


def test_haproxy_lines_parse_as_haproxys_httplog() -> None:
    with hello("web1") as web, pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}",
                                     LOG_FORMAT="haproxy") as lb:  # fmt: skip
        answer = _raw(lb.port, b"GET /path?q=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n"
                      + "".join(f"{k}: {v}\r\n" for k, v in SECRET_HEADERS.items()).encode() + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"Hello from web1\n")
        _bad_request(lb.port)
        lines = lb.until("<BADREQ>")
    _no_secret(lines)
    parsed = [HAPROXY_HTTP.match(line.rstrip("\n")) for line in lines]
    assert all(parsed), lines
    first = next(m for m in parsed if m is not None and m["request"].startswith("GET"))
    bad = next(m for m in parsed if m is not None and m["request"] == "<BADREQ>")
    assert first["client_ip"] == "127.0.0.1" and int(first["client_port"]) > 0
    assert first["frontend"] == f"http:{lb.port}"
    assert (first["backend"], first["server"]) == ("default", f"127.0.0.1:{web.port}")
    assert first["request"] == "GET /path?q=1 HTTP/1.1"
    assert first["status"] == "200" and first["termination_state"] == "----"
    assert int(first["bytes_read"]) == len(answer)  # the head and the body, as HAProxy's %B
    assert first["req_headers"] == "app.test"  # the Host
    assert first["res_headers"] and first["res_headers"] != bad["res_headers"]  # each request's own id
    assert first["Tw"] == "0" and int(first["Tc"]) >= 0 and int(first["Tr"]) >= 0
    assert int(first["Ta"]) >= int(first["Tr"])
    assert first["retries"] == "0" and (first["srv_queue"], first["backend_queue"]) == ("0", "0")
    accepted = time.strptime(first["accept_date"].split(".")[0], "%d/%b/%Y:%H:%M:%S")
    assert abs(time.mktime(accepted) - time.time()) < 60
    # the bad head: <BADREQ>, no backend, pylb's own answer (PR), its request id as on the error page
    assert bad["request"] == "<BADREQ>" and bad["status"] == "400"
    assert bad["server"] == "<NOSRV>" and bad["termination_state"] == "PR--"
    assert (bad["Tw"], bad["Tc"], bad["Tr"]) == ("-1", "-1", "-1")


def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection; everything the answer held until the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_haproxy_tcplog_for_tcp_connections() -> None:
    tcp = r"listening on tcp://127\.0\.0\.1:(\d+)"
    with hello("web1") as web, pylb("--bind", "tcp://127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}",
                                     ready=tcp, LOG_FORMAT="haproxy") as lb:  # fmt: skip
        with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        lines = lb.lines(1)
    match = HAPROXY_TCP.match(lines[0].rstrip("\n"))
    assert match is not None, lines
    assert match["frontend"] == f"tcp:{lb.port}" and match["server"] == f"127.0.0.1:{web.port}"
    assert int(match["bytes_read"]) == len(answer) and match["termination_state"] == "--"
    assert int(match["Tc"]) >= 0 and int(match["Tt"]) >= int(match["Tc"])


def test_combined_lines_parse_with_the_combined_regex() -> None:
    with hello("web1") as web, pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}",
                                     LOG_FORMAT="combined") as lb:  # fmt: skip
        status, _, body = get(f"{lb.url}/a%22b?c=d", SECRET_HEADERS)
        assert status == 200
        get(f"{lb.url}/", {"Cookie": "session=s3cr3t-cookie"})
        lines = lb.lines(2)
    _no_secret(lines)
    first, second = (COMBINED.match(line.rstrip("\n")) for line in lines[:2])
    assert first is not None and second is not None, lines
    assert first["host"] == "127.0.0.1" and (first["ident"], first["user"]) == ("-", "-")
    assert first["request"] == "GET /a%22b?c=d HTTP/1.1" and first["status"] == "200"
    assert first["referer"] == "http://ref.test/from" and first["agent"] == "observe-test/1.0"
    assert int(first["size"]) > len(body)
    time.strptime(first["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert second["referer"] == "-" and second["agent"].startswith("Python-urllib")


def test_json_lines_load_with_every_field() -> None:
    with hello("web1") as web, pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}",
                                     LOG_FORMAT="json") as lb:  # fmt: skip
        get(f"{lb.url}/x", SECRET_HEADERS)
        lines = lb.lines(1)
    _no_secret(lines)
    entry = json.loads(lines[0])
    assert entry["mode"] == "http" and entry["method"] == "GET" and entry["target"] == "/x"
    assert entry["status"] == 200 and entry["service"] == "default"
    assert entry["backend"] == f"127.0.0.1:{web.port}" and entry["host"] == f"127.0.0.1:{lb.port}"
    assert entry["version"] == "HTTP/1.1" and entry["user_agent"] == "observe-test/1.0"
    assert entry["t_queue"] == 0 and entry["t_total"] >= entry["t_response"] >= 0
    assert entry["termination"] == "--" and entry["retries"] == 0 and entry["request_id"]
    assert set(entry) >= {"time", "client", "client_port", "bytes_sent", "bytes_received", "t_request", "t_connect"}
    assert "authorization" not in json.dumps(entry).lower() and "cookie" not in json.dumps(entry).lower()


def test_an_error_line_carries_the_request_id_of_the_error_page() -> None:
    with pylb("--bind", "127.0.0.1:0", "--backend", "127.0.0.1:9", "--health-check", "none",
              LOG_FORMAT="json") as lb:  # fmt: skip
        status, headers, _ = get(f"{lb.url}/")
        assert status in (502, 503)
        entry = json.loads(lb.lines(1)[0])
    assert entry["status"] == status and entry["request_id"] == headers["X-Request-Id"]
    assert entry["termination"][0] in "SsP"


@pytest.mark.parametrize("fmt", ["off", ""])
def test_no_access_log_unless_asked(fmt: str) -> None:
    env = {"LOG_FORMAT": fmt} if fmt else {}
    with hello("web1") as web, pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}", **env) as lb:
        assert get(f"{lb.url}/")[0] == 200
        lb.proc.send_signal(15)
        lb.proc.wait(15)
        assert lb.proc.stdout is not None
        assert lb.proc.stdout.read() == ""
