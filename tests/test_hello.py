"""`pylb hello` stops like a well-behaved backend on SIGTERM (`docker stop`)."""

import signal
import socket
import subprocess
import sys

import trio

from tests.conftest import read_until


async def test_sigterm_finishes_the_request_in_progress_then_exits_0() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylb", "hello", "--bind", f"127.0.0.1:{port}", "--name", "h", "--delay", "1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(proc, "hello h listening")
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        await busy.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        await trio.sleep(0.3)  # the request is in its 1 s delay
        proc.send_signal(signal.SIGTERM)
        read_until(proc, "received SIGTERM")
        answer = b""
        while b"Hello from h" not in answer:
            data = await busy.receive_some(4096)
            assert data, answer
            answer += data
        assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer
        assert await idle.receive_some(10) == b""  # the idle keep-alive connection is closed
        try:
            await trio.open_tcp_stream("127.0.0.1", port)
            refused = False
        except OSError:
            refused = True
        assert refused
        assert await trio.to_thread.run_sync(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
