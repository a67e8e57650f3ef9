"""Process-level glue shared by the CLI and the worker processes.

Owns: logging setup (every line with its time, level and, with several
workers, the process: ``main`` for the supervisor, ``w1``... for workers;
``LOG_LEVEL``), how the "listening on" line names addresses, and what
SIGTERM/SIGINT do to a running balancer (drain within the grace period; a
second signal stops at once). The access log is ``pylb.observe``'s, on
standard output. Must not know: argument parsing, the data plane's insides.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import trio

from pylb.core.models import Bind

log = logging.getLogger("pylb")


LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: str = "info", process: str = "") -> None:
    """Log lines to standard error: ``2024-05-01 12:00:00,123 INFO w1 pylb: ...``
    (``process``: the worker's tag, or ``main``, with several workers)."""
    tag = f"{process} " if process else ""
    root = logging.getLogger()
    for handler in list(root.handlers):  # a worker process may inherit none, the CLI sets it once
        root.removeHandler(handler)
    logging.basicConfig(
        level=LEVELS.get(level, logging.INFO),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
    )


_LOCAL = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def listening_on(binds: Sequence[Bind]) -> str:
    """The addresses as bound (``http://0.0.0.0:8080``: every address), each
    wildcard one followed by how to reach it from this machine."""
    parts = []
    for bind in binds:
        local = _LOCAL.get(bind.host)
        parts.append(f"{bind} (from this machine: {Bind(bind.scheme, local, bind.port)})" if local else str(bind))
    return ", ".join(parts)


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
