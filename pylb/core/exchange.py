"""The HTTP exchange machine: every decision about one client connection's requests.

Owns: reading request heads out of the bytes a driver feeds in; routing,
FORCE_SSL and CONNECT refusal; choosing a backend and a connection to it;
when a request may be replayed on another connection or backend (and when
never); body framing both ways; 1xx, 101 and the tunnel's start; keep-alive
toward the client and the backend; the deadline of every phase and what
passing it means (408, 504, a reset); pylb's own answers (errors, redirects
and the monitor URI) and their counting; the record of each exchange. Its moves are
the rows of ``pylb.core.transitions.TRANSITIONS``, and no others.

Must not know: sockets, trio, TLS, threads, how a driver waits, splice. A
driver feeds events in (``client_data``, ``backend_data``, ``connected``,
``expired``...) and performs the action each returns (``READ_CLIENT``,
``DIAL``, ``SEND_BACKEND``, ``READ_BACKEND``, ``SEND_CLIENT``, ``TUNNEL``,
``CLOSE``; ``NOTHING``: go on with what you were doing), its payload in the
machine's attributes (``out``, ``backend``, ``deadline``, ``reset``). Two
drivers run it: the readiness loop (``pylb.net.fastlane``) and a task per
connection (``pylb.net.httptask``); handing a connection from one to the
other hands over this object as it is, mid-exchange.

Invariants:
- a request is sent again only if its method is idempotent and its whole
  body is held here (RFC 9110 9.2.2), only before any byte of an answer came
  back; on another backend at most ``retries`` times (a failed connect, or a
  new connection closed unanswered: the backend is going away), on another
  connection to the same backend when a reused one turns out closed;
- a backend connection goes back to the pool only after an answer that
  ended cleanly, with no stray bytes and the whole request written;
- once any byte of an answer went to the client, a failure resets the client
  connection rather than answering: a cut response never looks complete;
- ``Pool.acquire`` and ``Pool.release`` pair exactly once per backend tried.

The common exchange (a head routed to an idle connection, an answer whose
body is here whole) takes four calls: ``client_data``, ``backend_sent``,
``backend_data``, ``client_sent``; it is written for few calls and
attribute reads, since it runs for every request.
"""

from __future__ import annotations

import logging

from pylb.core import record as rec
from pylb.core.errors import (
    BadGateway,
    BadRequest,
    ConnectFailed,
    ConnectTimeout,
    GatewayTimeout,
    NoAnswer,
    NoBackend,
    ProxyError,
    RequestTimeout,
)
from pylb.core.framing import ChunkedScanner
from pylb.core.health import observe
from pylb.core.http1 import CHUNKED, LENGTH, MAX_HEAD, NO_BODY, UNTIL_CLOSE, Head, find_head_end
from pylb.core.http1 import parse_request as _parse_request
from pylb.core.http1 import parse_response as _parse_response
from pylb.core.models import Backend
from pylb.core.policy import (
    error_response,
    forwarded_suffix,
    https_redirect,
    monitor_response,
    request_head_out,
    response_head_out,
)
from pylb.core.site import Clock, Conn, Connections, Observer, Recorder, Site
from pylb.core.state import BackendState
from pylb.core.transitions import (
    ACTION_NAMES,
    ANSWER,
    ANSWER_HEAD,
    BLANK,
    BYTES,
    CLOSE,
    CLOSED,
    CONNECT,
    CONNECTED,
    DIAL,
    DIALING,
    DONE,
    END,
    FLUSH,
    HEAD,
    IDLE,
    INTERIM,
    INTERIM_HEAD,
    INTERIM_SENT,
    LAST,
    NOTHING,
    PIECE,
    READ_BACKEND,
    READ_CLIENT,
    RELAY,
    REPLAY,
    REQUEST,
    SEND,
    SEND_BACKEND,
    SEND_CLIENT,
    SENT,
    STATE_NAMES,
    SWITCH,
    TRANSITIONS,
    TUNNEL,
    TUNNELING,
    WAIT,
    ProtocolBug,
    describe,
)

log = logging.getLogger("pylb")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
BULK = 256 * 1024  # a body at least this large may move blind (``blind``): splice

# Heads seen before, parsed: a backend sends the same response head (Date aside)
# and a client often the same request head, again and again.
HEAD_CACHE = 512  # parsed heads remembered (per kind); all forgotten when full
HEAD_CACHE_BYTES = 2048  # longer heads are parsed every time (they seldom repeat)
_requests: dict[bytes, Head] = {}
_responses: dict[tuple[bytes, bytes], Head] = {}

_T = TRANSITIONS  # the hot path moves by ``self.state = _T[self.state][WHAT]``: the table, inline


def parse_request(raw: bytes) -> Head:
    head = _parse_request(raw)
    if len(raw) <= HEAD_CACHE_BYTES:
        if len(_requests) >= HEAD_CACHE:
            _requests.clear()
        _requests[raw] = head
    return head


def parse_response(raw: bytes, method: bytes) -> Head:
    head = _parse_response(raw, method)
    if len(raw) <= HEAD_CACHE_BYTES:
        if len(_responses) >= HEAD_CACHE:
            _responses.clear()
        _responses[raw, method] = head
    return head


class Exchange:
    """One client connection's exchanges, one request at a time (pipelined
    requests wait in ``buf``). See the module's docstring for the protocol."""

    __slots__ = (
        "answered",
        "backend",
        "blind",
        "body_left",
        "buf",
        "client_ip",
        "client_port",
        "conn",
        "deadline",
        "dechunk",
        "eof",
        "head",
        "keep",
        "left",
        "out",
        "rbuf",
        "received",
        "replayable",
        "req",
        "reset",
        "rend",
        "reused",
        "rhead",
        "rid",
        "rscanner",
        "scanner",
        "sent",
        "service",
        "site",
        "started",
        "state",
        "status",
        "streaming",
        "suffix",
        "termination",
        "timing",
        "tried",
        "unsent",
        "upstate",
    )

    def __init__(self, site: Site, client: tuple[str, int], buf: bytes = b"") -> None:
        self.site = site
        self.client_ip = client[0].encode()
        self.client_port = client[1]
        self.suffix = forwarded_suffix(client[0], site.proto, site.port)
        self.buf = buf  # client bytes not yet used (pipelined requests, a body still held)
        self.state = IDLE
        self.deadline = site.clock.now + site.timeouts.client
        self.eof = False  # the client has closed its side
        self.out = b""  # what SEND_CLIENT, SEND_BACKEND and TUNNEL write
        self.reset = False  # CLOSE with a reset: a response was cut short
        self.head: Head | None = None
        self.rhead: Head | None = None
        self.service = ""
        self.upstate: BackendState | None = None  # the backend chosen (its pool counter held)
        self.backend: Backend | None = None
        self.conn: Conn | None = None
        self.reused = False
        self.tried: list[BackendState] = []
        self.replayable = False
        self.req = b""  # the request as it goes to the backend (kept while it may be replayed)
        self.answered = False  # a byte of an answer came back: never replay
        self.started = False  # a byte of an answer went to the client: failures reset
        self.streaming = False  # the request body is still arriving (the driver pumps it: body())
        self.unsent = False  # the backend stopped reading before the whole request was written
        self.body_left = 0  # its bytes still to come (Content-Length), -1 for chunked
        self.scanner: ChunkedScanner | None = None
        self.rbuf = b""  # backend bytes not yet used
        self.rend = 0  # the backend's end (1) or reset (2), told before its last bytes were written on
        self.left = 0  # the answer's body bytes still to relay (Content-Length)
        self.blind = 0  # answer bytes that may move blind now (see ``moved``): -1 until the close
        self.rscanner: ChunkedScanner | None = None
        self.dechunk = False
        self.keep = False  # the client connection stays open after this request
        self.status = 0
        self.sent = 0  # bytes written to the client for this request
        self.received = 0  # bytes of this request from the client
        self.rid = 0
        self.termination = "--"
        self.timing: list[float] | None = None  # [start, head, connect start, connected, sent, answer]

    def _go(self, what: str) -> None:
        try:
            self.state = _T[self.state][what]
        except KeyError:
            raise ProtocolBug(f"{what!r} in state {STATE_NAMES[self.state]}") from None

    def __repr__(self) -> str:
        head = self.head
        request = f" {head.method.decode()} {head.target[:40].decode('latin-1')}" if head is not None else ""
        return f"<Exchange {STATE_NAMES[self.state]}{request} backend={self.backend} buffered={len(self.buf)}>"

    # ---- the client's side --------------------------------------------------------------------

    def start(self) -> int:
        """The first action on a new connection (or one handed back)."""
        return self._next_request() if self.buf else READ_CLIENT

    def client_data(self, data: bytes) -> int:
        """Bytes from the client."""
        buf = self.buf
        self.buf = buf + data if buf else data
        if self.state <= HEAD:
            return self._next_request()
        return NOTHING  # a pipelined request, or a body the driver pumps: it waits

    def client_eof(self) -> int:
        """The client closed its side (or reset). Between requests that is
        the end; with a request in flight its answer still goes out (a
        half-closed client may still read)."""
        self.eof = True
        if self.state <= HEAD:
            return self._end()
        if self.streaming:
            return self.upload_failed(None)
        return NOTHING

    def client_sent(self) -> int:
        """``out`` is written to the client."""
        self.sent += len(self.out)  # (bytes of this request, for its record)
        self.out = b""
        state = self.state
        if state == FLUSH:  # the last bytes for this request: next request, or the end
            site = self.site
            if site.recorder is not None:
                self._record()
                self.timing = None  # what only the record reads: reset only when records are made
                self.sent = self.status = 0
                self.termination = "--"
                self.service = ""
            if not self.keep or site.closing:
                return self._end()
            self.state = _T[FLUSH][DONE]
            # Forget the request (what the next one does not set itself before reading it).
            self.head = self.backend = None
            self.rid = 0
            self.answered = self.started = False
            if self.unsent:
                self.unsent = False
            if self.tried:
                self.tried = []
            if self.buf:
                self.deadline = site.clock.now + site.timeouts.request_head
                return self._next_request()
            self.deadline = site.clock.now + site.timeouts.client
            return self._end() if self.eof else READ_CLIENT
        if state == RELAY:
            return self._relay(b"") if self.rbuf else self._read_backend()
        if state == INTERIM:
            self._go(INTERIM_SENT)
            return self._answer_head() if self.rbuf else self._read_backend()
        raise ProtocolBug(f"client_sent in state {STATE_NAMES[state]}")

    def client_lost(self) -> int:
        """Writing to the client failed: it is gone."""
        self.termination = rec.CLIENT_ABORT + self._where()
        self._drop_backend(failed=False)
        self._record()
        return self._end()

    def _next_request(self) -> int:
        buf = self.buf
        while buf and buf[0] == 13 and buf[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request
            buf = buf[2:]
        self.buf = buf
        site = self.site
        if not buf:
            if self.eof:
                return self._end()
            if self.state == HEAD:  # only empty lines after the last request: still idle
                self._go(BLANK)
                self.deadline = site.clock.now + site.timeouts.client
            return READ_CLIENT
        started = -1.0
        if self.state == IDLE:
            self.state = _T[IDLE][BYTES]
            head_by = site.clock.now + site.timeouts.request_head
            if head_by < self.deadline:
                self.deadline = head_by
            if site.recorder is not None:
                started = site.clock.time()
                self.timing = [started, -1.0, -1.0, -1.0, -1.0, -1.0]
        end = buf.find(b"\r\n\r\n") + 4  # find_head_end's common case, inline
        try:
            if end < 4 or end > MAX_HEAD:
                end = find_head_end(buf)  # more to come, or an error to raise
                if end < 0:
                    return self._end() if self.eof else READ_CLIENT
            raw = buf if end == len(buf) else buf[:end]
            head = _requests.get(raw) or parse_request(raw)
        except ProxyError as exc:
            self.buf = b""
            return self._fail(exc)
        site.requests += 1
        ids = site.ids
        ids.count += 1
        self.rid = ids.count
        self.head = head
        self.received = end
        if self.timing is not None:  # the head whole in the bytes that began it: one reading of the clock
            self.timing[1] = started if started >= 0 else site.clock.time()
        rest = buf[end:]
        monitor = site.monitor
        if monitor is not None and head.target == monitor:  # MONITOR_URI: pylb answers itself
            self.buf = rest
            return self._monitor(head)
        pool = site.pool
        try:
            if head.method == b"CONNECT":
                raise BadRequest("CONNECT is not supported: pylb is a reverse proxy")
            target = head.target
            if target[:1] == b"/":  # origin form (authority() and path() in short)
                service = pool.resolve(head.host, target.partition(b"?")[0], site.proto, site.port)
            else:
                service = pool.resolve(head.authority(), head.path(), site.proto, site.port)
            if site.proto == "http" and (site.force_ssl or service in pool.force_ssl_services):
                self.buf = rest
                return self._redirect(head)
        except ProxyError as exc:
            self.buf = rest
            return self._fail(exc)
        self.service = service
        out = request_head_out(head, self.suffix, self.client_ip, head.upgrade is not None and _upgrading(head))
        framing = head.framing
        if framing == NO_BODY:
            self.buf = rest
        elif framing == LENGTH:
            length = head.length
            if len(rest) >= length:
                out += rest[:length]
                self.buf = rest[length:]
                self.received += length
            else:  # the body streams (the driver pumps it through body())
                out += rest
                self.buf = b""
                self.received += len(rest)
                self.streaming, self.body_left = True, length - len(rest)
        else:
            scanner = ChunkedScanner(BadRequest)
            try:
                used = scanner.feed(rest)
            except ProxyError as exc:
                self.buf = b""
                return self._fail(exc)
            out += rest[:used]
            self.buf = rest[used:]
            self.received += used
            if not scanner.done:
                self.streaming, self.body_left, self.scanner = True, -1, scanner
        self.req = out
        self.replayable = not self.streaming and head.method in IDEMPOTENT
        try:  # the first choice (a redispatch goes through _pick)
            upstate = pool.acquire(service, self.client_ip)
        except ProxyError as exc:
            return self._fail(exc)
        self.upstate = upstate
        self.backend = upstate.backend
        return self._connection()

    def _redirect(self, head: Head) -> int:
        site = self.site
        keep = head.keep_alive and head.framing == NO_BODY and not site.closing
        answer = https_redirect(head, site.https_port, keep)
        if answer is None:
            return self._fail(BadRequest("no Host to redirect to https"))
        self.status = int(answer[9:12])
        self.keep = keep
        self.termination = rec.LOCAL + rec.AT_REQUEST
        self._go(ANSWER)
        self.out = answer
        self.deadline = site.clock.now + site.timeouts.client
        return SEND_CLIENT

    def _monitor(self, head: Head) -> int:
        """MONITOR_URI: 200 while pylb serves, 503 while it drains or no
        backend of the default service is up (HAProxy's ``monitor fail if
        nbsrv lt 1``)."""
        site = self.site
        ok = not site.closing and site.pool.default_up()
        keep = head.keep_alive and head.framing == NO_BODY and not site.closing
        site.monitored += 1
        self.service = ""
        self.status = 200 if ok else 503
        self.keep = keep
        self.termination = rec.LOCAL + rec.AT_REQUEST
        self._go(ANSWER)
        self.out = monitor_response(ok, keep, head.method == b"HEAD")
        self.deadline = site.clock.now + site.timeouts.client
        return SEND_CLIENT

    # ---- choosing a backend and a connection --------------------------------------------------

    def _pick(self) -> int:
        """Choose a backend (not one tried already), then an idle connection
        to it, else DIAL. A request that may not be replayed goes only on a
        connection seen open."""
        site = self.site
        try:
            upstate = site.pool.acquire(self.service, self.client_ip, self.tried)
        except ProxyError as exc:
            return self._fail(exc)
        self.upstate = upstate
        self.backend = upstate.backend
        return self._connection()

    def _connection(self) -> int:
        """An idle connection to the chosen backend, else DIAL."""
        site = self.site
        conn = site.conns.take_idle(self.backend, not self.replayable)  # type: ignore[arg-type]
        state = self.state
        if conn is None:
            self.state = _T[state][DIALING]
            self.deadline = site.clock.now + site.timeouts.connect  # then: a failed connect (expired)
            if self.timing is not None:
                self.timing[2] = site.clock.time()
            return DIAL
        self.state = _T[state][REQUEST if state == HEAD else REPLAY]
        self.conn = conn
        self.reused = True
        self.out = self.req
        self.deadline = site.clock.now + site.timeouts.server
        return SEND_BACKEND

    def connected(self, conn: Conn) -> int:
        """DIAL succeeded."""
        self._go(CONNECTED)
        self.conn, self.reused = conn, False
        self.out = self.req
        site = self.site
        self.deadline = site.clock.now + site.timeouts.server
        if self.timing is not None:
            self.timing[3] = site.clock.time()
        return SEND_BACKEND

    def connect_failed(self, exc: ProxyError) -> int:
        """DIAL failed (refused, reset, timed out: ConnectFailed, ConnectTimeout)."""
        return self._redispatch(exc)

    def _redispatch(self, exc: ProxyError) -> int:
        """The chosen backend failed before answering anything: it counts
        toward marking it down, and another backend takes the request while
        ``retries`` allow and one is up; else the client gets ``exc``."""
        site = self.site
        upstate = self.upstate
        assert upstate is not None
        check = site.pool.check_for(upstate, site.health)
        if check.enabled and observe(upstate, False, check):
            text = f"backend {site.pool.label(upstate.backend)} is DOWN ({exc.detail})"
            log.warning("%s", text)
            if site.events is not None:
                site.events("health", text)
        self._drop_backend(failed=True)
        self.tried.append(upstate)
        self.service = self._reroute()
        if len(self.tried) > site.retries or not site.pool.has_other(self.service, self.tried):
            self.termination = (rec.SERVER_TIMEOUT if isinstance(exc, ConnectTimeout) else rec.SERVER_ABORT) + (
                rec.AT_CONNECT if isinstance(exc, ConnectFailed | ConnectTimeout) else rec.AT_HEADERS
            )
            return self._fail(exc)
        return self._pick()

    def _reroute(self) -> str:
        """The service that takes this request now: a swap since it was
        routed may have renamed or replaced it (Docker discovery names the
        default service after its only container); the old name when no
        service takes it any more."""
        head = self.head
        site = self.site
        assert head is not None
        try:
            return site.pool.resolve(head.authority(), head.path(), site.proto, site.port)
        except ProxyError:
            return self.service

    def _drop_backend(self, failed: bool) -> None:
        """Close the backend connection, if any, and release the backend."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.upstate is not None:
            self.site.pool.release(self.upstate, failed)
            self.upstate = None

    # ---- the backend's side -------------------------------------------------------------------

    def backend_sent(self) -> int:
        """``out`` is written to the backend connection."""
        self.state = _T[self.state][SENT]
        self.out = b""
        if not self.replayable:
            self.req = b""
        site = self.site
        self.deadline = site.clock.now + site.timeouts.server
        if self.timing is not None:
            self.timing[4] = site.clock.time()
        return self._answer_head() if self.rbuf else READ_BACKEND

    def backend_lost(self) -> int:
        """Writing to the backend failed (closed or reset)."""
        if self.streaming and self.state == WAIT:
            return READ_BACKEND  # the backend stopped reading the body: its answer tells the rest
        if self.state == SEND and self.answered:  # it answered early, then stopped reading
            self._go(SENT)
            self.unsent = True  # the connection is not reused, the client not kept
            return self._answer_head()
        return self.backend_eof()

    def backend_data(self, data: bytes) -> int:
        """Bytes from the backend."""
        self.answered = True
        state = self.state
        if state == WAIT:
            rbuf = self.rbuf
            self.rbuf = rbuf + data if rbuf else data
            return self._answer_head()
        if state == RELAY and not self.rbuf:
            return self._relay(data)
        self.rbuf += data
        return NOTHING  # SEND (an early answer), INTERIM, FLUSH: used after the write

    def backend_eof(self, reset: bool = False) -> int:
        """The backend closed the connection (``reset``: with an error: an
        answer delimited by the close is then cut, not complete). Told while
        bytes of its answer are still being written to the client, it is
        kept (``rend``) and acted on once they are."""
        state = self.state
        site = self.site
        if self.out and (
            state == INTERIM or (state == RELAY and (reset or self.rhead.framing != UNTIL_CLOSE))  # type: ignore[union-attr]
        ):
            self.rend = 2 if reset else 1
            return NOTHING
        if state in (SEND, WAIT) and not self.answered:
            if self.replayable:
                if self.reused:  # closed while idle: another connection to the same backend
                    self.conn.close()  # type: ignore[union-attr]
                    self.conn = None
                    return self._connection()
                return self._redispatch(NoAnswer(f"backend {self.backend} closed the connection without answering"))
            self.termination = rec.SERVER_ABORT + rec.AT_HEADERS
            return self._fail(BadGateway(f"backend {self.backend} closed the connection without answering"))
        if state in (WAIT, SEND):
            self.termination = rec.SERVER_ABORT + rec.AT_HEADERS
            return self._fail(BadGateway(f"backend {self.backend} closed the connection without a complete response"))
        if state == RELAY and self.rhead is not None and self.rhead.framing == UNTIL_CLOSE and not reset:
            self.conn.close()  # type: ignore[union-attr]
            self.conn = None
            return self._last(self.out)
        if state == RELAY:
            self.termination = rec.SERVER_ABORT + rec.AT_DATA
            log.info("backend %s closed the connection mid-response (%s)", self.backend, site.request_id(self.rid))
            return self._abort()
        return NOTHING

    def _answer_head(self) -> int:
        head = self.head
        site = self.site
        assert head is not None
        method = head.method
        while True:
            buf = self.rbuf
            end = buf.find(b"\r\n\r\n")  # the common head (CRLF lines), found inline
            try:
                if end < 0 or end + 4 > MAX_HEAD:
                    end = find_head_end(buf, BadGateway)
                    if end < 0:
                        return self._read_backend()
                else:
                    end += 4
                raw = buf if end == len(buf) else buf[:end]
                try:
                    rhead = _responses.get((raw, method)) or parse_response(raw, method)
                except ProxyError:
                    # A head with bare LF line ends (RFC 9112 2.2) ends at its first empty line,
                    # which may come before a CRLF CRLF in its body: the strict parse of what ran
                    # to there failed (a bare LF is never in a strict head). Where does it end?
                    first = find_head_end(buf, BadGateway)
                    if first < 0 or first == end:
                        raise
                    end = first
                    raw = buf[:end]
                    rhead = parse_response(raw, method)
            except ProxyError as exc:
                self.termination = rec.SERVER_ABORT + rec.AT_HEADERS
                return self._fail(exc)
            status = rhead.status
            if status >= 200:
                break
            self.rbuf = buf[end:]
            if status == 101:
                if not _upgrading(head) or self.streaming:
                    self.termination = rec.SERVER_ABORT + rec.AT_HEADERS
                    return self._fail(BadGateway("backend switched protocols without an Upgrade request"))
                return self._switch(rhead)
            if head.minor == 1:  # HTTP/1.0 clients know no 1xx: dropped
                self._go(INTERIM_HEAD)
                self.out = response_head_out(rhead, 1, True)
                self.deadline = max(self.deadline, site.clock.now + site.timeouts.client)
                return SEND_CLIENT
        if self.timing is not None:
            self.timing[5] = site.clock.time()
        self.rhead = rhead
        self.status = status  # for the record, and what the client got
        self.started = True
        framing = rhead.framing
        dechunk = self.dechunk = framing == CHUNKED and head.minor == 0  # HTTP/1.0 knows no chunked coding
        keep = self.keep = (
            head.keep_alive
            and framing != UNTIL_CLOSE
            and not site.closing
            and not dechunk
            and not self.streaming
            and not self.unsent
        )
        out = response_head_out(rhead, head.minor, keep, site.extra_response, dechunk)
        if framing == NO_BODY:
            self.rbuf = buf[end:]
            return self._last(out)
        if framing == LENGTH:
            length = rhead.length
            stop = end + length
            if len(buf) >= stop:  # the whole answer is here: the common case
                self.rbuf = buf[stop:]
                return self._last(out + buf[end:stop])
            self.left = length
        elif framing == CHUNKED:
            self.rscanner = ChunkedScanner(BadGateway)
        self.state = _T[self.state][ANSWER_HEAD]
        self.rbuf = b""
        self.out = out
        return self._relay(buf[end:])

    def _relay(self, data: bytes) -> int:
        """Relay ``data`` (and what waits in ``rbuf``) of the answer's body;
        ``out`` may hold its head already."""
        rhead = self.rhead
        assert rhead is not None
        buf = self.rbuf + data if self.rbuf else data
        out = self.out
        framing = rhead.framing
        if framing == LENGTH:
            left = self.left
            if len(buf) < left:
                self.left = left - len(buf)
                self.rbuf = b""
                out = out + buf if out else buf
            else:
                self.left = 0
                self.rbuf = buf[left:]
                return self._last(out + buf[:left] if out else buf[:left])
        elif framing == CHUNKED:
            scanner = self.rscanner
            assert scanner is not None
            payload: list[bytes] | None = [] if self.dechunk else None
            try:
                used = scanner.feed(buf, payload)
            except ProxyError as exc:
                self.termination = rec.SERVER_ABORT + rec.AT_DATA
                if out is self.out and out:  # its head is not written yet: pylb can still answer
                    self.started = False
                    self.out = b""
                    return self._fail(exc)
                log.info("backend %s: %s (%s)", self.backend, exc.detail, self.site.request_id(self.rid))
                return self._abort()
            piece = b"".join(payload) if payload is not None else buf[:used]
            self.rbuf = buf[used:]
            out = out + piece if out else piece
            if scanner.done:
                return self._last(out)
        else:  # until the backend closes
            self.rbuf = b""
            out = out + buf if out else buf
        self.out = out
        if not out:
            return self._read_backend()
        self._go(PIECE)
        site = self.site
        self.deadline = max(self.deadline, site.clock.now + site.timeouts.client)
        self.blind = 0
        return SEND_CLIENT

    def _read_backend(self) -> int:
        """READ_BACKEND while the answer's body is relayed; ``blind`` says how
        much of it may move from the backend to the client unseen (splice):
        the rest of a Content-Length body of at least ``BULK`` bytes, -1 for
        a body delimited by the backend's close."""
        if self.rend:  # the backend's end, told while bytes were being written
            reset, self.rend = self.rend == 2, 0
            return self.backend_eof(reset)
        rhead = self.rhead
        site = self.site
        self.deadline = site.clock.now + site.timeouts.server
        if rhead is not None and self.state == RELAY:
            if rhead.framing == LENGTH:
                self.blind = self.left if self.left >= BULK else 0
            elif rhead.framing == UNTIL_CLOSE:
                self.blind = -1
        return READ_BACKEND

    def moved(self, count: int) -> int:
        """``count`` bytes of the answer's body moved blind (``blind``)."""
        self.sent += count
        self.blind = 0
        rhead = self.rhead
        assert rhead is not None
        if rhead.framing == LENGTH:
            self.left -= count
            if self.left == 0:
                return self._last(b"")
        return self._read_backend()

    def touch(self) -> None:
        """Bytes move (a body streamed or spliced): the deadline moves with them."""
        site = self.site
        self.deadline = max(self.deadline, site.clock.now + max(site.timeouts.server, site.timeouts.client))

    def _last(self, out: bytes) -> int:
        """The answer is complete: the backend connection goes back (or is
        closed), the backend is released, the last bytes go out."""
        site = self.site
        self.state = _T[self.state][LAST]
        conn = self.conn
        if conn is not None:
            self.conn = None
            rhead = self.rhead
            if rhead is not None and rhead.keep_alive and not (self.rbuf or self.streaming or self.unsent or self.rend):
                site.conns.give_back(conn)
            else:
                conn.close()
            if self.rend:
                self.rend = 0
        upstate = self.upstate
        if upstate is not None:
            self.upstate = None
            if upstate.fails_in_row:
                upstate.fails_in_row = 0
            site.pool.release(upstate)
        if self.rbuf:
            self.rbuf = b""  # stray bytes: the connection was closed, not given back
        self.out = out
        self.deadline = site.clock.now + site.timeouts.client  # now the client's to read it
        return SEND_CLIENT

    # ---- the request body, streamed ----------------------------------------------------------

    def body(self, data: bytes) -> bytes:
        """Bytes from the client while ``streaming``: returns those of the
        body, to write to the backend (the rest waits in ``buf``). Raises
        BadRequest for a broken chunked body (then ``upload_failed``)."""
        left = self.body_left
        if left >= 0:
            if len(data) > left:
                self.buf, data = data[left:], data[:left]
            self.body_left = left = left - len(data)
            done = left == 0
        else:
            scanner = self.scanner
            assert scanner is not None
            used = scanner.feed(data)
            self.buf, data = data[used:], data[:used]
            done = scanner.done
        self.received += len(data)
        if done:
            self.streaming = False
        self.touch()
        return data

    def body_moved(self, count: int) -> None:
        """``count`` bytes of a Content-Length body moved blind (splice)."""
        self.body_left -= count
        self.received += count
        if self.body_left <= 0:
            self.streaming = False

    def upload_failed(self, exc: ProxyError | None) -> int:
        """The streamed body broke: ``exc`` (a bad chunk), or None when the
        client went away before sending all of it."""
        self.streaming = False
        self.termination = rec.CLIENT_ABORT + rec.AT_DATA
        self._drop_backend(failed=False)
        if exc is not None and not self.started:
            return self._fail(exc)
        self._record()
        return self._end()

    # ---- 101 and the tunnel -------------------------------------------------------------------

    def _switch(self, rhead: Head) -> int:
        head = self.head
        assert head is not None
        self._go(SWITCH)
        self.rhead = rhead
        self.status = 101
        self.started = True
        self.out = response_head_out(rhead, head.minor, True) + self.rbuf
        self.rbuf = b""
        site = self.site
        self.deadline = site.clock.now + site.timeouts.tunnel
        return TUNNEL

    def tunnel_touch(self) -> None:
        """Bytes moved in the tunnel: its idle timeout starts again."""
        self.deadline = self.site.clock.now + self.site.timeouts.tunnel

    def tunnel_done(self) -> int:
        """Both directions of the tunnel have ended."""
        self._drop_backend(failed=False)
        self._record()
        return self._end()

    # ---- deadlines, errors and the end --------------------------------------------------------

    def expired(self) -> int:
        """The deadline passed: say why when the client can still hear it."""
        state = self.state
        if state == CONNECT:  # the connect timeout: another backend may take the request
            timeout = self.site.timeouts.connect
            return self.connect_failed(ConnectTimeout(f"connect to {self.backend} timed out after {timeout:g}s"))
        if state == HEAD:
            self.termination = rec.CLIENT_TIMEOUT + rec.AT_REQUEST
            self.buf = b""
            return self._fail(RequestTimeout("the request head did not arrive in time"))
        if state in (SEND, WAIT) and not self.started:
            self.termination = rec.SERVER_TIMEOUT + rec.AT_HEADERS
            self._drop_backend(failed=True)
            return self._fail(GatewayTimeout("the backend did not answer in time"), keep=False)
        if state in (RELAY, INTERIM) or (state == FLUSH and self.started):
            self.termination = (rec.SERVER_TIMEOUT if state == RELAY else rec.CLIENT_TIMEOUT) + rec.AT_DATA
            return self._abort()
        if state == TUNNELING:
            return self.tunnel_done()
        if state == FLUSH:  # our own answer is not being read
            self._record()
        return self._end()

    def _fail(self, exc: ProxyError, keep: bool | None = None) -> int:
        """Answer ``exc`` (once any byte of an answer went out: reset)."""
        if self.started:
            return self._abort()
        site = self.site
        self._drop_backend(failed=False)
        head = self.head
        if keep is None:
            keep = (
                isinstance(exc, NoBackend)
                and head is not None
                and head.framing == NO_BODY
                and head.keep_alive
                and not site.closing
            )
        if self.termination == "--":
            self.termination = rec.PROXY + (rec.AT_REQUEST if self.state <= HEAD else rec.AT_CONNECT)
        self.keep = keep
        self.status = exc.status
        site.errors[exc.status] = site.errors.get(exc.status, 0) + 1
        if not self.rid:  # no head was read: the answer still gets an id
            ids = site.ids
            ids.count += 1
            self.rid = ids.count
        rid = site.request_id(self.rid)
        # The page says the status and the id; the log says why (it may name a backend's address).
        log.info("%d %s for %s: %s", exc.status, rid, self.client_ip.decode(), exc.detail)
        self.streaming = False
        self._go(ANSWER)
        self.out = error_response(exc.status, exc.reason, keep, head is not None and head.method == b"HEAD", rid)
        self.deadline = site.clock.now + site.timeouts.client
        return SEND_CLIENT

    def _abort(self) -> int:
        """A failure after the answer began: the client connection is reset."""
        self._drop_backend(failed=False)
        self._record()
        self.reset = True
        return self._end()

    def _end(self) -> int:
        if self.state != CLOSED:
            self._go(END)
        self._drop_backend(failed=False)
        self.streaming = False
        return CLOSE

    def _where(self) -> str:
        state = self.state
        if state <= HEAD:
            return rec.AT_REQUEST
        if state == CONNECT:
            return rec.AT_CONNECT
        if state in (SEND, WAIT):
            return rec.AT_HEADERS
        return rec.AT_DATA

    def _record(self) -> None:
        """Hand the site's recorder this request's capture (``pylb.core.record``)."""
        site = self.site
        recorder = site.recorder
        if recorder is not None:
            recorder(
                (
                    self.client_ip,
                    self.client_port,
                    self.head,
                    self.backend,
                    self.status,
                    self.sent,
                    self.received,
                    self.timing,
                    site.clock.time(),
                    len(self.tried),
                    self.termination,
                    self.rid,
                    self.service,
                    site.name,
                    site.ids,
                )
            )


def _upgrading(head: Head) -> bool:
    """Whether pylb passes this request's Upgrade on (never h2c: pylb speaks
    HTTP/1.1 to both sides), and so may relay a 101."""
    return head.upgrade is not None and head.upgrade.lower() != b"h2c"


__all__ = [
    "ACTION_NAMES",
    "BULK",
    "CLOSE",
    "CLOSED",
    "CONNECT",
    "DIAL",
    "FLUSH",
    "HEAD",
    "IDEMPOTENT",
    "IDLE",
    "INTERIM",
    "NOTHING",
    "READ_BACKEND",
    "READ_CLIENT",
    "RELAY",
    "SEND",
    "SEND_BACKEND",
    "SEND_CLIENT",
    "STATE_NAMES",
    "TRANSITIONS",
    "TUNNEL",
    "TUNNELING",
    "WAIT",
    "Clock",
    "Conn",
    "Connections",
    "Exchange",
    "Observer",
    "ProtocolBug",
    "Recorder",
    "Site",
    "describe",
]
