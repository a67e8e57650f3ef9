"""Fuzzing the request and response parsers and the chunked scanner (issue 7).

Random bytes and mutated valid heads: the parsers raise nothing but
``ProxyError`` subclasses, never accept a head h11 rejects (response heads
are read leniently, as h11 reads them too: bare LF line ends, obs-fold),
agree with h11 on the body framing, and the heads pylb forwards (rewritten) mean the same as
the ones it judged. ``ChunkedScanner.feed`` never claims more bytes than it
was given and agrees with h11 on where a body ends.

Budget: ``PYLB_FUZZ_EXAMPLES`` examples per test (default 300), no deadline.
"""

from __future__ import annotations

import itertools
import os

import h11
import pytest
from hypothesis import HealthCheck as Health
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pylb.core.errors import BadGateway, BadRequest, ProxyError
from pylb.core.framing import ChunkedScanner
from pylb.core.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, Head, find_head_end, parse_request, parse_response
from pylb.core.policy import forwarded_suffix, request_head_out, response_head_out

settings.register_profile(
    "pylb-fuzz",
    max_examples=int(os.environ.get("PYLB_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,  # write nothing outside tests/faults
    suppress_health_check=[Health.too_slow, Health.filter_too_much, Health.data_too_large],
)
FUZZ = settings.get_profile("pylb-fuzz")

CLIENT_IP = b"192.0.2.7"
SUFFIX = forwarded_suffix(CLIENT_IP.decode(), "http", 80)

REQUEST_SEEDS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://a.test/x HTTP/1.1\r\nHost: b\r\nConnection: close, x-a\r\nX-A: 1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nKeep-Alive: 5\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\nTE: trailers\r\n\r\n",
    b"DELETE /x HTTP/1.1\r\nhost:a\r\ncontent-length:\t7\t\r\nProxy-Authorization: x\r\n\r\n",
]
RESPONSE_SEEDS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    b'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "x"\r\n\r\n',
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 404 \r\nConnection: close, x-b\r\nX-B: 2\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 500 Internal Server Error\r\nTrailer: x\r\ncontent-length:  3 \r\n\r\n",
]
# fmt: off
PIECES = [
    b"\r\n", b"\r", b"\n", b"\x00", b" ", b"\t", b":", b",", b";", b"+", b"-", b"_", b"0", b"5", b"9", b"a",
    b"\x7f", b"\xff", b"\x0b", "\u0663".encode(), b"chunked", b"gzip", b"close", b"HTTP/1.1", b"1", b"00",
    b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: b\r\n", b"Connection: close\r\n",
    b"\r\n ", b"Connection: content-length\r\n", b"Upgrade: h2c\r\n",
]
# fmt: on


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid seed with 1 to 4 insertions, replacements or deletions."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "replace", "delete"]))
        pos = draw(st.integers(0, len(data)))
        piece = draw(st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=3)))
        if kind == "insert":
            data[pos:pos] = piece
        elif kind == "replace":
            data[pos : pos + len(piece)] = piece
        else:
            del data[pos : pos + draw(st.integers(1, 6))]
    return bytes(data)


requests = st.one_of(st.binary(max_size=300), mutated(REQUEST_SEEDS))
responses = st.one_of(st.binary(max_size=300), mutated(RESPONSE_SEEDS))


def head_of(data: bytes, response: bool = False) -> bytes | None:
    """What the proxy hands the parser: ``data`` up to its head's end (the
    head completed with CRLF CRLF when it has none), found as the proxy
    finds it; None when ``find_head_end`` refuses it. Checks its contract."""
    expected = BadGateway if response else BadRequest
    for buf in (data, data + b"\r\n\r\n"):
        try:
            end = find_head_end(buf, BadGateway) if response else find_head_end(buf)
        except ProxyError as exc:
            assert isinstance(exc, expected), exc
            return None
        if end >= 0:
            if response:  # the first empty line, whichever its line ends (RFC 9112 2.2)
                ends = [buf.find(empty) + len(empty) for empty in (b"\n\n", b"\n\r\n") if empty in buf]
                first = min(ends)
                assert end == first, (buf, end)
            else:
                assert buf[end - 4 : end] == b"\r\n\r\n" and buf.find(b"\r\n\r\n") == end - 4
            return buf[:end]
    raise AssertionError(f"no head end in {data!r} + CRLF CRLF")


def parse_req(raw: bytes) -> Head | None:
    try:
        return parse_request(raw)
    except ProxyError as exc:
        assert isinstance(exc, BadRequest), exc  # 400, 414 or 431: a client's fault
        return None


def parse_resp(raw: bytes, method: bytes) -> Head | None:
    try:
        return parse_response(raw, method)
    except ProxyError as exc:
        assert isinstance(exc, BadGateway), exc
        return None


def h11_request(raw: bytes) -> h11.Request | None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    assert isinstance(event, h11.Request), event
    return event


def h11_response(raw: bytes, method: bytes) -> h11.Response | h11.InformationalResponse | None:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    assert isinstance(event, h11.Response | h11.InformationalResponse), event
    return event


def h11_framing(headers: h11._headers.Headers) -> tuple[int, int]:
    values = dict(headers)  # h11 has already folded repeated identical Content-Length lines
    if b"transfer-encoding" in values:
        return CHUNKED, 0
    if b"content-length" in values:
        return LENGTH, int(values[b"content-length"])
    return -1, 0


def names_framing_in_connection(head: Head) -> bool:
    return bool(head.connection & {b"content-length", b"transfer-encoding", b"host"})


# --------------------------------------------------------------------------- requests


@FUZZ
@given(requests)
@example(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xd9\xa3\r\n\r\n")
@example(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n")
def test_request_parsing_raises_only_proxy_errors(data: bytes) -> None:
    raw = head_of(data)
    if raw is None:
        return
    head = parse_req(raw)
    if head is None:
        return
    head.path(), head.authority(), head.fields, head.get(b"host"), repr(head)
    request_head_out(head, SUFFIX, CLIENT_IP, upgrade=head.upgrade is not None)


@FUZZ
@given(requests)
@example(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
@example(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")
def test_request_parser_never_accepts_what_h11_rejects(data: bytes) -> None:
    raw = head_of(data)
    head = parse_req(raw) if raw is not None else None
    if head is None:
        return  # pylb may be stricter than h11
    reference = h11_request(raw)  # type: ignore[arg-type]
    assert reference is not None, f"pylb accepted a head h11 rejects: {raw!r}"
    assert (reference.method, reference.target) == (head.method, head.target)
    assert reference.http_version == b"1.%d" % head.minor
    assert dict(reference.headers).get(b"host") == head.host
    framing, length = h11_framing(reference.headers)
    if framing == -1:
        assert head.framing == NO_BODY, raw
    else:
        assert (head.framing, head.length) == (framing, length), raw


@FUZZ
@given(requests)
def test_the_forwarded_request_head_means_what_pylb_judged(data: bytes) -> None:
    """What pylb sends the backend parses (by pylb and by h11) to the same
    method, target, version, Host and framing as what it received."""
    raw = head_of(data)
    head = parse_req(raw) if raw is not None else None
    if head is None or names_framing_in_connection(head):
        return  # the latter: see test_a_connection_header_cannot_strip_framing_from_a_forwarded_request
    upgrade = head.upgrade is not None and head.upgrade.lower() != b"h2c"
    out = request_head_out(head, SUFFIX, CLIENT_IP, upgrade)
    again = parse_request(out)
    assert (again.method, again.target, again.minor, again.host) == (head.method, head.target, head.minor, head.host)
    assert (again.framing, again.length) == (head.framing, head.length), (raw, out)
    assert again.get(b"x-forwarded-for")[-1].endswith(CLIENT_IP)
    assert h11_request(out) is not None, out


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
    ],
)
def test_a_connection_header_cannot_strip_framing_from_a_forwarded_request(raw: bytes) -> None:
    head = parse_request(raw)
    again = parse_request(request_head_out(head, SUFFIX, CLIENT_IP))
    assert (again.framing, again.length, again.host) == (head.framing, head.length, head.host)


# --------------------------------------------------------------------------- responses


@FUZZ
@given(responses, st.sampled_from([b"GET", b"HEAD", b"POST"]))
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", b"GET")
def test_response_parsing_raises_only_proxy_errors(data: bytes, method: bytes) -> None:
    raw = head_of(data, response=True)
    head = parse_resp(raw, method) if raw is not None else None
    if head is None:
        return
    head.fields, repr(head)
    for minor in (0, 1):
        for keep_alive in (False, True):
            response_head_out(head, minor, keep_alive, b"X-Extra: 1\r\n", dechunk=head.framing == CHUNKED)


@FUZZ
@given(responses, st.sampled_from([b"GET", b"HEAD"]))
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET")
@example(b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\n", b"GET")  # bare LFs
@example(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length:\r\n 5\r\n\r\n", b"GET")  # obs-fold
@example(b"HTTP/1.2 200 OK\r\nContent-Length: 5\r\n\r\n", b"GET")
def test_response_parser_never_accepts_what_h11_rejects(data: bytes, method: bytes) -> None:
    raw = head_of(data, response=True)
    head = parse_resp(raw, method) if raw is not None else None
    if head is None or head.status < 100 or head.status == 101:
        # < 100: a known bug, see test_a_status_code_below_100_is_refused; 101: h11
        # refuses it without an Upgrade request, and so does the proxy loop
        return
    reference = h11_response(raw, method)  # type: ignore[arg-type]
    assert reference is not None, f"pylb accepted a response head h11 rejects: {raw!r}"
    assert reference.status_code == head.status
    # HTTP/1.2 and later minors: read as HTTP/1.1 (RFC 9110 6.2), h11 keeps the number
    assert reference.http_version == b"1.%d" % head.minor or (head.minor, reference.http_version[:2]) == (1, b"1.")
    if head.framing != NO_BODY:
        framing, length = h11_framing(reference.headers)
        expected = (UNTIL_CLOSE, 0) if framing == -1 else (framing, length)
        assert (head.framing, head.length) == expected, raw


@pytest.mark.parametrize("raw", [b"HTTP/1.1 099 Weird\r\n\r\n", b"HTTP/1.1 000 Zero\r\n\r\n"])
def test_a_status_code_below_100_is_refused(raw: bytes) -> None:
    assert h11_response(raw, b"GET") is None  # h11: "status_code should be in range [100, 200)"
    with pytest.raises(BadGateway):
        parse_response(raw, b"GET")


@FUZZ
@given(responses, st.booleans(), st.sampled_from([0, 1]))
def test_the_relayed_response_head_means_what_pylb_judged(data: bytes, keep_alive: bool, minor: int) -> None:
    raw = head_of(data, response=True)
    head = parse_resp(raw, b"GET") if raw is not None else None
    if head is None or head.status < 200 or names_framing_in_connection(head):
        return  # the latter: see test_a_connection_header_cannot_strip_framing_from_a_relayed_response
    dechunk = head.framing == CHUNKED and minor == 0
    out = response_head_out(head, minor, keep_alive, b"", dechunk)
    again = parse_response(out, b"GET")
    assert again.status == head.status
    if dechunk:
        assert again.framing == UNTIL_CLOSE and not again.keep_alive
    else:
        assert (again.framing, again.length) == (head.framing, head.length), (raw, out)
    if not keep_alive:
        assert b"close" in again.connection


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_a_connection_header_cannot_strip_framing_from_a_relayed_response(raw: bytes) -> None:
    head = parse_response(raw, b"GET")
    again = parse_response(response_head_out(head, 1, True), b"GET")
    assert (again.framing, again.length) == (head.framing, head.length)


# --------------------------------------------------------------------------- chunked bodies


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    """Mostly valid chunked bodies (extensions, trailers, a next message
    after them), then mutated."""
    parts = []
    for chunk in draw(st.lists(st.binary(min_size=1, max_size=40), max_size=4)):
        ext = draw(st.sampled_from([b"", b";a", b";a=b", b' ; a = "q\\"x"', b";"]))
        size = b"%x" % len(chunk)
        parts.append(draw(st.sampled_from([size, size.upper(), b"0" + size])) + ext + b"\r\n" + chunk + b"\r\n")
    trailers = draw(st.sampled_from([b"", b"X-T: 1\r\n", b"X-T: 1\r\nY: \r\n"]))
    body = b"".join(parts) + b"0\r\n" + trailers + b"\r\n" + draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\n"]))
    if draw(st.booleans()):
        return body
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        piece = draw(st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=2)))
        if draw(st.booleans()):
            data[pos:pos] = piece
        else:
            data[pos : pos + len(piece)] = piece
    return bytes(data)


def scan(data: bytes, cuts: list[int]) -> tuple[int, bytes, bool] | None:
    """Feed ``data`` in pieces cut at ``cuts``: (bytes that belong to the
    body, decoded payload, done); None when the scanner refuses it."""
    scanner = ChunkedScanner(BadRequest)
    payload: list[bytes] = []
    consumed = 0
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, stop in itertools.pairwise(bounds):
        piece = data[start:stop]
        was_done = scanner.done
        try:
            used = scanner.feed(piece, payload)
        except ProxyError as exc:
            assert isinstance(exc, BadRequest), exc
            return None
        assert 0 <= used <= len(piece), (used, len(piece))
        if was_done:
            assert used == 0
        elif not scanner.done:
            assert used == len(piece), "bytes of an unfinished body were left unclaimed"
        consumed += used
    decoded = b"".join(payload)
    assert len(decoded) <= consumed
    return consumed, decoded, scanner.done


def h11_chunked(data: bytes) -> tuple[int, bytes] | str | None:
    """Where h11 ends this chunked body: (consumed, payload); "more" when it
    needs more bytes; None when it rejects the body."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + data)
    payload = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return "more"
            if isinstance(event, h11.Data):
                payload += event.data
            elif isinstance(event, h11.EndOfMessage):
                return len(data) - len(conn.trailing_data[0]), payload
    except h11.RemoteProtocolError:
        return None


@FUZZ
@given(st.one_of(st.binary(max_size=200), chunked_bodies()), st.lists(st.integers(0, 400), max_size=6))
@example(b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", [3, 9, 17])
@example(b"ffffffffffffffffff\r\n", [])
def test_the_chunked_scanner_never_claims_more_than_it_was_given(data: bytes, cuts: list[int]) -> None:
    scan(data, cuts)


@FUZZ
@given(chunked_bodies(), st.lists(st.integers(0, 400), max_size=4))
def test_the_chunked_scanner_ends_a_body_where_h11_does(data: bytes, cuts: list[int]) -> None:
    """When both accept a chunked body, they agree on where it ends and what
    it carries; pylb never ends a body that h11 would still be reading."""
    ours = scan(data, cuts)
    whole = scan(data, [])
    assert ours == whole, "the result depends on how the bytes were split"
    if ours is None or not ours[2]:
        return
    reference = h11_chunked(data)
    assert reference != "more", f"pylb ended a body h11 would still be reading: {data!r}"
    if reference is not None:
        assert reference == ours[:2], data
