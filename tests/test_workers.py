"""--workers N: processes sharing the ports, one rotation, restarts, drain."""

import os
import signal
import subprocess

import httpx
import trio

from pylb.testing import open_hellos
from tests.conftest import run_pylb


def worker_pids(supervisor: int) -> list[int]:
    out = subprocess.run(["ps", "-ww", "--ppid", str(supervisor), "-o", "pid=,args="], capture_output=True, text=True)
    return [int(line.split()[0]) for line in out.stdout.splitlines() if "spawn_main" in line]


async def test_two_workers_share_one_rotation_and_survive_a_crash() -> None:
    async with open_hellos(2) as hellos:
        backends = [str(h.backend) for h in hellos]
        args = ["--workers", "2", "--bind", "127.0.0.1:0", "--backend", backends[0], "--backend", backends[1]]
        with run_pylb(*args) as lb:
            assert "2 workers" in lb.lines[-1]

            def names(n: int) -> list[str]:  # a new connection each time: any worker may take it
                return [httpx.get(lb.url, timeout=10).headers["x-served-by"] for _ in range(n)]

            served = await trio.to_thread.run_sync(names, 6)
            assert served in (["hello-1", "hello-2"] * 3, ["hello-2", "hello-1"] * 3)
            workers = worker_pids(lb.proc.pid)
            assert len(workers) == 2
            os.kill(workers[0], signal.SIGKILL)
            with trio.fail_after(30):  # the supervisor starts it again
                while len(set(worker_pids(lb.proc.pid)) - {workers[0]}) < 2:
                    await trio.sleep(0.1)
            assert len(set(await trio.to_thread.run_sync(names, 4))) == 2
            lb.proc.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(lb.proc.wait, 30) == 0


async def test_sigterm_while_a_worker_restarts_still_exits_0() -> None:
    """A worker killed, and pylb told to stop while its replacement is still
    starting (the signal reaches it before it can drain): pylb stops cleanly."""
    async with open_hellos(1) as hellos:
        args = ["--workers", "2", "--bind", "127.0.0.1:0", "--backend", str(hellos[0].backend)]
        with run_pylb(*args) as lb:
            workers = worker_pids(lb.proc.pid)
            os.kill(workers[0], signal.SIGKILL)
            with trio.fail_after(30):  # the replacement exists (it takes a while to be ready)
                while not set(worker_pids(lb.proc.pid)) - set(workers):
                    await trio.sleep(0.005)
            lb.proc.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(lb.proc.wait, 30) == 0
