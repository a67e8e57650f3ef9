"""The last things that changed: discovery and health events, kept for the stats page.

Owns: ``EventFeed``, a bounded list of recent events (backend added,
removed, draining, up, down; certificates; discovery faults), each with its
wall-clock time, kind and one line of text, and the logging of each as one
line. Must not know: where events come from, how they are shown.

Invariants: at most ``size`` events are kept; a line never holds a
container's environment (callers pass names and addresses only).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any


class EventFeed:
    """Recent events, newest last. ``worker``: tags each (with ``--workers``)."""

    def __init__(self, size: int = 50, worker: str = "") -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=size)
        self.worker = worker
        self.count = 0
        self.by_kind: dict[str, int] = {}

    def add(self, kind: str, text: str, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        """Keep the event (``kind``: discovery, health, certificates, fault)
        and log ``text`` as one line on ``logger`` when given."""
        self._events.append({"time": time.time(), "kind": kind, "text": text, "worker": self.worker})
        self.count += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if logger is not None:
            logger.log(level, "%s", text)

    def recent(self) -> list[dict[str, Any]]:
        return list(self._events)

    def __repr__(self) -> str:
        return f"<EventFeed events={self.count} kept={len(self._events)}>"
