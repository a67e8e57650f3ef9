"""Process-level glue shared by the CLI and the worker processes.

Owns: logging setup, the access-log line, how the "listening on" line names
addresses, and what SIGTERM/SIGINT do to a running balancer (drain within the grace period; a second signal stops at
once). Must not know: argument parsing, the data plane's insides.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

import trio

from pylb.core.models import Bind
from pylb.core.record import RequestRecord

log = logging.getLogger("pylb")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")


_LOCAL = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def listening_on(binds: Sequence[Bind]) -> str:
    """The addresses as bound (``http://0.0.0.0:8080``: every address), each
    wildcard one followed by how to reach it from this machine."""
    parts = []
    for bind in binds:
        local = _LOCAL.get(bind.host)
        parts.append(f"{bind} (from this machine: {Bind(bind.scheme, local, bind.port)})" if local else str(bind))
    return ", ".join(parts)


def access_logger(names: dict[tuple[str, int], str] | None = None) -> Callable[[RequestRecord], None]:
    """An observer that logs one line per request (``names`` labels backends)."""
    access = logging.getLogger("pylb.access")

    def observe(record: RequestRecord) -> None:
        backend = "-"
        if record.backend is not None:
            backend = str(record.backend)
            if names and record.backend.key in names:
                backend = f"{names[record.backend.key]} ({backend})"
        access.info(
            '%s "%s %s" %d -> %s %dB %.1fms',
            record.client,
            record.method,
            record.target[:200],
            record.status,
            backend,
            record.bytes_sent,
            record.seconds * 1000,
        )

    return observe


class Drainable(Protocol):
    """A server that can stop gracefully: a Balancer, or ``pylb hello``."""

    connections: int

    def stop_accepting(self) -> None: ...
    async def drain(self, grace: float) -> bool: ...


async def until_signal(
    nursery: trio.Nursery,
    lb: Drainable | None = None,
    grace: float = 0.0,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """On SIGTERM or SIGINT: drain ``lb`` for up to ``grace`` seconds, then
    cancel ``nursery``; a second signal stops at once. ``nursery.start`` it:
    it reports started once the signals are caught."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if lb is not None:
                lb.stop_accepting()  # before saying so: whoever reads the log finds the port closed
            log.info("received %s, stopping", signal.Signals(signum).name)
            if lb is not None:
                async with trio.open_nursery() as drain:
                    drain.start_soon(_second_signal, signals, drain)
                    if not await lb.drain(grace):
                        log.warning("grace period of %gs over; closing %d connections", grace, lb.connections)
                    drain.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
            return


async def _second_signal(signals: AsyncIterator[int], drain: trio.Nursery) -> None:
    async for signum in signals:
        log.info("received %s again, stopping now", signal.Signals(signum).name)
        drain.cancel_scope.cancel()
        return
