r"""What the balancer did, counted: per listener, service and backend.

Owns: ``Tally``, which folds batches of records (the exchange machine's
``Capture``\ s, TCP mode's ``ConnectionRecord``\ s) into cells keyed by
(listener, service, backend address): requests, responses by class
(1xx-5xx), errors by class (see ``error_kind``), bytes both ways, retries,
and a latency histogram on fixed bounds (``BOUNDS``: ten per decade from
0.1 ms to 100 s), from which p50 and p99 are read and which Prometheus exposes; ``present``, which turns tallies
and the live state of one balancer or of several workers (``report`` of
each) into the statistics every view shows (``Balancer.statistics()``,
``/stats.json``, the page, ``/metrics``). Must not know: sockets, trio, how
figures travel between processes.

Invariants: a tally's memory is bounded by the distinct (listener, service,
backend) triples it saw, each a fixed-size list of integers; tallies of
several workers merge by adding their cells, exactly.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pylb.core.record import Capture, ConnectionRecord, duration

# Latency bounds (seconds): the R10 series, ten per decade, 0.1 ms to 100 s; it holds the
# usual Prometheus bounds (1, 2.5 and 5 of each decade) exactly.
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
BOUNDS: tuple[float, ...] = (*tuple(round(m * 10.0**e, 6) for e in range(-4, 2) for m in _R10), 100.0)
EXPOSED = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0)
"""The bounds ``/metrics`` shows (Prometheus' usual ones): a subset of BOUNDS."""

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
KINDS = ("request", "no_backend", "connect", "response", "client", "killed")
"""Error classes: ``request``: pylb refused a request (invalid, too large,
too slow: 400, 408, 414, 431...); ``no_backend``: no backend up (503);
``connect``: a backend refused or did not accept in time (after retries);
``response``: a backend closed, broke or timed out before or during its
answer (502, 504, a reset); ``client``: the client went away or stopped
reading; ``killed``: pylb closed a TCP connection whose backend left."""

# A cell: [requests, 1xx, 2xx, 3xx, 4xx, 5xx, other, bytes_in, bytes_out, retries, errors by
# kind (len(KINDS)), latency counts (len(BOUNDS) + 1: the last one above 100 s)]
_REQ, _CLS, _IN, _OUT, _RETRIES, _ERR = 0, 1, 7, 8, 9, 10
_HIST = _ERR + len(KINDS)
CELL = _HIST + len(BOUNDS) + 1
_CLASS_INDEX = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}
_KIND_INDEX = {kind: _ERR + i for i, kind in enumerate(KINDS)}

Key = tuple[str, str, str]  # listener, service, backend address ("" when none)


def error_kind(termination: str, status: int) -> str | None:
    """The error class of an exchange from its termination letters and
    status (None: not an error)."""
    first = termination[:1]
    if first in ("-", "L", ""):
        return None
    if first == "P":
        return "no_backend" if status == 503 else "request"
    if first == "c":
        return "request" if termination[1:2] == "R" else "client"
    if first == "C":
        return "client"
    if first in ("S", "s"):
        return "connect" if termination[1:2] == "C" else "response"
    if first == "K":
        return "killed"
    return "response"


class Tally:
    """Cells of counters, fed with batches of records (``add``)."""

    __slots__ = ("cells", "records")

    def __init__(self) -> None:
        self.cells: dict[Key, list[int]] = {}
        self.records = 0

    def add(self, batch: Iterable[Capture | ConnectionRecord]) -> None:
        cells = self.cells
        count = 0
        for record in batch:
            count += 1
            if isinstance(record, tuple):  # a request's capture (the common case): read by position
                backend, status, bytes_out, bytes_in, timing, end, retries, termination = record[3:11]
                listener, service, seconds = record[13], record[12], duration(timing, end)
            else:  # a TCP connection: no status, no latency
                backend, status, bytes_out, bytes_in = record.backend, 0, record.bytes_out, record.bytes_in
                listener, service, seconds = record.listener, record.service, -1.0
                retries, termination = record.retries, record.termination
            key = (listener, service, str(backend) if backend is not None else "")
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = [0] * CELL
            cell[_REQ] += 1
            cell[_RETRIES] += retries
            cell[_IN] += bytes_in
            cell[_OUT] += bytes_out
            if seconds >= 0:
                cell[_CLASS_INDEX.get(status // 100, 6)] += 1
                cell[_HIST + bisect_left(BOUNDS, seconds)] += 1
            if termination != "--":
                kind = error_kind(termination, status)
                if kind is not None:
                    cell[_KIND_INDEX[kind]] += 1
        self.records += count

    def merge(self, cells: Mapping[Key, Sequence[int]]) -> None:
        """Add another tally's cells (a worker's) to this one."""
        for key, other in cells.items():
            cell = self.cells.get(key)
            if cell is None:
                self.cells[key] = list(other)
            else:
                for i, value in enumerate(other):
                    cell[i] += value


def figures(cells: Iterable[Sequence[int]]) -> dict[str, Any]:
    """The figures of a group of cells: requests, responses and errors by
    class, bytes, retries, latency (p50 and p99 in milliseconds, and the
    histogram's counts)."""
    total = [0] * CELL
    for cell in cells:
        for i, value in enumerate(cell):
            if value:
                total[i] += value
    hist = total[_HIST:]
    return {
        "records": total[_REQ],
        "responses": {name: total[_CLS + i] for i, name in enumerate(CLASSES)},
        "errors": {kind: total[_ERR + i] for i, kind in enumerate(KINDS)},
        "bytes_in": total[_IN],
        "bytes_out": total[_OUT],
        "retries": total[_RETRIES],
        "latency": {"p50": percentile(hist, 0.5), "p99": percentile(hist, 0.99), "counts": hist},
    }


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (in ms) of a histogram on BOUNDS, interpolated
    within its bucket (within about 12%); None without samples."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            low = BOUNDS[i - 1] if i > 0 else 0.0
            high = BOUNDS[i] if i < len(BOUNDS) else BOUNDS[-1]
            return round((low + (high - low) * (rank - seen) / n) * 1000, 3)
        seen += n
    return round(BOUNDS[-1] * 1000, 3)


def report(lb: Any) -> dict[str, Any]:
    """What one balancer is and did, as plain data (picklable: a worker
    sends it up): its tally's cells and its live state."""
    pool = lb.pool
    snapshot = pool.snapshot
    names = pool.names
    members: list[tuple[str, str]] = []
    if snapshot is not None:
        members = [(s.name, str(b)) for s in snapshot.services for b in s.backends]
    states = {str(s.backend): s for s in pool.states()}
    backends = []
    for service, address in members:
        state = states.get(address)
        if state is not None:
            backends.append(_backend(service, address, state, names))
    known = {address for _, address in members}
    for address, state in states.items():
        if address not in known:  # left the snapshot, requests still in flight
            backends.append(_backend("", address, state, names))
    observation = lb.observation
    tcp = lb.tcp_statistics()
    return {
        "started": lb.started,
        "draining": lb.draining,
        "connections": lb.connections,
        "listeners": [
            *(
                {"name": s.name, "proto": s.proto, "port": s.port, "requests": s.requests, "monitor": s.monitored}
                for s in lb.sites()
            ),
            *({**entry, "monitor": 0} for entry in tcp.pop("listeners")),
        ],
        "errors": _merge_status(s.errors for s in lb.sites()),
        "services": [
            {"name": s.name, "balance": s.balance} for s in (snapshot.services if snapshot is not None else ())
        ],
        "default": snapshot.default if snapshot is not None else None,
        "backends": backends,
        "cells": dict(observation.tally.cells) if observation is not None and observation.tally else {},
        "observing": observation is not None and observation.tally is not None,
        "events": lb.events.recent(),
        "event_counts": dict(lb.events.by_kind),
        "tcp": tcp,
    }


def _backend(service: str, address: str, state: Any, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "service": service,
        "address": address,
        "name": names.get(address, ""),
        "weight": state.backend.weight,
        "in_flight": state.in_flight,
        "requests": state.requests,
        "failures": state.failures,
        "draining": state.draining,
        "healthy": state.healthy,
    }


def _merge_status(counters: Iterable[Mapping[int, int]]) -> dict[int, int]:
    total: dict[int, int] = {}
    for counter in counters:
        for status, n in counter.items():
            total[status] = total.get(status, 0) + n
    return total


def present(reports: Sequence[Mapping[str, Any]], retired: Mapping[Key, Sequence[int]] | None = None) -> dict[str, Any]:
    """The statistics of one balancer (one report) or of several workers
    (figures summed; a backend's state: draining when it drains, ``up`` while
    any worker finds it healthy; ``healthy_in`` says how many do).
    ``retired``: the cells of workers that exited (their counts stay)."""
    tally = Tally()
    if retired:
        tally.merge(retired)
    for one in reports:
        tally.merge(one["cells"])
    cells = tally.cells
    workers = len(reports)
    listeners: dict[str, dict[str, Any]] = {}
    for one in reports:
        for entry in one["listeners"]:
            row = listeners.setdefault(entry["name"], {**entry, "requests": 0, "monitor": 0})
            row["requests"] += entry["requests"]
            row["monitor"] += entry["monitor"]
    backends: dict[tuple[str, str], dict[str, Any]] = {}
    for one in reports:
        for entry in one["backends"]:
            found = backends.get((entry["service"], entry["address"]))
            if found is None:
                found = backends[entry["service"], entry["address"]] = {
                    **entry,
                    "in_flight": 0,
                    "requests": 0,
                    "failures": 0,
                    "healthy_in": 0,
                }
            for field in ("in_flight", "requests", "failures"):
                found[field] += entry[field]
            found["healthy_in"] += bool(entry["healthy"])
            found["draining"] = found["draining"] or entry["draining"]
    first = reports[0] if reports else {}
    services = []
    for service in first.get("services", ()):
        name = service["name"]
        members = [row for (svc, _), row in backends.items() if svc == name]
        services.append(
            {
                **service,
                "default": name == first.get("default"),
                "backends": len(members),
                "up": sum(1 for row in members if _state(row, workers) == "up"),
                "in_flight": sum(row["in_flight"] for row in members),
                **figures(cell for key, cell in cells.items() if key[1] == name),
            }
        )
    for row in backends.values():
        row["state"] = _state(row, workers)
        row["health"] = f"{row['healthy_in']}/{workers}" if workers > 1 else ("up" if row["healthy"] else "down")
        mine = (row["service"], row["address"])
        row.update(figures(cell for key, cell in cells.items() if key[1:] == mine))
        del row["healthy"]
    for name, row in listeners.items():
        row.update(figures(cell for key, cell in cells.items() if key[0] == name))
    events = sorted((e for one in reports for e in one["events"]), key=lambda e: e["time"])[-50:]
    draining = any(one["draining"] for one in reports)
    status_errors = _merge_status(one["errors"] for one in reports)
    tcp: dict[str, Any] = {"ports": {}, "connections": 0, "bytes_in": 0, "bytes_out": 0}
    for one in reports:
        tcp["ports"].update(one["tcp"]["ports"])
        for key in ("connections", "bytes_in", "bytes_out"):
            tcp[key] += one["tcp"][key]
    started = min((one["started"] for one in reports), default=time.time())
    event_counts: dict[str, int] = {}
    for one in reports:
        for kind, n in one["event_counts"].items():
            event_counts[kind] = event_counts.get(kind, 0) + n
    return {
        "state": "draining" if draining else "serving",
        "started": started,
        "uptime": round(time.time() - started, 3),
        "workers": workers,
        "observing": any(one["observing"] for one in reports),
        "connections": sum(one["connections"] for one in reports),
        "requests": sum(row["requests"] for row in listeners.values()),
        "errors": status_errors,
        "in_flight": sum(row["in_flight"] for row in backends.values()),
        "listeners": list(listeners.values()),
        "services": services,
        "backends": list(backends.values()),
        "events": events,
        "event_counts": event_counts,
        "tcp": tcp,
        "totals": figures(cells.values()),
    }


def _state(row: Mapping[str, Any], workers: int) -> str:
    if row["draining"]:
        return "draining"
    return "up" if row["healthy_in"] else "down"
