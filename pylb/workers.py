"""``--workers N``: N balancer processes sharing the listening ports.

Owns: binding each listener N times with SO_REUSEPORT (the kernel spreads new
connections over the N accept queues), starting the worker processes (spawned
interpreters, each running one ``Balancer`` on its own sockets), fanning the
snapshots and certificates that discovery finds (it runs once, here, in the
supervisor) out to every worker, restarting a worker that dies, and passing
SIGTERM on (each worker drains; a second signal stops them at once).
Must not know: the data plane's insides, argument parsing.

With a stats port, the supervisor serves it (``pylb.observe.server``):
every worker reports its figures (``Balancer.report``) up its pipe every
``REPORT_SECONDS`` and when asked, before each answer of the stats port; the
page, ``/stats.json`` and ``/metrics`` show their sum (``pylb.observe.stats.
present``), the figures of workers that exited kept in it.

Invariants: a worker serves only after it has its sockets and the latest
snapshot; the supervisor never accepts a proxied connection itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import zlib
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import trio

from pylb.config import Config
from pylb.core.models import Bind, Snapshot
from pylb.discovery import launch
from pylb.net.server import Balancer, BindError, bind_all, bind_listener
from pylb.observe.events import EventFeed
from pylb.observe.server import StatsServer
from pylb.observe.stats import Tally, present
from pylb.runtime import listening_on, setup_logging, until_signal
from pylb.tls import CertBundle

log = logging.getLogger("pylb")
READY_SECONDS = 30.0
REPORT_SECONDS = 1.0  # a worker's figures go up at least this often (and whenever the stats port asks)
ASK_SECONDS = 0.5  # how long the stats port waits for every worker's fresh figures


def default_workers() -> int:
    """One worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class SharedCursor:
    """Round-robin counters in memory shared by the workers, so that
    requests alternate across all of them (two curls, two backends). Not
    locked: two workers racing may both take the same turn, which only
    shifts the rotation by one."""

    SLOTS = 512

    def __init__(self, counters: Any = None) -> None:
        self.counters = counters if counters is not None else multiprocessing.get_context("spawn").RawArray(
            "q", self.SLOTS
        )
        self._slots: dict[str, int] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (SharedCursor, (self.counters,))

    def advance(self, slot: str, step: int = 1) -> int:
        index = self._slots.get(slot)
        if index is None:
            index = self._slots[slot] = zlib.crc32(slot.encode()) % self.SLOTS
        value: int = self.counters[index]
        self.counters[index] = value + step
        return value


class _Worker:
    """The supervisor's handle on one worker: its process, its pipe, its sockets."""

    def __init__(self, index: int, sockets: list[socket.socket]) -> None:
        self.index = index
        self.sockets = sockets
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.exited = trio.Event()

    def start(self, config: Config, updates: list[tuple[str, Any]], cursor: SharedCursor) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(
            target=worker_main,
            args=(config, self.sockets, child, self.index, cursor),
            name=f"pylb-worker-{self.index}",
        )
        self.process.start()
        self.exited = trio.Event()
        child.close()
        self.conn = parent
        for update in updates:
            parent.send(update)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def send(self, update: tuple[str, Any]) -> None:
        if self.conn is not None:
            try:
                self.conn.send(update)
            except (BrokenPipeError, OSError):
                log.warning("worker %d is gone; it gets the latest state when restarted", self.index)


class Fanout:
    """Discovery's target in the supervisor: every snapshot and certificate
    set goes to every worker (and to workers started later); its ``events``
    keep what discovery said, for the stats page."""

    def __init__(self, workers: Sequence[_Worker], has_certs: bool) -> None:
        self.workers = workers
        self.cursor = SharedCursor()
        self.latest: dict[str, Any] = {}
        self.certs = _CertFanout(self) if has_certs else None
        self.events = EventFeed()

    def swap(self, snapshot: Snapshot) -> None:
        self._publish("swap", snapshot)

    def _publish(self, kind: str, value: Any) -> None:
        self.latest[kind] = value
        for worker in self.workers:
            worker.send((kind, value))

    def updates(self) -> list[tuple[str, Any]]:
        return list(self.latest.items())


class _CertFanout:
    """Looks like ``CertStore.replace_dynamic`` to discovery."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.current: tuple[str, ...] = ()

    def replace_dynamic(self, bundles: Sequence[CertBundle]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        new = tuple(b.fingerprint for b in bundles)
        added = tuple(f for f in new if f not in self.current)
        removed = tuple(f for f in self.current if f not in new)
        self.current = new
        self.fanout._publish("certs", list(bundles))
        return added, removed


class Figures:
    """The workers' figures, in the supervisor: the latest report of each,
    the cells of those that exited, and asking every worker for fresh ones."""

    def __init__(self, workers: Sequence[_Worker], events: EventFeed) -> None:
        self.workers = workers
        self.events = events
        self.reports: dict[int, tuple[int, Mapping[str, Any]]] = {}  # worker -> (answer to ask n, report)
        self.retired = Tally()
        self.asked = 0
        self._fresh = trio.Event()

    def received(self, index: int, seq: int, data: Mapping[str, Any]) -> None:
        self.reports[index] = (seq, data)
        self._fresh.set()
        self._fresh = trio.Event()

    def retire(self, index: int) -> None:
        """A worker exited: its counts stay in the sums (its restart counts from 0)."""
        gone = self.reports.pop(index, None)
        if gone is not None:
            self.retired.merge(gone[1]["cells"])

    async def statistics(self) -> dict[str, Any]:
        """Every worker's figures summed, after asking each for fresh ones
        (waiting at most ASK_SECONDS: a worker that does not answer counts
        with its last report)."""
        self.asked += 1
        seq = self.asked
        for worker in self.workers:
            worker.send(("report?", seq))
        with trio.move_on_after(ASK_SECONDS):
            while any(self.reports.get(w.index, (0, None))[0] < seq for w in self.workers if w.alive):
                await self._fresh.wait()
        reports = [data for _, data in (self.reports[i] for i in sorted(self.reports))]
        data = present(reports, self.retired.cells)
        data["workers"] = len(self.workers)
        data["events"] = sorted([*data["events"], *self.events.recent()], key=lambda e: e["time"])[-50:]
        for kind, n in self.events.by_kind.items():
            data["event_counts"][kind] = data["event_counts"].get(kind, 0) + n
        return data



def run_workers(config: Config, mode: str, count: int) -> int:
    """Serve ``config`` with ``count`` worker processes until a signal."""
    binds = config.listeners
    sockets = bind_all(binds, copies=count)  # a BindError here is one line, before any process starts
    stats: socket.socket | None = None
    if config.stats_port is not None:
        try:
            stats = bind_listener(config.stats_port)
        except BindError as exc:
            for sock in sockets:
                sock.close()
            raise BindError(str(exc).replace("--bind", config.named("stats_port"), 1)) from None
    workers = [_Worker(i, sockets[i * len(binds) : (i + 1) * len(binds)]) for i in range(count)]
    fanout = Fanout(workers, bool(config.certificates))
    setup_logging(config.log_level, "main")
    trio.run(_supervise, config, mode, workers, fanout, stats)
    return 0


async def _supervise(
    config: Config, mode: str, workers: list[_Worker], fanout: Fanout, stats: socket.socket | None = None
) -> None:
    provider = await launch.prepare(mode, config)
    stopping = trio.Event()
    figures = Figures(workers, fanout.events)
    async with trio.open_nursery() as nursery:
        if stats is not None:
            await nursery.start(StatsServer(stats, figures.statistics, config.stats_auth).run)
        await nursery.start(provider.run, fanout)
        for worker in workers:
            worker.start(config, fanout.updates(), fanout.cursor)
        for worker in workers:
            await _wait_ready(worker)
        # Signals are caught before "listening on" says pylb is up: a SIGTERM right after it must
        # drain the workers, not kill the supervisor (whose workers then stop on their own).
        await nursery.start(_forward_signals, workers, stopping)
        ports = [s.getsockname()[1] for s in workers[0].sockets]
        bound = [Bind(b.scheme, b.host, p) for b, p in zip(config.listeners, ports, strict=True)]
        snapshot = fanout.latest.get("swap") or config.snapshot()
        backends = {b.key for s in snapshot.services for b in s.backends} if snapshot else set()
        log.info(
            "listening on %s; %d backends, %d routes, %s; %d workers; %s",
            listening_on(bound),
            len(backends),
            len(snapshot.routes) if snapshot else 0,
            config.balance,
            len(workers),
            provider.description,
        )
        from pylb.cli import observing  # the same line as one process gives

        observing(config, stats.getsockname()[1] if stats is not None else None)
        for worker in workers:
            nursery.start_soon(_keep_alive, worker, config, fanout, stopping, figures)
        await stopping.wait()
        for sock in (s for w in workers for s in w.sockets):
            sock.close()  # (closed already when a signal stopped them)
        with trio.move_on_after(config.grace + 5):
            for worker in workers:
                await worker.exited.wait()
        for worker in workers:
            if worker.process is not None and worker.process.is_alive():
                log.warning("worker %d did not stop in time; killing it", worker.index)
                worker.process.kill()
        nursery.cancel_scope.cancel()


async def _wait_ready(worker: _Worker) -> None:
    assert worker.conn is not None
    with trio.fail_after(READY_SECONDS):
        while not worker.conn.poll():
            await trio.lowlevel.wait_readable(worker.conn.fileno())
    message = worker.conn.recv()
    if message != ("ready", worker.index):
        raise RuntimeError(f"worker {worker.index} did not start: {message!r}")


async def _wait_exit(worker: _Worker) -> None:
    if worker.process is not None and worker.process.is_alive():
        await trio.lowlevel.wait_readable(worker.process.sentinel)
        worker.process.join()


async def _keep_alive(
    worker: _Worker, config: Config, fanout: Fanout, stopping: trio.Event, figures: Figures
) -> None:
    """Read the worker's reports; restart it when it dies, unless pylb is stopping."""
    while True:
        async with trio.open_nursery() as reading:
            reading.start_soon(_read_reports, worker, figures)
            await _wait_exit(worker)
            reading.cancel_scope.cancel()
        worker.exited.set()
        figures.retire(worker.index)
        if stopping.is_set():
            return
        code = worker.process.exitcode if worker.process is not None else None
        log.warning("worker %d exited (code %s); starting it again", worker.index, code)
        worker.start(config, fanout.updates(), fanout.cursor)
        try:
            await _wait_ready(worker)
        except (EOFError, OSError, RuntimeError, trio.TooSlowError) as exc:
            # It died while starting (a SIGTERM forwarded before it could drain, or a crash),
            # or hangs: never the supervisor's end. Wait for its exit; start it again unless stopping.
            if not stopping.is_set():
                log.warning("worker %d did not start (%s)", worker.index, type(exc).__name__)
            if worker.process is not None and worker.process.is_alive() and isinstance(exc, trio.TooSlowError):
                worker.process.kill()


async def _read_reports(worker: _Worker, figures: Figures) -> None:
    """What the worker sends up (its figures), until its pipe ends."""
    conn = worker.conn
    if conn is None:
        return
    while True:
        await trio.lowlevel.wait_readable(conn.fileno())
        try:
            while conn.poll():
                message = conn.recv()
                if isinstance(message, tuple) and message[:1] == ("report",):
                    figures.received(worker.index, message[1], message[2])
        except (EOFError, OSError):
            return


async def _forward_signals(
    workers: list[_Worker], stopping: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Each SIGTERM/SIGINT goes on to every worker: the first makes them
    drain, the second stop at once (the supervisor then exits 0)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            for sock in (s for w in workers for s in w.sockets):
                sock.close()  # before the workers hear it: once they have closed theirs, the port refuses
            log.info("received %s, stopping %d workers", signal.Signals(signum).name, len(workers))
            for worker in workers:
                if worker.process is not None and worker.process.pid is not None and worker.process.is_alive():
                    os.kill(worker.process.pid, signum)
            stopping.set()


# --- in the worker process --------------------------------------------------


def worker_main(
    config: Config, sockets: list[socket.socket], conn: Connection, index: int, cursor: SharedCursor
) -> None:
    """A worker: one balancer on ``sockets``, updated from ``conn``; its
    figures go up ``conn`` when the supervisor has a stats port."""
    tag = f"w{index + 1}"
    setup_logging(config.log_level, tag)
    settings = dataclasses.replace(config.settings(), worker=tag, stats=None)
    lb = Balancer(settings, cursor=cursor)
    lb.bind(sockets)
    lb.tcp_ports.who = f"worker {index}: "
    trio.run(_serve, lb, conn, index, config.grace)


async def _serve(lb: Balancer, conn: Connection, index: int, grace: float) -> None:
    while conn.poll():  # what the supervisor knew before this worker started
        _apply(lb, conn, *conn.recv())
    async with trio.open_nursery() as nursery:
        await nursery.start(lb.run)
        nursery.start_soon(_updates, lb, conn, nursery)
        if lb.settings.collect:
            nursery.start_soon(_report_often, lb, conn)
        await nursery.start(until_signal, nursery, lb, grace)
        conn.send(("ready", index))


async def _report_often(lb: Balancer, conn: Connection) -> None:
    while True:
        await trio.sleep(REPORT_SECONDS)
        _report(lb, conn, 0)


def _report(lb: Balancer, conn: Connection, seq: int) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):  # the supervisor is gone: _updates stops this worker
        conn.send(("report", seq, lb.report()))


async def _updates(lb: Balancer, conn: Connection, nursery: trio.Nursery) -> None:
    """Apply what the supervisor sends; stop when it is gone."""
    while True:
        await trio.lowlevel.wait_readable(conn.fileno())
        try:
            kind, value = conn.recv()
        except (EOFError, OSError):
            log.warning("the supervisor is gone; stopping")
            nursery.cancel_scope.cancel()
            return
        _apply(lb, conn, kind, value)


def _apply(lb: Balancer, conn: Connection, kind: str, value: Any) -> None:
    if kind == "swap":
        lb.swap(value)
    elif kind == "certs" and lb.certs is not None:
        lb.certs.replace_dynamic(value)
    elif kind == "report?":
        _report(lb, conn, value)
