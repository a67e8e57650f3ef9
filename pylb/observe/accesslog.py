"""The access log: one line per request (per connection in TCP mode), in batches.

Owns: the line formats (``LOG_FORMAT``): ``haproxy`` (HAProxy's ``httplog``
layout field for field, and its ``tcplog`` for TCP connections, so that
existing parsers read it), ``combined`` (Apache's and nginx's; HTTP only: a
web log has no place for a TCP connection), ``json`` (one object per line);
and ``AccessLog``, which formats a batch of records at once and writes it
with as few system calls as lines allow, each write at most ``PIPE_BUF``
bytes and ending on a line's end (lines of several worker processes on one
pipe never interleave), from a thread, so that a stuck reader of standard
output never stalls the data plane: past ``MAX_PENDING`` bytes waiting, lines
are dropped and counted. Must not know: how records are made, trio.

Invariants: a line never holds a header value other than Host, User-Agent
and Referer (never Authorization, never Cookie: records do not carry them);
each line ends with one newline and holds no other (control characters and
quotes in requests are escaped).
"""

from __future__ import annotations

import json
import os
import re
import select
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pylb.core.http1 import Head
from pylb.core.models import Backend
from pylb.core.record import Capture, ConnectionRecord, RequestRecord, head_text, phases, request_record

FORMATS = ("haproxy", "combined", "json", "off")
PIPE_BUF = select.PIPE_BUF  # a write to a pipe of at most this many bytes is atomic
MAX_PENDING = 8 * 1024 * 1024  # bytes of lines waiting for a stuck reader, beyond which lines are dropped
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\xff"#\\]')  # escaped as HAProxy does: #XX
_HAPROXY_ESCAPES = {i: f"#{i:02X}" for i in (*range(0x20), *range(0x7F, 0x100), ord('"'), ord("#"))}
_COMBINED_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7F, 0x100))} | {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}
_NAME_UNSAFE = re.compile(r"[\s/{}\"]")


@dataclass
class Live:
    """The counts HAProxy's line shows that records do not carry, read once
    per batch (when the batch is written): connections, requests in flight
    per service and per backend, backends' names."""

    connections: int = 0
    services: Mapping[str, int] = field(default_factory=dict)
    backends: Mapping[str, int] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)


class Dates:
    """Dates of a second, made once per second (records of one batch share them)."""

    def __init__(self) -> None:
        self._second = -1
        self._tm: time.struct_time = time.localtime(0)
        self._haproxy = ""
        self._combined = ""
        self._iso = ""

    def _at(self, second: int) -> None:
        if second != self._second:
            self._second = second
            tm = self._tm = time.localtime(second)
            month = _MONTHS[tm.tm_mon - 1]
            offset = tm.tm_gmtoff or 0
            sign = "+" if offset >= 0 else "-"
            hours, minutes = divmod(abs(offset) // 60, 60)
            self._haproxy = f"{tm.tm_mday:02d}/{month}/{tm.tm_year}:{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
            self._combined = f"{self._haproxy} {sign}{hours:02d}{minutes:02d}"
            self._iso = (
                f"{tm.tm_year}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
                f".%03d{sign}{hours:02d}:{minutes:02d}"
            )

    def haproxy_second(self, second: int) -> str:
        """``06/Feb/2009:12:14:14`` (local time; the caller adds ``.mmm``)."""
        self._at(second)
        return self._haproxy

    def combined(self, when: float) -> str:
        """``10/Oct/2000:13:55:36 -0700``."""
        self._at(int(when))
        return self._combined

    def iso(self, when: float) -> str:
        """``2000-10-10T13:55:36.123-07:00``."""
        second = int(when)
        self._at(second)
        return self._iso % int((when - second) * 1000)


def _ms(seconds: float) -> int:
    return -1 if seconds < 0 else int(seconds * 1000)


def _escape(text: str, table: Mapping[int, str]) -> str:
    return text.translate(table) if _UNSAFE.search(text) else text


def _name(text: str) -> str:
    """A name as HAProxy's log fields allow (no blanks, slashes, braces, quotes)."""
    return _NAME_UNSAFE.sub("_", text) if _NAME_UNSAFE.search(text) else text


def _frontend(listener: str) -> str:
    """``https:443~``: HAProxy marks a frontend that terminated TLS with a tilde."""
    return listener + "~" if listener.startswith(("https:", "tls:")) else listener


def _safe(text: str) -> bool:
    """Whether ``text`` needs no escaping in a log line (the common case, checked in C)."""
    return text.isascii() and text.isprintable() and '"' not in text and "#" not in text and "\\" not in text


def haproxy_lines(
    batch: Iterable[Capture | ConnectionRecord], offset: float, now: float, dates: Dates, live: Live, monitor: str
) -> list[str]:
    """HAProxy's ``httplog`` lines for a batch (``option httplog`` with
    ``capture request header Host`` and ``capture response header X-Request-Id``):

    ``client:port [accept date] frontend service/server TR/Tw/Tc/Tr/Ta status
    bytes - - tsc ac/fc/bc/sc/rc 0/0 {host} {request id} "request line"``

    Tw is 0 (pylb has no queue; -1 when no backend was reached), Tc is 0 for a
    reused connection, -1 when none was made; ac and fc are the balancer's
    connections, bc and sc the requests in flight to the service and the
    backend, all when the batch was written; TCP connections get ``tcplog``
    lines. Written for speed: what repeats (the frontend, service and server
    part, the date's second, a head's request line) is made once per batch."""
    lines: list[str] = []
    append = lines.append
    # (listener, service, id(backend)) -> (" frontend service/server ", "ac/fc/bc/sc/")
    shared: dict[tuple[str, str, int], tuple[str, str]] = {}
    tails: dict[Head | None, tuple[str, str]] = {}  # a head -> its Host block and request line
    second, stamp = -1, ""
    for item in batch:
        tcp = type(item) is not tuple
        if tcp:  # a TCP connection's record
            record: ConnectionRecord = item  # type: ignore[assignment]
            accepted = record.start + offset if record.start >= 0 else now - record.seconds
            listener, service, backend = record.listener, record.service, record.backend
        else:
            capture: Capture = item  # type: ignore[assignment]
            (client, port, head, backend, status, sent, _, timing, end, retries, termination, rid, service,
             listener, ids) = capture  # fmt: skip
            if termination == "LR" and monitor and head_text(head)[1] == monitor:
                continue  # the monitor URI: never logged, as HAProxy's monitor
            start, t_request, t_connect, t_response, seconds = phases(timing, end)
            accepted = start + offset
        whole = int(accepted)
        if whole != second:
            second, stamp = whole, dates.haproxy_second(whole)
        key = (listener, service, id(backend))
        both = shared.get(key)
        if both is None:
            both = shared[key] = _haproxy_shared(listener, service, backend, live)
        part, count = both
        if tcp:
            append(haproxy_tcp_line(record, f"{stamp}.{int((accepted - whole) * 1000):03d}", part, count))
            continue
        tail = tails.get(head)
        if tail is None:
            tail = tails[head] = _haproxy_tail(*head_text(head))
        if backend is not None:
            tw = "0"
            tc = t_connect * 1000 if t_connect >= 0 else (0 if t_response >= 0 else -1)
        else:
            tw, tc = "-1", -1
        append(  # %d truncates floats in C: cheaper than int() and an f-string (1.1 us against 1.6 per line)
            _HTTPLOG
            % (
                client.decode(),
                port,
                stamp,
                (accepted - whole) * 1000,
                part,
                t_request * 1000 if t_request >= 0 else -1,
                tw,
                tc,
                t_response * 1000 if t_response >= 0 else -1,
                seconds * 1000,
                status,
                sent,
                termination,
                count,
                retries,
                tail[0],
                ids.name(rid),
                tail[1],
            )
        )
    return lines


def _haproxy_shared(listener: str, service: str, backend: Backend | None, live: Live) -> tuple[str, str]:
    """What lines of one listener, service and backend share: ``" frontend
    service/server "`` and ``"ac/fc/bc/sc/"``."""
    address = str(backend) if backend is not None else ""
    conns = live.connections
    count = f"{conns}/{conns}/{live.services.get(service, 0)}/{live.backends.get(address, 0)}/"
    return _haproxy_part(listener, service, backend, live), count


_HTTPLOG = '%s:%d [%s.%03d]%s%d/%s/%d/%d/%d %d %d - - %s-- %s%d 0/0 {%s} {%s} "%s"\n'


def _haproxy_tail(method: str, target: str, host: str, version: str) -> tuple[str, str]:
    """The Host block's text and the request line, escaped (``<BADREQ>`` without a method)."""
    if not method:
        request = target
    elif _safe(target):
        request = f"{method} {target} {version}"
    else:
        request = f"{method} {target.translate(_HAPROXY_ESCAPES)} {version}"
    return (host if _safe(host) else host.translate(_HAPROXY_ESCAPES)), request


def _haproxy_part(listener: str, service: str, backend: object, live: Live) -> str:
    """`` frontend service/server `` (a space on each side)."""
    frontend = _frontend(listener)
    if backend is not None:
        address = str(backend)
        server = _name(live.names.get(address) or address)
    else:
        server = "<NOSRV>"
    return f" {frontend} {_name(service) if service else frontend}/{server} "


def haproxy_tcp_line(record: ConnectionRecord, date: str, part: str, count: str) -> str:
    """HAProxy's ``tcplog`` line: ``client:port [date] frontend service/server
    Tw/Tc/Tt bytes ts ac/fc/bc/sc/rc 0/0`` (bytes: to the client)."""
    tw = 0 if record.backend is not None else -1
    tc = int(record.t_connect * 1000) if record.t_connect >= 0 else -1
    return (
        f"{record.client}:{record.client_port} [{date}]{part}{tw}/{tc}/{int(record.seconds * 1000)} "
        f"{record.bytes_out} {record.termination} {count}{record.retries} 0/0\n"
    )


def combined_line(record: RequestRecord, accepted: float, dates: Dates, live: Live) -> str:
    """Apache's and nginx's ``combined`` line: ``client - - [date] "request"
    status bytes "referer" "user-agent"`` (the user is always ``-``: it would
    come from Authorization, which pylb never logs; bytes: sent to the client,
    head included, ``-`` for none)."""
    request = _escape(f"{record.method} {record.target} {record.version}", _COMBINED_ESCAPES) if record.method else "-"
    size = record.bytes_sent or "-"
    referer = _escape(record.referer, _COMBINED_ESCAPES) or "-"
    agent = _escape(record.user_agent, _COMBINED_ESCAPES) or "-"
    return (
        f'{record.client} - - [{dates.combined(accepted)}] "{request}" {record.status or "-"} {size} '
        f'"{referer}" "{agent}"\n'
    )


def _json_line(
    mode: str,
    record: RequestRecord | ConnectionRecord,
    accepted: float,
    dates: Dates,
    live: Live,
    fields: dict[str, object],
) -> str:
    """One JSON object: the fields every record has, then ``fields``."""
    backend = record.backend
    address = str(backend) if backend is not None else None
    common: dict[str, object] = {
        "time": dates.iso(accepted),
        "mode": mode,
        "client": record.client,
        "client_port": record.client_port,
        "listener": record.listener,
        "service": record.service or None,
        "backend": address,
        "backend_name": live.names.get(address) if address else None,
    }
    return json.dumps(common | fields, separators=(",", ":")) + "\n"


def json_line(record: RequestRecord, accepted: float, dates: Dates, live: Live) -> str:
    """One JSON object: every field of the record, times in milliseconds."""
    return _json_line(
        "http",
        record,
        accepted,
        dates,
        live,
        {
            "method": record.method or None,
            "target": record.target,
            "version": record.version or None,
            "host": record.host or None,
            "status": record.status,
            "bytes_sent": record.bytes_sent,
            "bytes_received": record.bytes_received,
            "t_request": _ms(record.t_request),
            "t_queue": 0 if record.backend is not None else -1,
            "t_connect": _ms(record.t_connect),
            "t_response": _ms(record.t_response),
            "t_total": _ms(record.seconds),
            "termination": record.termination,
            "retries": record.retries,
            "request_id": record.request_id,
            "user_agent": record.user_agent or None,
            "referer": record.referer or None,
        },
    )


def json_tcp_line(record: ConnectionRecord, accepted: float, dates: Dates, live: Live) -> str:
    return _json_line(
        "tcp",
        record,
        accepted,
        dates,
        live,
        {
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
            "t_connect": _ms(record.t_connect),
            "t_total": _ms(record.seconds),
            "termination": record.termination,
            "retries": record.retries,
        },
    )


LineMaker = Callable[..., str]
_HTTP: dict[str, LineMaker | None] = {"haproxy": None, "combined": combined_line, "json": json_line}
_TCP: dict[str, LineMaker | None] = {"haproxy": None, "combined": None, "json": json_tcp_line}


def chunks(lines: Sequence[str], limit: int = PIPE_BUF) -> list[bytes]:
    """The lines joined into writes of at most ``limit`` bytes, each ending
    at a line's end (a longer line is a write of its own, cut to ``limit``)."""
    data = "".join(lines).encode("utf-8", "replace")
    out: list[bytes] = []
    start, size = 0, len(data)
    while start < size:
        if size - start <= limit:
            out.append(data[start:])
            break
        end = data.rfind(b"\n", start, start + limit)
        if end < 0:  # one line longer than a write: cut, and skip the rest of it
            out.append(data[start : start + limit - 1] + b"\n")
            end = data.find(b"\n", start + limit - 1)
            if end < 0:
                break
        else:
            out.append(data[start : end + 1])
        start = end + 1
    return out


class AccessLog:
    """Formats records in ``fmt`` and writes them to ``fd`` (standard output
    by default), one batch at a time (``write``)."""

    def __init__(self, fmt: str = "haproxy", fd: int = 1, wall: Callable[[], float] = time.time) -> None:
        if fmt not in _HTTP:
            raise ValueError(f"access log format {fmt!r} is not one of {', '.join(_HTTP)}")
        self.format = fmt
        self.fd = fd
        self._http = _HTTP[fmt]
        self._tcp = _TCP[fmt]
        self._dates = Dates()
        self._wall = wall
        self._lock = threading.Lock()
        self._queue: list[bytes] = []
        self._queued = 0
        self._writing = False
        self.lines = 0
        self.dropped = 0
        self.write_errors = 0

    @property
    def wants_agents(self) -> bool:
        """Whether records must carry User-Agent and Referer."""
        return self.format in ("combined", "json")

    def lines_for(self, batch: Iterable[Capture | ConnectionRecord], live: Live, offset: float) -> list[str]:
        """The lines of a batch (the exchange machine's captures, TCP mode's
        records); ``offset`` turns the balancer's clock into wall-clock time
        (a record's ``start`` + offset: its accept date)."""
        http, tcp, dates = self._http, self._tcp, self._dates
        now = self._wall()
        if http is None:
            return haproxy_lines(batch, offset, now, dates, live, self._monitor)
        lines = []
        for item in batch:
            record = request_record(item, True) if isinstance(item, tuple) else item
            accepted = record.start + offset if record.start >= 0 else now - record.seconds
            if type(record) is RequestRecord:
                if record.termination == "LR" and record.target == self._monitor:
                    continue  # the monitor URI: never logged, as HAProxy's monitor
                lines.append(http(record, accepted, dates, live))
            elif tcp is not None:
                lines.append(tcp(record, accepted, dates, live))
        return lines

    _monitor: str = ""

    def skip_monitor(self, uri: str | None) -> None:
        """Requests for the monitor URI are not logged (HAProxy logs none)."""
        self._monitor = uri or ""

    def queue(self, lines: Sequence[str]) -> None:
        """Queue ``lines`` for writing (``drain``). Past MAX_PENDING bytes
        waiting, lines are dropped (and counted)."""
        if not lines:
            return
        data = chunks(lines)
        size = sum(len(d) for d in data)
        with self._lock:
            if self._queued + size > MAX_PENDING:
                self.dropped += len(lines)
                return
            self._queue += data
            self._queued += size
            self.lines += len(lines)

    def wants_writer(self) -> bool:
        """True when lines wait and no writer runs: the caller then runs
        ``drain`` (in a thread)."""
        with self._lock:
            return bool(self._queue) and not self._writing

    def pending_bytes(self) -> int:
        with self._lock:
            return self._queued + (1 if self._writing else 0)

    def drain(self) -> None:
        """Write everything queued (blocking: run it in a thread); returns at
        once when another writer is at it. The writer's role is taken here,
        where the writing starts: a thread that never ran (its task was
        cancelled first) holds nothing, and its lines wait for the next one."""
        with self._lock:
            if self._writing:
                return
            self._writing = True
        while True:
            with self._lock:
                if not self._queue:
                    self._writing = False
                    return
                data, self._queue = self._queue, []
                self._queued = 0
            for part in data:
                self._write(part)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)
                continue
            except OSError:
                self.write_errors += 1
                return
            view = view[written:]

    def statistics(self) -> dict[str, object]:
        return {"format": self.format, "lines": self.lines, "dropped": self.dropped, "write_errors": self.write_errors}

    def __repr__(self) -> str:
        return f"<AccessLog {self.format} fd={self.fd} lines={self.lines} dropped={self.dropped}>"
