"""Idle keep-alive clients: open N connections to a proxy, one request each, then hold them.

Owns: the client side of the `idle_10k` case. Run as a child process of the harness (pinned to the
load core): `python benchmarks/idle_clients.py --port P --count 10000`.
Protocol with the harness, on stdout: one JSON line once every connection has had its response
(`{"opened": .., "ok": .., "failed": .., "open_s": ..}`), then it holds the connections until a
line arrives on stdin (or `--hold-s` passes), checks which are still open, prints a second JSON
line (`{"still_open": ..}`) and closes everything.
Knows nothing of the proxy behind the port. Invariants: plain blocking sockets, 127.0.0.1 only,
requests sent in batches (so the proxy never sees more than `--batch` requests at once and needs
few backend connections), and every phase bounded by `--deadline-s` / `--hold-s`.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    return sock.recv(65536)


def read_response(sock: socket.socket, deadline: float) -> bool:
    """Read one response with a Content-Length body by `deadline`; True if it was a 200."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = _recv(sock, deadline)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def open_batch(port: int, size: int, timeout_s: float) -> tuple[list[socket.socket], int]:
    """Open `size` connections, send one request on each, read each response.

    The whole batch shares one deadline, `timeout_s` from now: a proxy that stops answering
    costs one timeout per batch, not one per connection.
    """
    deadline = time.monotonic() + timeout_s
    socks: list[socket.socket] = []
    failed = 0
    for _ in range(size):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
            sock.sendall(REQUEST)
            socks.append(sock)
        except OSError:
            failed += 1
    kept = []
    for sock in socks:
        try:
            ok = read_response(sock, deadline)
        except (OSError, ValueError):
            ok = False
        if ok:
            kept.append(sock)
        else:
            failed += 1
            sock.close()
    return kept, failed


def still_open(socks: list[socket.socket]) -> int:
    """How many connections the peer has not closed (no EOF, no error waiting to be read)."""
    count = 0
    for sock in socks:
        try:
            sock.setblocking(False)
            if sock.recv(1, socket.MSG_PEEK) != b"":
                count += 1  # unexpected bytes, but the connection is open
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--deadline-s", type=float, default=90.0)
    parser.add_argument("--hold-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    raise_nofile(args.count + 256)
    start = time.monotonic()
    held: list[socket.socket] = []
    failed = 0
    while len(held) + failed < args.count and time.monotonic() - start < args.deadline_s:
        size = min(args.batch, args.count - len(held) - failed)
        kept, lost = open_batch(args.port, size, timeout_s=10.0)
        held += kept
        failed += lost
    opened = {"opened": len(held) + failed, "ok": len(held), "failed": failed}
    print(json.dumps({**opened, "open_s": round(time.monotonic() - start, 3)}), flush=True)
    select.select([sys.stdin], [], [], args.hold_s)
    print(json.dumps({"still_open": still_open(held)}), flush=True)
    for sock in held:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
