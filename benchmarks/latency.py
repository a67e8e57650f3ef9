"""What one user feels: single requests through a proxy, one at a time, each one timed.

    python benchmarks/latency.py --port 8443 --tls --kind new --samples 300 --seconds 20

Owns: the client of the latency cases, on raw sockets and `ssl` (no wrk: a load generator
measures a queue; this measures one user). Three kinds of request, each sent only when the one
before has been answered:
- `new`: a new connection (with `tls`: a full TLS 1.3 handshake, no resumption), then one GET;
- `keepalive`: one GET on a connection kept open from one request to the next;
- `stream`: the same, for an answer whose backend sends it in pieces (chunked, see
  `stream_backend.py`).
Each sample is two figures: `first_ms`, from the moment the request is sent (after the connect or
handshake) to the first byte of the answer (for `stream`, the first byte of its body), and
`total_ms`, to the last byte (for `new`: from the start of the connect).
The client's sockets keep the kernel's defaults, as Python's http.client, urllib and Java's
HttpURLConnection do: Nagle's algorithm on. A TLS 1.3 client then sends its request right after
its Finished message, and the kernel holds the request until the Finished is acknowledged: a
server that answers the Finished at once (HAProxy sends its session tickets then) releases it at
once; one that stays silent lets its delayed ACK (40 ms on Linux) run out first. `nodelay=True`
(`--nodelay`) is the client of browsers and curl, which set TCP_NODELAY and do not wait.
Knows nothing of which proxy is behind the port. Invariants: every socket operation has a
timeout; a run is bounded in samples and in time; an answer that is not a complete 200 is an
error, never a sample.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

if __package__ in (None, ""):  # run as a script: import `benchmarks` as a package
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.tls import client_context

Kind = Literal["new", "keepalive", "stream"]
KINDS: tuple[Kind, ...] = ("new", "keepalive", "stream")
TIMEOUT_S = 5.0
MAX_HEAD = 65_536
MAX_ERRORS = 20
"""A run stops after this many failed requests: a broken proxy costs seconds, not minutes."""

Clock = Callable[[], float]


def _now() -> float:
    return time.perf_counter()


def request(path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pylb-bench-latency/1\r\nAccept: */*\r\n\r\n"
    ).encode()


@dataclass(frozen=True)
class Answer:
    """When the parts of one answer arrived (clock seconds), and whether the server keeps the connection."""

    status: int
    first_byte: float
    first_body_byte: float  # == done for an empty body
    done: float
    keep_alive: bool


def _chunked_end(body: bytes) -> int | None:
    """Where a complete chunked body ends in `body` (index after the final CRLF), or None if incomplete.

    Raises ValueError on a malformed chunk size.
    """
    pos = 0
    while True:
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(body[pos:line_end].split(b";", 1)[0].strip() or b"x", 16)
        pos = line_end + 2
        if size == 0:
            # trailer fields (none expected), then an empty line
            while True:
                line_end = body.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                if line_end == pos:
                    return pos + 2
                pos = line_end + 2
        if len(body) < pos + size + 2:
            return None
        if body[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        pos += size + 2


def read_answer(sock: socket.socket, clock: Clock = _now) -> Answer:
    """Read one HTTP/1.1 answer (Content-Length or chunked) from `sock`, noting when each part came.

    The request was the only one in flight: bytes past the answer's end are an error (ValueError).
    """
    buf = b""
    first = last = 0.0
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65_536)
        if not chunk:
            raise ConnectionError("closed before the end of the answer's head")
        last = clock()
        first = first or last
        buf += chunk
        if len(buf) > MAX_HEAD:
            raise ValueError("answer head too long")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    if not chunked and "content-length" not in headers:
        raise ValueError("answer without Content-Length or chunked framing")
    length = 0 if chunked else int(headers["content-length"])
    body_first = last if body else 0.0  # the body's first bytes came with the head's last

    def complete() -> bool:
        return _chunked_end(body) is not None if chunked else len(body) >= length

    while not complete():
        chunk = sock.recv(65_536)
        if not chunk:
            raise ConnectionError("closed before the end of the answer's body")
        if not body:
            body_first = clock()
        body += chunk
    done = clock()
    end = _chunked_end(body) if chunked else length
    if end is not None and len(body) > end:  # one request at a time: nothing may follow an answer
        raise ValueError(f"{len(body) - end} bytes past the end of the answer")
    keep_alive = headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
    return Answer(status, first, body_first or done, done, keep_alive)


def _connect(port: int, tls: bool, context: ssl.SSLContext | None, nodelay: bool) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    if nodelay:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not tls:
        return raw
    assert context is not None
    try:
        conn = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        conn.do_handshake()
    except BaseException:
        raw.close()
        raise
    return conn


@dataclass
class Samples:
    """The samples of one run (milliseconds), and the failures."""

    first_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    errors: int = 0
    last_error: str = ""

    def extend(self, other: Samples) -> None:
        self.first_ms += other.first_ms
        self.total_ms += other.total_ms
        self.errors += other.errors
        self.last_error = other.last_error or self.last_error

    def __len__(self) -> int:
        return len(self.total_ms)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of `values` (not empty)."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(pct / 100 * len(ranked)) - 1)]


def summary(samples: Samples) -> dict[str, float]:
    """Medians and 99th percentiles (ms) of both figures, the sample and error counts."""
    if not samples.total_ms:
        return {"samples": 0, "errors": float(samples.errors)}
    return {
        "first_p50_ms": statistics.median(samples.first_ms),
        "first_p99_ms": percentile(samples.first_ms, 99),
        "total_p50_ms": statistics.median(samples.total_ms),
        "total_p99_ms": percentile(samples.total_ms, 99),
        "samples": float(len(samples)),
        "errors": float(samples.errors),
    }


class _Client:
    """One user: sends a request, reads the whole answer, times it; keeps a connection if asked."""

    def __init__(self, port: int, path: str, kind: Kind, tls: bool, nodelay: bool) -> None:
        self.port, self.kind, self.tls, self.nodelay = port, kind, tls, nodelay
        self.request = request(path)
        self.context = client_context(tls13_only=True) if tls else None
        self.conn: socket.socket | None = None

    def sample(self) -> tuple[float, float]:
        """One request: (first_ms, total_ms). Raises OSError, ssl.SSLError or ValueError on failure."""
        start = _now()
        if self.conn is None:
            self.conn = _connect(self.port, self.tls, self.context, self.nodelay)
        if self.kind != "new":
            start = _now()  # a kept-alive connection: the time is the request's alone
        conn = self.conn
        sent = _now()
        conn.sendall(self.request)
        answer = read_answer(conn)
        if self.kind == "new" or not answer.keep_alive:
            self.close()
        if answer.status != 200:
            raise ValueError(f"status {answer.status}")
        first = answer.first_body_byte if self.kind == "stream" else answer.first_byte
        return (first - sent) * 1000, (answer.done - start) * 1000

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run(
    port: int,
    *,
    kind: Kind,
    tls: bool = False,
    nodelay: bool = False,
    path: str = "/",
    max_samples: int,
    seconds: float,
    min_samples: int = 0,
    hard_seconds: float | None = None,
) -> Samples:
    """Time requests one after another until `max_samples`, or until `seconds` have passed and at
    least `min_samples` were taken; never past `hard_seconds` (default `seconds` + 10)."""
    client = _Client(port, path, kind, tls, nodelay)
    samples = Samples()
    started = _now()
    hard = started + (seconds + 10 if hard_seconds is None else hard_seconds)
    try:
        while len(samples) < max_samples and samples.errors < MAX_ERRORS:
            now = _now()
            if now >= hard or (now - started >= seconds and len(samples) >= min_samples):
                break
            try:
                first, total = client.sample()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                client.close()
                samples.errors += 1
                samples.last_error = f"{type(exc).__name__}: {exc}"
                continue
            samples.first_ms.append(first)
            samples.total_ms.append(total)
    finally:
        client.close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Single-request latency through a proxy on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=KINDS, default="new")
    parser.add_argument("--tls", action="store_true", help="TLS 1.3 (a full handshake per new connection)")
    parser.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY, as browsers and curl do")
    parser.add_argument("--path", default="/")
    parser.add_argument("--samples", type=int, default=300, help="at most this many requests")
    parser.add_argument("--seconds", type=float, default=20.0, help="and for at most this long")
    args = parser.parse_args(argv)
    samples = run(
        args.port,
        kind=args.kind,
        tls=args.tls,
        nodelay=args.nodelay,
        path=args.path,
        max_samples=args.samples,
        seconds=args.seconds,
        hard_seconds=args.seconds,
    )
    result: dict[str, object] = {k: round(v, 3) for k, v in summary(samples).items()}
    if samples.last_error:
        result["last_error"] = samples.last_error
    print(json.dumps(result))
    return 0 if len(samples) else 1


if __name__ == "__main__":
    sys.exit(main())
