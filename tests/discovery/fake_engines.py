"""Doubles of an engine's moving parts for the watcher tests: an event
stream fed by the test (read by the watcher's thread), and a target that
keeps every snapshot swapped in."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

from pylb.core.models import Snapshot
from pylb.core.pool import Pool, SwapResult

END = object()


class FakeStream:
    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = self.queue.get()
        if item is END:
            raise StopIteration
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed = True
        self.queue.put(END)


class Target:
    def __init__(self, certs: object = None) -> None:
        self.pool = Pool()
        self.swaps: list[Snapshot] = []
        self.certs = certs

    def swap(self, snapshot: Snapshot) -> SwapResult:
        self.swaps.append(snapshot)
        return self.pool.swap(snapshot)

    def backends(self) -> set[str]:
        snapshot = self.pool.snapshot
        return {str(b) for s in snapshot.services for b in s.backends} if snapshot else set()
