"""Coarse deadlines for many connections, checked by one task.

Owns: the clock the data plane reads (``now``, refreshed every tick) and the
cancellation of connections whose deadline has passed. Must not know: what
a connection does. Moving a trio cancel scope's deadline costs a heap
operation; the proxy moves its deadline several times per request, so it
writes a float here instead and one task per balancer enforces it, as
HAProxy's timer wheel does. A timeout never fires early, and at most two
ticks late (default tick: 0.25 s).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import trio


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Watched(Protocol):
    """A connection with a deadline; ``scope.cancel()`` is what happens when
    it passes (a trio cancel scope, or a connection of the fast lane)."""

    deadline: float

    @property
    def scope(self) -> Cancellable: ...


class Watchdog:
    def __init__(self, tick: float = 0.25) -> None:
        self.tick = tick
        self.now = 0.0
        self._watched: set[Watched] = set()
        # The exact time, for the timings of records (time.perf_counter, a C function: up to seven
        # readings per request when records are made; trio.current_time() costs several times more).
        self.time: Callable[[], float] = time.perf_counter

    def watch(self, item: Watched) -> None:
        self._watched.add(item)

    def unwatch(self, item: Watched) -> None:
        self._watched.discard(item)

    def items(self) -> list[Watched]:
        return list(self._watched)

    def __len__(self) -> int:
        return len(self._watched)

    def __repr__(self) -> str:
        return f"<Watchdog watched={len(self._watched)} tick={self.tick}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.now = trio.current_time()
        task_status.started()
        while True:
            await trio.sleep(self.tick)
            now = self.now = trio.current_time()
            # Deadlines were computed from a ``now`` up to one tick old: add the
            # tick so that none fires early (they fire up to two ticks late).
            due = now - self.tick
            for item in [w for w in self._watched if w.deadline <= due]:
                item.scope.cancel()
                item.deadline = math.inf
