"""An asyncio program that puts pylb in front of two backends and checks its client.

Run: pip install 'pylb[testing]' httpx && python examples/asyncio_program.py
pylb is a trio program; ``run_balancer`` runs it in a thread of its own, so
an asyncio program (or any synchronous code) uses it with a plain ``with``.
"""

import asyncio

import httpx

from pylb.testing import run_backends, run_balancer
from pylb.testing.faults import ResetPeer


async def fetch_all(url: str, count: int) -> list[str]:
    """The code under test: concurrent GETs, retrying once on a 502."""
    async with httpx.AsyncClient() as client:

        async def one() -> str:
            response = await client.get(url)
            if response.status_code == 502:
                response = await client.get(url)
            response.raise_for_status()
            return response.headers["X-Served-By"]

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def main() -> None:
    with run_backends(2) as backends, run_balancer(backends) as lb:
        served = await fetch_all(lb.url, 6)
        assert sorted(served) == ["backend-1"] * 3 + ["backend-2"] * 3, served

        with lb.fault(backends[0], ResetPeer()):
            served = await fetch_all(lb.url, 4)  # pylb sends them to backend-2, or answers 502 and we retry
        assert set(served) <= {"backend-1", "backend-2"}

        # wait_until blocks its thread: from asyncio, give it one
        stats = await asyncio.to_thread(lb.wait_until, lambda s: s["requests"] >= 10)
        print(f"{stats['requests']} requests, served: {stats['served']}")


if __name__ == "__main__":
    asyncio.run(main())
