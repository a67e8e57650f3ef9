"""A backend that answers in pieces, for the `latency_stream` case: the head at once, then the body
in chunks a fixed gap apart, as a server streaming a page or events does.

    python benchmarks/stream_backend.py --port 9000 [--chunks 10 --gap-ms 5 --chunk-bytes 100]

Owns: the streamed answer (HTTP/1.1, `Transfer-Encoding: chunked`, keep-alive): for every request
(any method and path; a request body is not expected), the head alone, then `--chunks` chunks of
`--chunk-bytes` bytes, the k-th sent `k * --gap-ms` after the head (deadlines from the head, so
the gaps do not drift), then the last chunk. TCP_NODELAY, so each piece leaves when written.
Knows nothing of proxies. Invariants: listens on 127.0.0.1 only; a thread per connection; the
process runs until it is stopped (the harness stops it by pid).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import socketserver
import sys
import time

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\n\r\n"
MAX_HEAD = 65_536


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024
    chunks = 10
    gap_s = 0.005
    payload = b"x" * 100


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65_536)
                    if not data or len(buf) > MAX_HEAD:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                self._answer(sock)
                if b"\r\nconnection: close" in head.lower():
                    return
        except OSError:  # the proxy closed or reset the connection: nothing to answer
            return

    def _answer(self, sock: socket.socket) -> None:
        server = self.server
        start = time.monotonic()
        sock.sendall(HEAD)
        for index in range(1, server.chunks + 1):
            delay = start + index * server.gap_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendall(chunk(server.payload))
        sock.sendall(b"0\r\n\r\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A chunked, paced HTTP backend on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--chunk-bytes", type=int, default=100)
    args = parser.parse_args(argv)
    with _Server(("127.0.0.1", args.port), _Handler) as server:
        server.chunks, server.gap_s, server.payload = args.chunks, args.gap_ms / 1000, b"x" * args.chunk_bytes
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever(poll_interval=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
