"""The strict head parser, fed byte by byte, and held to agree with h11."""

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylb.core import http1
from pylb.core.errors import (
    BadGateway,
    BadRequest,
    HeadTooLarge,
    ProxyError,
    UnsupportedCoding,
    UriTooLong,
    VersionNotSupported,
)
from pylb.core.http1 import (
    CHUNKED,
    LENGTH,
    MAX_HEAD,
    NO_BODY,
    UNTIL_CLOSE,
    Head,
    _general_request,
    _general_response,
    _one_pass_request,
    _one_pass_response,
    find_head_end,
    parse_request,
    parse_response,
)


def parse_bytewise(data: bytes) -> Head:
    """Feed one byte at a time, as the slowest client would."""
    buf = b""
    for i in range(len(data)):
        buf += data[i : i + 1]
        end = find_head_end(buf)
        if end >= 0:
            assert end == len(buf), "the head ended before its last byte"
            return parse_request(buf)
    raise AssertionError("head never completed")


def test_canonical_request_parsed_byte_by_byte() -> None:
    head = parse_bytewise(b"POST /up?x=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nX-Y:  v w \r\n\r\n")
    assert (head.method, head.target, head.minor) == (b"POST", b"/up?x=1", 1)
    assert head.fields == [(b"Host", b"a.test"), (b"Content-Length", b"5"), (b"X-Y", b"v w")]
    assert (head.framing, head.length, head.host, head.keep_alive) == (LENGTH, 5, b"a.test", True)


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
    ],
)
def test_keep_alive_rules(head: bytes, keep_alive: bool) -> None:
    assert parse_request(head).keep_alive is keep_alive


@pytest.mark.parametrize(
    ("head", "framing", "length"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", NO_BODY, 0),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", CHUNKED, 0),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", CHUNKED, 0),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", LENGTH, 5),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", LENGTH, 7),
    ],
)
def test_request_framing(head: bytes, framing: int, length: int) -> None:
    parsed = parse_request(head)
    assert (parsed.framing, parsed.length) == (framing, length)


SMUGGLING = [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xd9\xa3\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n",  # whitespace before the colon
    b"GET / HTTP/1.1\r\nHost: a\r\nX(y): a\r\n\r\n",  # invalid name
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # no Host
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
    b"G\x00T / HTTP/1.1\r\nHost: a\r\n\r\n",
    # target forms (RFC 9112 3.2): a path, an http(s) URI, * for OPTIONS only
    b"GET a.test:80 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET a HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
    # an absolute-form target names another authority than Host (RFC 9112 3.2.2)
    b"GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a:8080/ HTTP/1.1\r\nHost: a\r\n\r\n",
    # an empty list element, chunked twice, chunked not last
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
]


@pytest.mark.parametrize("head", SMUGGLING)
def test_smuggling_and_malformed_heads_are_400(head: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(head)
    assert info.value.status == 400
    assert "\n" not in info.value.detail


@pytest.mark.parametrize(
    "head",
    [
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a.test/x HTTP/1.1\r\nHost: A.test\r\n\r\n",
        b"GET HTTPS://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",  # the drivers refuse it, by name
    ],
)
def test_the_other_target_forms_where_they_belong(head: bytes) -> None:
    assert parse_request(head).target == head.split(b" ")[1]


@pytest.mark.parametrize("version", [b"2.0", b"3.0", b"0.9"])
def test_another_major_version_is_505(version: bytes) -> None:
    with pytest.raises(VersionNotSupported) as info:
        parse_request(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n")
    assert info.value.status == 505


def test_a_coding_before_chunked_is_501_not_implemented() -> None:
    with pytest.raises(UnsupportedCoding) as info:
        parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
    assert info.value.status == 501
    with pytest.raises(BadGateway):  # a response's is the backend's fault
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"GET")


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
    ],
)
def test_repeated_equal_lengths_are_folded_into_one(head: bytes) -> None:
    parsed = parse_request(head)
    assert (parsed.framing, parsed.length, parsed.fold_length, parsed.needs_rewrite) == (LENGTH, 5, True, True)
    assert parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\n").fold_length is False


def test_bare_lf_is_refused_before_the_head_ends() -> None:
    with pytest.raises(BadRequest, match="bare LF"):
        find_head_end(b"GET / HTTP/1.1\nHost: a\n\n")


def test_limits() -> None:
    with pytest.raises(HeadTooLarge):
        find_head_end(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD)
    many = b"".join(b"X%d: v\r\n" % i for i in range(101))
    with pytest.raises(HeadTooLarge) as info:
        parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
    assert info.value.status == 431
    with pytest.raises(UriTooLong) as uri:
        parse_request(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert uri.value.status == 414


@pytest.mark.parametrize(
    ("head", "method", "framing", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", b"GET", LENGTH, True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", b"HEAD", NO_BODY, True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"GET", NO_BODY, True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", b"GET", NO_BODY, True),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", b"GET", NO_BODY, True),
        (b"HTTP/1.1 200 OK\r\n\r\n", b"GET", UNTIL_CLOSE, False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", b"GET", LENGTH, False),
        (b"HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET", CHUNKED, True),
    ],
)
def test_response_framing(head: bytes, method: bytes, framing: int, keep_alive: bool) -> None:
    parsed = parse_response(head, method)
    assert (parsed.framing, parsed.keep_alive) == (framing, keep_alive)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        # what stays ambiguous read leniently
        b"HTTP/1.1 200 OK\nX: a\rb\n\n",  # a bare CR
        b"HTTP/1.1 200 OK\n X: 1\n\n",  # a whitespace-led line before the first field
        b"HTTP/1.1 200 OK\nX: 1\n\nY: 2\r\n\r\n",  # two heads (an empty line inside)
        b"HTTP/1.1 200 OK\nX : 1\n\n",  # whitespace before the colon
        b"HTTP/1.1 200 OK\nX: a\x01b\n\n",  # a control byte
        b"http/1.1 200 OK\n\n",
        b"\r\nHTTP/1.1 200 OK\r\n\r\n",
    ],
)
def test_bad_responses_are_502(head: bytes) -> None:
    with pytest.raises(BadGateway):
        parse_response(head, b"GET")


# --- responses read as RFC 9112 lets a recipient read them, sent on canonical ------------

TOLERATED = [
    (b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\n",
     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"),
    (b"HTTP/1.1 200 OK\r\nContent-type: text/html\n\n",  # busybox httpd's CGI answer
     b"HTTP/1.1 200 OK\r\nContent-type: text/html\r\n\r\n"),
    (b"HTTP/1.1 200 OK\r\nX: 1\r\n\n", b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\n"),
    (b"HTTP/1.1 200 OK\nX: 1\n\r\n", b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\n"),
    (b"HTTP/1.1 200 OK\r\nX-A: a \r\n\t b\r\nContent-Length: 0\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nX-A: a b\r\nContent-Length: 0\r\n\r\n"),
    (b"HTTP/1.1 200 OK\r\nContent-Length:\r\n 2\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
    (b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
]  # fmt: skip


def parse_response_bytewise(data: bytes, method: bytes = b"GET") -> tuple[Head, int]:
    """Feed a backend's bytes one at a time; the head, and where it ended."""
    buf = b""
    for i in range(len(data)):
        buf += data[i : i + 1]
        end = find_head_end(buf, BadGateway)
        if end >= 0:
            return parse_response(buf[:end], method), end
    raise AssertionError("head never completed")


@pytest.mark.parametrize(("received", "canonical"), TOLERATED)
def test_tolerated_response_heads_are_read_and_normalized(received: bytes, canonical: bytes) -> None:
    head, end = parse_response_bytewise(received + b"ok\r\n\r\nmore")
    assert end == len(received)  # the body, even holding a CRLF CRLF, is not the head
    assert head.raw == canonical
    reference = parse_response(canonical, b"GET")
    assert {k: v for k, v in slots(head).items()} == slots(reference)


def test_canonical_response_heads_never_reach_the_normalizing_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(raw: bytes) -> bytes:
        raise AssertionError(f"normalized a canonical head: {raw!r}")

    monkeypatch.setattr(http1, "_normalized_response", refuse)
    for raw in [b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 3\r\n\r\n", b"HTTP/1.0 204 \r\n\r\n",
                b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"]:  # fmt: skip
        assert find_head_end(raw + b"body", BadGateway) == len(raw)
        assert parse_response(raw, b"GET").raw == raw


field_name = st.sampled_from([b"Content-Type", b"X-A", b"Set-Cookie", b"Cache-Control", b"Content-Length"])
field_value = st.sampled_from([b"text/plain", b"a b", b"no-cache, no-store", b"7", b"x=1; Path=/", b""])


@st.composite
def lenient_response_heads(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(what a lenient backend sends, the canonical head it means): line ends CRLF or LF at
    random, a value with a space folded there at random."""
    start = draw(st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 404 Not Found", b"HTTP/1.1 204 "]))
    fields = draw(st.lists(st.tuples(field_name, field_value), max_size=5, unique_by=lambda f: f[0]))
    eol = st.sampled_from([b"\r\n", b"\n"])
    sent, canonical = start + draw(eol), start + b"\r\n"
    for name, value in fields:
        written = value
        if b" " in value and draw(st.booleans()):
            written = value.replace(b" ", draw(st.sampled_from([b"\r\n ", b"\n\t", b" \r\n  "])), 1)
        sent += name + b": " + written + draw(eol)
        canonical += name + b": " + value + b"\r\n"
    return sent + draw(eol), canonical + b"\r\n"


@settings(max_examples=500, deadline=None, derandomize=True)
@given(lenient_response_heads())
def test_a_lenient_head_reads_as_the_canonical_head_it_means(pair: tuple[bytes, bytes]) -> None:
    sent, canonical = pair
    assert find_head_end(sent + b"\r\n\r\n", BadGateway) == len(sent)
    try:
        expected = parse_response(canonical, b"GET")
    except ProxyError as exc:
        with pytest.raises(type(exc)):
            parse_response(sent, b"GET")
        return
    assert slots(parse_response(sent, b"GET")) == slots(expected)


# --- differential: the fast path never accepts what h11 rejects -----------

token = st.text("abcXYZ-!#$%&'*+.^_`|~09", min_size=1, max_size=8)
value = st.binary(max_size=12)
name_pool = st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "Connection", "X-A", "x-b", "Expect"])
field = st.tuples(st.one_of(name_pool, token), st.one_of(value, st.sampled_from([b"5", b"chunked", b"close", b"a"])))


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    method = draw(st.one_of(st.sampled_from(["GET", "POST", "HEAD"]), token)).encode()
    target = draw(st.one_of(st.just(b"/"), st.binary(min_size=1, max_size=10)))
    version = draw(st.sampled_from([b"1.1", b"1.0", b"1.2", b"2.0"]))
    sep = draw(st.sampled_from([b": ", b":", b" : ", b":\t"]))
    fields = draw(st.lists(field, max_size=5))
    lines = b"".join(n.encode() + sep + v + b"\r\n" for n, v in fields)
    return method + b" " + target + b" HTTP/" + version + b"\r\n" + lines + b"\r\n"


def h11_request(data: bytes) -> h11.Request | None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    assert isinstance(event, h11.Request), event
    return event


@settings(max_examples=1500, deadline=None)
@given(request_heads())
def test_fast_path_agrees_with_h11(data: bytes) -> None:
    end = -1
    try:
        end = find_head_end(data)
        if end != len(data):
            return  # a CRLF CRLF inside generated bytes: not one head
        head = parse_request(data)
    except ProxyError:
        return  # pylb may be stricter than h11, never laxer
    reference = h11_request(data)
    assert reference is not None, f"pylb accepted what h11 rejects: {data!r}"
    assert reference.method == head.method
    assert reference.target == head.target
    assert reference.http_version == b"1.%d" % head.minor
    # h11 folds identical Content-Length lines into one; compare the rest as sent
    def others(items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(n.lower(), v) for n, v in items if n.lower() != b"content-length"]

    assert others(list(reference.headers.raw_items())) == others(head.fields)
    if head.framing == LENGTH:
        cl = [v for n, v in reference.headers.raw_items() if n.lower() == b"content-length"]
        assert {x.strip() for c in cl for x in c.split(b",")} == {str(head.length).encode()}
    te = [v for n, v in reference.headers.raw_items() if n.lower() == b"transfer-encoding"]
    assert (head.framing == CHUNKED) == bool(te)


# --- differential: the one pass and the general pass read a head alike -----

def slots(head: Head) -> dict[str, object]:
    return {name: getattr(head, name) for name in Head.__slots__}


one_pass_names = st.sampled_from(
    ["Host", "host", "HOST", "Content-Length", "content-length", "Transfer-Encoding", "Connection", "connection",
     "Keep-Alive", "TE", "Trailer", "Upgrade", "Expect", "Proxy-Authorization", "X-Forwarded-For", "X-A", "Te-X"]
)  # fmt: skip
one_pass_values = st.one_of(
    st.sampled_from(
        [b"5", b"007", b"chunked", b"Chunked", b"gzip, chunked", b"close", b"Close", b"keep-alive", b"Keep-Alive",
         b"upgrade", b"te, close", b"a.test", b"A.Test:8080", b"", b" 5 ", b"5, 5", b"100-continue", b"x\x00y"]
    ),
    st.binary(max_size=8),
)  # fmt: skip


@st.composite
def heads_for_both_passes(draw: st.DrawFn) -> tuple[bytes, bool]:
    response = draw(st.booleans())
    if response:
        start = draw(st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 204 No Content",
                                      b"HTTP/1.1 304 x", b"HTTP/1.1 101 Switching", b"http/1.1 200 OK",
                                      b"HTTP/1.1 404 ", b"HTTP/1.1 500"]))  # fmt: skip
    else:
        method = draw(st.sampled_from([b"GET", b"POST", b"get", b"M-X"]))
        target = draw(st.sampled_from([b"/", b"/A?b=C", b"http://A.test/x", b"*"]))
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"http/1.1", b"HTTP/1.2"]))
        start = method + b" " + target + b" " + version
    sep = draw(st.sampled_from([b": ", b":", b":\t", b":  "]))
    fields = draw(st.lists(st.tuples(st.one_of(one_pass_names, token), one_pass_values), max_size=6))
    trail = draw(st.sampled_from([b"", b" ", b"\t"]))
    lines = b"".join(n.encode() + sep + v + trail + b"\r\n" for n, v in fields)
    return start + b"\r\n" + lines + b"\r\n", response


@settings(max_examples=3000, deadline=None)
@given(heads_for_both_passes(), st.sampled_from([b"GET", b"HEAD", b"CONNECT"]))
def test_one_pass_reads_every_head_it_takes_as_the_general_pass_does(case: tuple[bytes, bool], method: bytes) -> None:
    data, response = case
    if data.find(b"\r\n\r\n") != len(data) - 4:
        return  # not one head
    one = _one_pass_response(data, method) if response else _one_pass_request(data)
    try:
        general = _general_response(data, method) if response else _general_request(data)
    except ProxyError as exc:
        assert one is None, f"the one pass took a head the general pass refuses ({exc}): {data!r}"
        return
    if one is not None:
        assert slots(one) == slots(general), data


@pytest.mark.parametrize(
    "data",
    [
        b"GET /x?n=1 HTTP/1.1\r\nHost: A.test:8080\r\n\r\n",
        b"POST /u HTTP/1.1\r\nHOST: a\r\ncontent-length: 12\r\nConnection: Keep-Alive\r\nX-A: b\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    ],
)
def test_common_request_heads_take_the_one_pass(data: bytes) -> None:
    one = _one_pass_request(data)
    assert one is not None
    assert slots(one) == slots(_general_request(data))


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 28 Nov 2026 19:06:44 GMT\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 100\r\nConnection: keep-alive\r\nX-Request-Id: 12\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
    ],
)
def test_common_response_heads_take_the_one_pass(data: bytes) -> None:
    one = _one_pass_response(data, b"GET")
    assert one is not None
    assert slots(one) == slots(_general_response(data, b"GET"))


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",  # a header pylb reads, twice
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
        b"GET / http/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ],
)
def test_uncommon_request_heads_go_to_the_general_pass(data: bytes) -> None:
    assert _one_pass_request(data) is None


def test_values_of_the_headers_pylb_acts_on_are_trimmed_in_the_general_pass_too() -> None:
    # Expect sends the head to the general pass; its trailing spaces, however many, are not the value.
    head = parse_request(b"GET / HTTP/1.1\r\nHost: a \t \r\nExpect: 100-continue" + b" " * 8000 + b"\r\n\r\n")
    assert head.host == b"a" and head.expect_continue
    assert _one_pass_request(head.raw) is None
