"""Where records go: the observer a balancer's listeners call, and the batches after it.

Owns: ``Observation``: the recorder every ``Site`` (and TCP listener) of a
balancer calls once per request (with its ``Capture``) or connection (with
its ``ConnectionRecord``) (``recorder``: a list's ``append`` when no
embedding observer asked to see records, so that the request path pays one C
call), ``user_recorder`` for an embedding observer alone, and the batch work
done off that path, every ``FLUSH_SECONDS``, a ``SLICE`` at a time (all of
it before statistics are read): the tally (``pylb.observe.stats``) and the
access log's lines (formatted here, written from a thread). Must not know:
the exchange machine, sockets.

Invariants: a capture or record reaches the tally and the log exactly once,
and the log in the order they came; an embedding observer is called at once,
with the request's ``RequestRecord``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from pylb.core.record import Capture, ConnectionRecord, request_record
from pylb.observe.accesslog import AccessLog, Live
from pylb.observe.stats import Tally

# Records die young, before the GC moves them to older generations (measured: 2-3% less CPU per
# request than every 0.25 s, and a smaller peak of memory).
FLUSH_SECONDS = 0.05
# Records folded at a time, between which the data plane runs: a batch of 50 ms at 40,000 requests a
# second is about 4 ms of formatting, which in one piece delayed the requests waiting behind it.
SLICE = 256
Record = Capture | ConnectionRecord


class Observation:
    r"""Records in, tallies and log lines out. ``tally``: count them (the
    statistics' per-class figures and latency); ``log``: write them;
    ``user``: an observer of the embedding code's, called with each HTTP
    request's ``RequestRecord`` (TCP mode's ``ConnectionRecord``\ s go to
    ``connections``, which only feeds the tally and the log);
    ``live``: reads what the log's lines show that records do not carry."""

    def __init__(
        self,
        tally: Tally | None = None,
        log: AccessLog | None = None,
        user: Callable[[Any], None] | None = None,
        live: Callable[[], Live] = Live,
    ) -> None:
        self.tally = tally
        self.log = log
        self.live = live
        self.pending: list[Record] = []
        self._slices: deque[list[Record]] = deque()  # taken from pending, not folded yet (in order)
        self._writer = False  # a writer task is started and not done
        self.flushes = 0
        append = self.pending.append
        self.connections: Callable[[ConnectionRecord], None] = append  # TCP mode's records: never the user's
        if user is None:
            self.recorder: Callable[[Capture], None] = append
        else:
            agents = log is not None and log.wants_agents

            def both(capture: Capture) -> None:
                user(request_record(capture, agents))
                append(capture)

            self.recorder = both

    def flush(self) -> None:
        """Fold every record so far into the tally and the log's queue."""
        self._take()
        slices = self._slices
        while slices:
            self._fold(slices.popleft())

    def _take(self) -> None:
        """Move the records so far, in slices, behind those not yet folded."""
        pending = self.pending
        if pending:
            batch = pending[:]
            pending.clear()
            self._slices.extend(batch[i : i + SLICE] for i in range(0, len(batch), SLICE))

    def _fold(self, batch: list[Record]) -> None:
        self.flushes += 1
        if self.tally is not None:
            self.tally.add(batch)
        if self.log is not None:
            offset = time.time() - time.perf_counter()  # records' times are perf_counter's (Watchdog.time)
            self.log.queue(self.log.lines_for(batch, self.live(), offset))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every FLUSH_SECONDS, fold what came, a slice at a time (the data
        plane runs between slices); write the log from a thread."""
        log = self.log
        slices = self._slices
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await trio.sleep(FLUSH_SECONDS)
                self._take()
                while True:  # (a reader of statistics may have folded the records: their lines wait all the same)
                    if log is not None and not self._writer and log.wants_writer():
                        self._writer = True
                        nursery.start_soon(self._write, log)
                    if not slices:
                        break
                    self._fold(slices.popleft())
                    await trio.sleep(0)

    async def _write(self, log: AccessLog) -> None:
        try:
            await trio.to_thread.run_sync(log.drain, abandon_on_cancel=True)
        finally:
            self._writer = False  # (a thread abandoned on cancel may still write: drain holds the role)

    def close(self) -> None:
        """The last flush, and the log written out (blocking, briefly)."""
        self.flush()
        log = self.log
        if log is None:
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            log.drain()  # (returns at once while a writer thread is at it)
            if not log.pending_bytes():
                return
            time.sleep(0.01)  # a writer thread is still at it

    def __repr__(self) -> str:
        return f"<Observation pending={len(self.pending)} tally={self.tally is not None} log={self.log!r}>"


def user_recorder(user: Callable[[Any], None]) -> Callable[[Capture], None]:
    """A recorder that hands an embedding observer each request's record,
    for a balancer that keeps no tally and writes no log."""

    def record(capture: Capture) -> None:
        user(request_record(capture))

    return record
