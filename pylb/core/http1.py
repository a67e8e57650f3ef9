"""HTTP/1.1 message heads: a strict, narrow parser with h11 as the reference.

Owns: turning the bytes of a request or response head into a ``Head`` and
deciding its body framing; the limits on head size, header count and URL.
Must not know: sockets, routing or what the proxy does with a head.

The common head is taken in one C-level regex pass over its lowercased
copy (``_one_pass``): RFC 9112 grammar, each header pylb acts on at most once
and in its plainest form. Any other head goes through the general pass: two
regex passes (grammar, then the headers pylb acts on), with no obs-fold, no
bare CR/LF and no control bytes. Heads that pass does not take are handed to
h11: when h11 rejects them too, its reason goes into the 400;
when h11 would accept something pylb's policy forbids (obs-fold, control
bytes, HTTP/1.2...), pylb still answers 400. Framing headers that are valid
but not canonical (``Content-Length: 5, 5``, ``Transfer-Encoding: Chunked``)
are interpreted by h11. So the fast path never accepts what h11 rejects,
and a differential test holds the two to agreeing on what both accept.
"""

from __future__ import annotations

import re
import sys

import h11

from pylb.core.errors import (
    BadGateway,
    BadRequest,
    HeadTooLarge,
    ProxyError,
    UnsupportedCoding,
    UriTooLong,
    VersionNotSupported,
)

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
MAX_URL = 8 * 1024

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_VALUE = rb"[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?"
_FIELD = rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")?[ \t]*\r\n"
_FIELD_RE = re.compile(_FIELD)
# Equivalent to ``(?:_FIELD)*`` (a field value is any run of SP, HTAB, VCHAR
# and obs-text once its surrounding whitespace is trimmed) but three times
# faster, as it needs no backtracking.
# Possessive repetition (nothing to go back to: a line cannot match two ways) is about 20% faster,
# but before 3.11.5 it could leave the match inside a failed repetition (CPython gh-106052).
_REPEAT = b"*+" if sys.version_info >= (3, 11, 5) else b"*"
_FIELDS_RE = re.compile(rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)" + _REPEAT)
# The fields pylb acts on, found in one C-level pass; the others are left
# alone and only split out (``Head.fields``) when the head must be rewritten.
_SPECIAL_RE = re.compile(
    rb"\n(content-length|transfer-encoding|connection|host|expect|keep-alive|te|upgrade"
    rb"|proxy-[-a-z]*|x-forwarded-[-a-z]*):[ \t]*([^\r]*)\r",  # trailing SP/HTAB: stripped after
    re.IGNORECASE,
)
# The one pass, on ``raw.lower()`` (same length, same grammar; the bytes whose
# case matters are then sliced from ``raw``). A field line is either an
# ordinary one, or one of the few that pylb reads, each at most once (the
# ``(?(n)(?!)|...)`` refuses a second) with a plain value; any other form of a
# header pylb acts on (repeated, Upgrade, Expect, a list of codings...) makes
# the pass fail, and the head goes to the general pass.
_ACTED_ON = (  # the names of _SPECIAL_RE, lowercase, with common prefixes taken out (faster)
    rb"(?:c(?:ontent-length|onnection)|t(?:e|ransfer-encoding)|host|expect|keep-alive|upgrade"
    rb"|proxy-[-a-z]*|x-forwarded-[-a-z]*):"
)
_ORDINARY = rb"(?!" + _ACTED_ON + rb")" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n"
_REWRITE = rb"((?:keep-alive|te|proxy-[-a-z]*|x-forwarded-[-a-z]*):)[\t\x20-\x7e\x80-\xff]*\r\n"


def _once(name: bytes, value: bytes, group: int) -> bytes:
    return rb"(?(%d)(?!)|" % group + name + rb":[ \t]*(" + value + rb")[ \t]*\r\n)"


_ONE_PASS_REQUEST = re.compile(
    rb"(" + _TOKEN + rb") ([\x21-\x7e]+) http/1\.([01])\r\n(?:" + _ORDINARY
    + b"|" + _once(b"host", _VALUE, 4)
    + b"|" + _once(b"content-length", rb"[0-9]{1,18}", 5)
    + b"|" + _once(b"transfer-encoding", b"chunked", 6)
    + b"|" + _once(b"connection", _VALUE, 7)
    + b"|" + _REWRITE
    + rb")" + _REPEAT + rb"\r\n"
)  # fmt: skip
_ONE_PASS_RESPONSE = re.compile(
    rb"http/1\.([01]) ([1-9][0-9]{2})(?: [ \t\x21-\x7e\x80-\xff]*)?\r\n(?:" + _ORDINARY
    + b"|" + _once(b"content-length", rb"[0-9]{1,18}", 3)
    + b"|" + _once(b"transfer-encoding", b"chunked", 4)
    + b"|" + _once(b"connection", _VALUE, 5)
    + b"|" + _REWRITE
    + rb")" + _REPEAT + rb"\r\n"
)  # fmt: skip
# Below this many bytes a head cannot hold more than MAX_HEADERS lines
# (the shortest is ``a:\r\n``), so they need no counting.
_COUNT_FROM = 4 * MAX_HEADERS
_REQUEST_LINE_RE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])\r\n")
_OTHER_MAJOR_RE = re.compile(rb"[^ ]+ [^ ]+ HTTP/([02-9])\.[0-9]\r\n")
_EMPTY_LINE_RE = re.compile(rb"\n\r?\n")  # where a response head ends, whatever its line ends
_CONNECTION_LINE_RE = re.compile(rb"\nconnection:", re.IGNORECASE)
_STATUS_LINE_RE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [ \t\x21-\x7e\x80-\xff]*)?\r\n")

# Headers that pylb must remove or rewrite before forwarding (hop-by-hop,
# and forwarding headers that a client must not be able to spoof). Not
# Trailer: RFC 9110 6.6.2 makes it end-to-end (RFC 2616 listed it).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
SPOOFABLE = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-port", b"x-forwarded-host"})

NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = 0, 1, 2, 3
_KEEP_ALIVE = frozenset({b"keep-alive"})
# Connection header values (lowercased) seen by the one pass, and their tokens.
_CONNECTION_TOKENS: dict[bytes, frozenset[bytes]] = {b"keep-alive": _KEEP_ALIVE, b"close": frozenset({b"close"})}


class Head:
    """A parsed head. ``raw`` is the head exactly as received (CRLF CRLF
    included), or, for a response head that had to be normalized, the
    normalized head (CRLF line ends); ``fields`` are (name, value) pairs as
    sent, in order."""

    __slots__ = (
        "connection",
        "expect_continue",
        "fold_length",
        "forward",
        "framing",
        "host",
        "keep_alive",
        "length",
        "method",
        "minor",
        "needs_rewrite",
        "raw",
        "start",
        "status",
        "target",
        "upgrade",
    )

    def __init__(self) -> None:
        self.raw = b""
        self.method = b""
        self.target = b""
        self.minor = 1
        self.status = 0
        self.start = 0  # where the header fields begin in ``raw``
        self.framing = NO_BODY
        self.length = 0
        self.keep_alive = True
        self.host: bytes | None = None
        self.connection: frozenset[bytes] = frozenset()
        self.needs_rewrite = False
        self.expect_continue = False
        self.upgrade: bytes | None = None  # the Upgrade header, when Connection names it
        # Content-Length came as equal values repeated (two lines, or "5, 5"): send it as one line
        self.fold_length = False
        # A request head that needs no rewrite but for a lone "Connection: keep-alive" line: the
        # head without that line and without its final CRLF, ready to forward (None otherwise).
        self.forward: bytes | None = None

    @property
    def fields(self) -> list[tuple[bytes, bytes]]:
        """(name, value) pairs as sent, in order (values trimmed)."""
        return _FIELD_RE.findall(self.raw, self.start, len(self.raw) - 2)

    def path(self) -> bytes:
        """The path the request names, for routing: without the query, and
        taken from the URI in absolute form (``GET http://a.test/x``)."""
        target = self.target
        if target[:1] != b"/":
            if not target.lower().startswith((b"http://", b"https://")):
                return target
            target = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
        return target.partition(b"?")[0]

    def authority(self) -> bytes | None:
        """Whom the request is for: the URI's authority in absolute form
        (RFC 9112 3.2.2: it wins over the Host header), else the Host."""
        target = self.target
        if target[:1] != b"/" and target.lower().startswith((b"http://", b"https://")):
            return target.split(b"/", 3)[2]  # userinfo stays, and is refused by routing
        return self.host

    def get(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lowercase), in order."""
        return [v for n, v in self.fields if n.lower() == name]

    def __repr__(self) -> str:
        first = f"{self.status}" if self.status else f"{self.method.decode()} {self.target[:60]!r}"
        return f"<Head {first} HTTP/1.{self.minor} framing={self.framing} length={self.length}>"


def find_head_end(buf: bytes | bytearray, error: type[ProxyError] = HeadTooLarge) -> int:
    """Index just past the head's CRLF CRLF, or -1 when more bytes are needed.

    Raises ``error`` when a request head cannot end well: too large, or a bare
    LF that a strict parser would never see terminated. ``error`` is
    ``BadGateway`` for a response head: its lines may end in a bare LF
    (RFC 9112 2.2), so it ends at its first empty line, however its line
    ends are written."""
    if error is BadGateway:
        return _response_head_end(buf)
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        if end + 4 > MAX_HEAD:
            raise error(f"request head larger than {MAX_HEAD} bytes")
        return end + 4
    if len(buf) > MAX_HEAD:
        raise error(f"request head larger than {MAX_HEAD} bytes")
    if b"\n\n" in buf or b"\n\r\n" in buf:
        raise BadRequest("bare LF line ending in head")
    return -1


def _response_head_end(buf: bytes | bytearray) -> int:
    # The first empty line, LF LF or LF CR LF (CRLF CRLF is the latter): one C-level scan that
    # stops there, and never reads further than a head may be.
    match = _EMPTY_LINE_RE.search(buf, 0, MAX_HEAD + 1)
    if match is None or match.end() > MAX_HEAD:
        if match is None and len(buf) <= MAX_HEAD:
            return -1
        raise BadGateway(f"response head larger than {MAX_HEAD} bytes")
    return match.end()


def parse_request(raw: bytes) -> Head:
    """Parse a complete request head (as delimited by ``find_head_end``)."""
    return _one_pass_request(raw) or _general_request(raw)


def parse_response(raw: bytes, method: bytes) -> Head:
    """Parse a complete response head to a request with ``method``."""
    return _one_pass_response(raw, method) or _general_response(raw, method)


def _one_pass_request(raw: bytes) -> Head | None:
    """The common request head, or None for the general pass to decide."""
    match = _ONE_PASS_REQUEST.fullmatch(raw.lower())
    if match is None:
        return None
    _, _, minor, host, cl, te, connection, rewrite = match.groups()
    if (te is not None and (cl is not None or minor == b"0")) or (host is None and minor == b"1"):
        return None  # refused: the general pass says why
    start = match.end(3) + 2
    method, target, version = raw[: start - 2].split(b" ")
    if version[:5] != b"HTTP/" or len(target) > MAX_URL or target[:1] != b"/":  # the name is case-sensitive
        return None  # and another target form is checked by the general pass
    if len(raw) > _COUNT_FROM and raw.count(b"\n") > MAX_HEADERS + 2:
        return None
    head = Head()
    head.raw = raw
    head.method = method
    head.target = target
    head.start = start
    if host is not None:
        a, b = match.span(4)
        head.host = raw[a:b]
    if te is not None:
        head.framing = CHUNKED
    elif cl is not None:
        head.framing, head.length = LENGTH, int(cl)
    _one_pass_common(head, minor, connection, rewrite)
    if connection is not None and not head.needs_rewrite:
        _cut_connection(head, raw.rfind(b"\n", 0, match.start(7)) + 1)
    return head


def _cut_connection(head: Head, line: int) -> None:
    """A request head whose only header pylb acts on is one ``Connection:
    keep-alive`` (HTTP/1.1; most browsers send it): hop-by-hop, so it must
    not reach the backend, but the rest of the head can go on as it is. Cut
    that one line (starting at ``line``) out here, once per head, for
    ``request_head_out``."""
    raw = head.raw
    head.forward = raw[:line] + raw[raw.index(b"\n", line) + 1 : -2]


def _one_pass_response(raw: bytes, method: bytes) -> Head | None:
    """The common response head, or None for the general pass to decide."""
    match = _ONE_PASS_RESPONSE.fullmatch(raw.lower())
    if match is None or method == b"CONNECT" or raw[:5] != b"HTTP/":
        return None
    minor, status, cl, te, connection, rewrite = match.groups()
    if (te is not None and (cl is not None or minor == b"0")) or (
        len(raw) > _COUNT_FROM and raw.count(b"\n") > MAX_HEADERS + 2
    ):
        return None
    head = Head()
    head.raw = raw
    head.method = method
    head.status = code = int(status)
    head.start = raw.index(b"\n") + 1
    _one_pass_common(head, minor, connection, rewrite)
    if code < 200 or code == 204 or code == 304 or method == b"HEAD":
        pass  # NO_BODY, as Head() starts
    elif te is not None:
        head.framing = CHUNKED
    elif cl is not None:
        head.framing, head.length = LENGTH, int(cl)
    else:
        head.framing, head.keep_alive = UNTIL_CLOSE, False
    return head


def _one_pass_common(head: Head, minor: bytes, connection: bytes | None, rewrite: bytes | None) -> None:
    head.needs_rewrite = rewrite is not None
    if connection is not None:
        tokens = _CONNECTION_TOKENS.get(connection)
        if tokens is None:
            tokens = frozenset(t.strip() for t in connection.split(b","))
            if len(_CONNECTION_TOKENS) >= 64:
                _CONNECTION_TOKENS.clear()  # a scanner's values must not keep common ones out
            _CONNECTION_TOKENS[connection] = tokens
        head.connection = tokens
        head.needs_rewrite |= tokens != _KEEP_ALIVE
    if minor == b"1":
        head.keep_alive = b"close" not in head.connection
    else:
        head.minor = 0
        head.keep_alive = b"keep-alive" in head.connection
        head.needs_rewrite |= bool(head.connection)


def _general_request(raw: bytes) -> Head:
    match = _REQUEST_LINE_RE.match(raw)
    if match is None:
        if len(raw) > MAX_URL and raw.find(b" ", raw.find(b" ") + 1) > MAX_URL:
            raise UriTooLong(f"request target longer than {MAX_URL} bytes")
        other = _OTHER_MAJOR_RE.match(raw)
        if other is not None:
            raise VersionNotSupported(f"HTTP/{other.group(1).decode()} is not supported (HTTP/1.1 is)")
        raise BadRequest(_h11_verdict(raw, h11.SERVER, "illegal request line"))
    head = Head()
    head.raw = raw
    head.method, head.target, minor = match.groups()
    if len(head.target) > MAX_URL:
        raise UriTooLong(f"request target longer than {MAX_URL} bytes")
    _check_target(head.method, head.target)
    head.minor = minor[0] - 48
    if not _grammatical(raw, match.end()):
        raise BadRequest(_h11_verdict(raw, h11.SERVER, "invalid header line"))
    _parse_fields(head, raw, match.end(), BadRequest)
    _request_framing(head)
    if head.connection and not head.needs_rewrite:
        _cut_connection(head, _CONNECTION_LINE_RE.search(raw, head.start - 1).start() + 1)  # type: ignore[union-attr]
    return head


def _check_target(method: bytes, target: bytes) -> None:
    """RFC 9112 3.2: a path (origin form), an http(s) URI (absolute form), ``*``
    for OPTIONS only; CONNECT's authority form is the drivers' to refuse."""
    if target[:1] == b"/" or method == b"CONNECT":
        return
    if target == b"*":
        if method != b"OPTIONS":
            raise BadRequest("the request target * is for OPTIONS only")
        return
    if not target[:8].lower().startswith((b"http://", b"https://")):
        raise BadRequest("the request target must be a path, an http(s) URI, or * (OPTIONS)")


def _general_response(raw: bytes, method: bytes) -> Head:
    match = _STATUS_LINE_RE.match(raw)
    if match is None or not _grammatical(raw, match.end()):
        raw = _normalized_response(raw)
        match = _STATUS_LINE_RE.match(raw)
        if match is None:
            raise BadGateway("backend sent an invalid status line")
        if not _grammatical(raw, match.end()):
            raise BadGateway("backend sent an invalid header line")
    head = Head()
    head.raw = raw
    minor, status = match.groups()
    head.minor = minor[0] - 48
    head.status = int(status)
    head.method = method
    _parse_fields(head, raw, match.end(), BadGateway)
    _response_framing(head, method)
    return head


def _grammatical(raw: bytes, start: int) -> bool:
    """Whether the field lines from ``start`` on are RFC 9112's, CRLF-terminated."""
    block_end = len(raw) - 2
    return _FIELDS_RE.match(raw, start, block_end).end() == block_end  # type: ignore[union-attr]


def _normalized_response(raw: bytes) -> bytes:
    """A response head as RFC 9112 lets a recipient read it, written canonically:
    a bare LF ends a line (2.2), an obs-fold is one SP (5.2), HTTP/1.2 and later
    minors are HTTP/1.1 (RFC 9110 6.2). What stays ambiguous is refused: a bare
    CR, an empty line inside the head, a whitespace-led line before the first
    field; the general pass then holds the result to the strict grammar."""
    lines = raw.split(b"\n")
    if len(lines) < 3 or lines[-1] or lines[-2] not in (b"", b"\r"):
        raise BadGateway("backend sent an invalid response head")
    out: list[bytes] = []
    for line in lines[:-2]:
        line = line[:-1] if line[-1:] == b"\r" else line
        if not line:
            raise BadGateway("backend sent an empty line inside a response head")
        if b"\r" in line:
            raise BadGateway("backend sent a bare CR in a response head")
        if line[:1] in (b" ", b"\t"):
            if len(out) < 2:
                raise BadGateway("backend sent a whitespace-led line before the first header line")
            out[-1] = out[-1].rstrip(b" \t") + b" " + line.strip(b" \t")
        else:
            out.append(line)
    start = out[0]
    if start[:7] == b"HTTP/1." and start[7:8].isdigit() and start[7:8] > b"1" and start[8:9] == b" ":
        out[0] = b"HTTP/1.1" + start[8:]
    return b"\r\n".join(out) + b"\r\n\r\n"


def _parse_fields(head: Head, raw: bytes, start: int, error: type[ProxyError]) -> None:
    block_end = len(raw) - 2
    if raw.count(b"\n", start) > MAX_HEADERS + 1:
        if error is BadGateway:
            raise BadGateway(f"backend sent more than {MAX_HEADERS} header lines")
        raise HeadTooLarge(f"more than {MAX_HEADERS} header lines")
    head.start = start
    connection: frozenset[bytes] = frozenset()
    upgrade: bytes | None = None
    cl: list[bytes] = []
    te: list[bytes] = []
    for name, value in _SPECIAL_RE.findall(raw, start - 1, block_end + 1):
        # Trimmed here, not by the regex: a lazy match before [ \t]* took quadratic time on a
        # long run of spaces.
        value = value.rstrip(b" \t")
        lname = name.lower()
        if lname == b"content-length":
            cl.append(value)
        elif lname == b"transfer-encoding":
            te.append(value)
        elif lname == b"host":
            if head.host is not None:
                raise error("two Host headers")
            head.host = value
        elif lname == b"expect":
            head.expect_continue = value.lower() == b"100-continue"
        elif lname == b"upgrade":
            upgrade = value
            head.needs_rewrite = True
        elif lname == b"connection":
            tokens = frozenset(t.strip().lower() for t in value.split(b","))
            # "Connection: keep-alive" alone says what HTTP/1.1 means anyway: no rebuild, that
            # line is only cut out (``_cut_connection``); a second Connection line is rebuilt.
            head.needs_rewrite |= tokens != _KEEP_ALIVE or bool(connection)
            connection |= tokens
        else:
            head.needs_rewrite = True
    head.connection = connection
    if upgrade is not None and b"upgrade" in connection:
        head.upgrade = upgrade
    if head.minor == 1:
        head.keep_alive = b"close" not in connection
    else:
        head.keep_alive = b"keep-alive" in connection
        head.needs_rewrite |= bool(connection)
    _framing_headers(head, cl, te, error)


def _framing_headers(head: Head, cl: list[bytes], te: list[bytes], error: type[ProxyError]) -> None:
    if te:
        if cl:
            raise error("both Content-Length and Transfer-Encoding")
        if head.minor == 0:  # RFC 9112 6.1: HTTP/1.0 has no transfer coding; the framing is faulty
            raise error("Transfer-Encoding in an HTTP/1.0 message")
        if te != [b"chunked"]:
            _te_via_h11(te, error)
        head.framing = CHUNKED
    elif cl:
        if len(cl) == 1 and cl[0].isdigit() and cl[0].isascii() and len(cl[0]) <= 18:
            head.framing, head.length = LENGTH, int(cl[0])
        else:
            head.framing, head.length = LENGTH, _cl_via_h11(cl, error)
            # RFC 9110 8.6: equal values may be replaced by one before forwarding; two lines
            # or a list might be read differently by the next parser.
            head.fold_length = head.needs_rewrite = len(cl) > 1 or b"," in cl[0]
    else:
        head.framing = -1  # decided by the message kind


def _te_via_h11(te: list[bytes], error: type[ProxyError]) -> None:
    # h11 accepts exactly one coding, "chunked", in any case: the same rule
    # as RFC 9112 for a proxy that does not decode transfer codings.
    values = [v.strip().lower() for t in te for v in t.split(b",")]
    if values != [b"chunked"]:
        shown = b", ".join(te).decode("latin-1")
        if error is BadRequest and values[-1] == b"chunked" and all(values) and b"chunked" not in values[:-1]:
            raise UnsupportedCoding(f"unsupported transfer coding in {shown!r} (only chunked)")
        raise error(f"unsupported Transfer-Encoding {shown!r} (only chunked)")


def _cl_via_h11(cl: list[bytes], error: type[ProxyError]) -> int:
    values = {v.strip() for c in cl for v in c.split(b",")}
    if len(values) != 1:
        raise error("conflicting Content-Length values")
    (value,) = values
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise error(f"malformed Content-Length {value[:40].decode('latin-1')!r}")
    return int(value)


def _request_framing(head: Head) -> None:
    if head.framing == -1:
        head.framing = NO_BODY
    if head.minor == 1 and head.host is None:
        raise BadRequest("HTTP/1.1 request without a Host header")
    if head.target[:1] != b"/" and head.host is not None and head.target != b"*":
        authority = head.authority()
        if authority is not None and authority.lower() != head.host.lower():
            # RFC 9112 3.2.2 says the target wins; a backend reading Host would disagree.
            raise BadRequest("the Host header differs from the request target's authority")


def _response_framing(head: Head, method: bytes) -> None:
    status = head.status
    if status < 200 or status in (204, 304) or method == b"HEAD":
        head.framing, head.length = NO_BODY, 0
    elif head.framing == -1:
        head.framing = UNTIL_CLOSE
        head.keep_alive = False
    if 200 <= status < 300 and method == b"CONNECT":
        raise BadGateway("CONNECT is not proxied")


def _h11_verdict(raw: bytes, role: type[h11.SERVER], fallback: str) -> str:
    """Why h11 rejects this head, or why pylb does when h11 would take it."""
    conn = h11.Connection(role)
    conn.receive_data(raw)
    try:
        conn.next_event()
    except h11.RemoteProtocolError as exc:
        return _readable(str(exc))
    if b"\n " in raw or b"\n\t" in raw:
        return "obsolete line folding (obs-fold) in header"
    if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", raw.replace(b"\r\n", b"")):
        return "control character in head"
    if re.match(rb"[^ ]+ [^ ]+ HTTP/", raw) and not raw.startswith(b"HTTP") and b"HTTP/1." not in raw[: MAX_URL + 64]:
        return "unsupported HTTP version"
    return fallback


_H11_BYTES = " bytearray(b"  # how h11 quotes the line it refuses: bytearray(b'...')
_SHOWN = 100  # characters (or escapes) of a refused line a verdict quotes
_REPR_UNIT_RE = re.compile(r"\\x[0-9a-f]{2}|\\.|.", re.DOTALL)  # one character of a repr, escapes whole
_FIELD_NAME_RE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:")  # a token, then the colon


def _readable(message: str) -> str:
    """h11's verdict for a log line: ``illegal request line: 'GET /\\x01
    HTTP/1.1'`` rather than ``bytearray(b'...')``, cut to ``_SHOWN``
    characters; of a bad header line only the field's name, and only when
    a colon follows it (anything else may be a credential: an
    ``Authorization`` or ``Cookie`` line gone wrong)."""
    at = message.find(_H11_BYTES)
    rest = message[at + len(_H11_BYTES) :]
    if at < 0 or len(rest) < 3 or rest[0] not in "'\"" or not rest.endswith(rest[0] + ")"):
        return message
    what, quote, text = message[:at].rstrip(":"), rest[0], rest[1:-2]  # text: as repr() escaped it
    if what == "illegal header line":
        name = _FIELD_NAME_RE.match(text)
        if name is None:
            return "illegal header line (no field name before a colon; the line is not logged)"
        return f"illegal header line (field '{name.group(1)[:40]}'; its value is not logged)"
    units = _REPR_UNIT_RE.findall(text)
    shown = "".join(units[:_SHOWN])
    return f"{what}: {quote}{shown}{quote}{'...' if len(units) > _SHOWN else ''}"


_AGENTS_RE = re.compile(rb"\r\n(user-agent|referer)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*(?=\r\n)", re.IGNORECASE)


def agents(raw: bytes) -> tuple[str, str]:
    """The User-Agent and Referer of a request head (empty when absent), for
    access logs that show them; never any other field."""
    agent = referer = ""
    for name, value in _AGENTS_RE.findall(raw):
        if name.lower() == b"user-agent":
            agent = agent or value.decode("latin-1")
        else:
            referer = referer or value.decode("latin-1")
    return agent, referer
