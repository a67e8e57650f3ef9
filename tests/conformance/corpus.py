"""The hand-written corpus: raw client requests and raw backend answers, RFC 9110/9112 for an
intermediary, each case in the class the table groups it under.

Owns: the cases (``CASES``), each one exchange on a new client connection. Request cases send
odd client bytes and get the plain scripted answer (``OK``); response cases send a plain GET and
script odd backend bytes. Every scripted answer carries ``X-Script: 1`` (how a relayed answer is
told from a proxy's own); the backend closes its connection after answering.
Must not know: the proxies, how the outcomes are compared.
Invariants: ids are unique and stable (the table and the deviations are keyed by them); no case
makes a proxy wait for bytes that never come (each such wait costs the suite ``ANSWER_WAIT``).
"""

from __future__ import annotations

from tests.conformance.backend import Reply
from tests.conformance.runner import OK, Case

HOST = b"Host: a.test\r\n"


def get(*lines: bytes, start: bytes = b"GET / HTTP/1.1", host: bool = True) -> bytes:
    """A request head: ``start``, Host (unless not ``host``), ``lines`` (each without its CRLF)."""
    return start + b"\r\n" + (HOST if host else b"") + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def post(body: bytes, *lines: bytes) -> bytes:
    return get(*lines, start=b"POST /p HTTP/1.1") + body


def resp(start: bytes, *lines: bytes, body: bytes = b"") -> bytes:
    """A scripted answer's bytes: ``start``, the marker field, ``lines`` (each without its CRLF),
    the empty line, ``body``."""
    return start + b"\r\nX-Script: 1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def ok_with(*lines: bytes) -> bytes:
    """``200 OK`` with ``lines``, Content-Length: 2 and ``ok``."""
    return resp(b"HTTP/1.1 200 OK", *lines, LEN2, body=b"ok")


def answer(id: str, area: str, rfc: str, scripted: bytes, note: str = "") -> Case:
    """A response case: a plain GET, answered with the bytes ``scripted``."""
    return Case(id, area, rfc, get(), Reply(scripted), note=note)


LEN2 = b"Content-Length: 2"
CHUNKED = b"Transfer-Encoding: chunked"
HELLO = b"5\r\nhello\r\n0\r\n\r\n"  # "hello", chunked

_REQUEST_LINE = [
    Case("rl-origin", "request line", "9112 3.2.1", get(start=b"GET /a/b?c=d HTTP/1.1")),
    Case("rl-absolute", "request line", "9112 3.2.2", get(start=b"GET http://a.test/x HTTP/1.1")),
    Case("rl-absolute-other-host", "request line", "9112 3.2.2",
         get(start=b"GET http://b.test/x HTTP/1.1"), note="Host and target disagree"),
    Case("rl-absolute-no-host", "request line", "9112 3.2.2", get(start=b"GET http://a.test/x HTTP/1.1", host=False)),
    Case("rl-absolute-https", "request line", "9112 3.2.2", get(start=b"GET https://a.test/x HTTP/1.1")),
    Case("rl-absolute-userinfo", "request line", "9110 4.2.4", get(start=b"GET http://u:p@a.test/x HTTP/1.1")),
    Case("rl-absolute-other-scheme", "request line", "9112 3.2.2", get(start=b"GET ftp://a.test/x HTTP/1.1")),
    Case("rl-authority-form-get", "request line", "9112 3.2.3", get(start=b"GET a.test:80 HTTP/1.1")),
    Case("rl-connect", "request line", "9110 9.3.6", get(start=b"CONNECT a.test:443 HTTP/1.1")),
    Case("rl-asterisk-options", "request line", "9112 3.2.4", get(start=b"OPTIONS * HTTP/1.1")),
    Case("rl-asterisk-get", "request line", "9112 3.2.4", get(start=b"GET * HTTP/1.1")),
    Case("rl-no-slash", "request line", "9112 3.2", get(start=b"GET a HTTP/1.1")),
    Case("rl-unknown-method", "request line", "9110 9.1", get(start=b"PURGE / HTTP/1.1")),
    Case("rl-lowercase-method", "request line", "9110 9.1", get(start=b"get / HTTP/1.1"),
         note="methods are case-sensitive: a different method"),
    Case("rl-method-bad-char", "request line", "9110 9.1", get(start=b"GE(T / HTTP/1.1")),
    Case("rl-method-obs-text", "request line", "9110 9.1", get(start=b"G\xc9T / HTTP/1.1")),
    Case("rl-double-space", "request line", "9112 3", get(start=b"GET  / HTTP/1.1")),
    Case("rl-tab-separator", "request line", "9112 3", get(start=b"GET\t/ HTTP/1.1")),
    Case("rl-trailing-space", "request line", "9112 3", get(start=b"GET / HTTP/1.1 ")),
    Case("rl-space-in-target", "request line", "9112 3.2", get(start=b"GET /a b HTTP/1.1")),
    Case("rl-target-obs-text", "request line", "9112 3.2", get(start=b"GET /caf\xc3\xa9 HTTP/1.1")),
    Case("rl-target-ctl", "request line", "9112 3.2", get(start=b"GET /a\x01b HTTP/1.1")),
    Case("rl-target-del", "request line", "9112 3.2", get(start=b"GET /a\x7fb HTTP/1.1")),
    Case("rl-target-fragment", "request line", "9110 4.1", get(start=b"GET /a#frag HTTP/1.1")),
    Case("rl-target-bad-percent", "request line", "9110 4.1", get(start=b"GET /%zz HTTP/1.1")),
    Case("rl-target-dot-segments", "request line", "9110 4.2.3", get(start=b"GET /a/../b HTTP/1.1")),
    Case("rl-target-backslash", "request line", "9112 3.2", get(start=b"GET /a\\b HTTP/1.1")),
    Case("rl-target-quote", "request line", "9112 3.2", get(start=b'GET /a"b<c> HTTP/1.1')),
    Case("rl-http10", "request line", "9112 2.3", get(start=b"GET / HTTP/1.0", host=False)),
    Case("rl-http10-host", "request line", "9112 2.3", get(start=b"GET / HTTP/1.0")),
    Case("rl-http12", "request line", "9110 6.2", get(start=b"GET / HTTP/1.2")),
    Case("rl-http20", "request line", "9110 6.2", get(start=b"GET / HTTP/2.0")),
    Case("rl-http3", "request line", "9110 6.2", get(start=b"GET / HTTP/3")),
    Case("rl-lowercase-version", "request line", "9112 2.3", get(start=b"GET / http/1.1")),
    Case("rl-version-missing", "request line", "9112 3", get(start=b"GET /")),
    Case("rl-version-junk", "request line", "9112 2.3", get(start=b"GET / HTTP/1.1x")),
    Case("rl-leading-empty-line", "request line", "9112 2.2", b"\r\n" + get()),
    Case("rl-leading-spaces", "request line", "9112 2.2", b" " + get()),
    Case("rl-whitespace-line-after", "request line", "9112 2.2",
         b"GET / HTTP/1.1\r\n X: y\r\n" + HOST + b"\r\n"),
]

_HOST = [
    Case("host-missing", "host", "9112 3.2", get(host=False)),
    Case("host-empty", "host", "9112 3.2", get(b"Host:", host=False)),
    Case("host-port", "host", "9110 7.2", get(b"Host: a.test:8080", host=False)),
    Case("host-ipv6", "host", "9110 7.2", get(b"Host: [::1]:8080", host=False)),
    Case("host-uppercase", "host", "9110 4.2.3", get(b"Host: A.TEST", host=False)),
    Case("host-twice-same", "host", "9112 3.2", get(b"Host: a.test")),
    Case("host-twice-different", "host", "9112 3.2", get(b"Host: b.test")),
    Case("host-list", "host", "9112 3.2", get(b"Host: a.test, b.test", host=False)),
    Case("host-userinfo", "host", "9110 7.2", get(b"Host: u@a.test", host=False)),
    Case("host-space", "host", "9110 7.2", get(b"Host: a test", host=False)),
    Case("host-slash", "host", "9110 7.2", get(b"Host: a.test/x", host=False)),
    Case("host-bad-port", "host", "9110 7.2", get(b"Host: a.test:x", host=False)),
    Case("host-obs-text", "host", "9110 7.2", get(b"Host: caf\xc3\xa9.test", host=False)),
    Case("host-trailing-dot", "host", "9110 7.2", get(b"Host: a.test.", host=False)),
]

_FIELD_NAMES = [
    Case("fn-space-before-colon", "field names", "9112 5.1", get(b"X-A : 1")),
    Case("fn-tab-before-colon", "field names", "9112 5.1", get(b"X-A\t: 1")),
    Case("fn-space-before-colon-cl", "field names", "9112 5.1", post(b"hello", b"Content-Length : 5")),
    Case("fn-underscore", "field names", "9110 5.1", get(b"X_A: 1")),
    Case("fn-dot", "field names", "9110 5.1", get(b"X.A: 1")),
    Case("fn-paren", "field names", "9110 5.1", get(b"X(A): 1")),
    Case("fn-at", "field names", "9110 5.1", get(b"X@A: 1")),
    Case("fn-slash", "field names", "9110 5.1", get(b"X/A: 1")),
    Case("fn-obs-text", "field names", "9110 5.1", get(b"X\xe9A: 1")),
    Case("fn-ctl", "field names", "9110 5.1", get(b"X\x01A: 1")),
    Case("fn-empty", "field names", "9110 5.1", get(b": 1")),
    Case("fn-no-colon", "field names", "9112 5", get(b"XA")),
    Case("fn-leading-space-first", "field names", "9112 2.2", b"GET / HTTP/1.1\r\n Host: a.test\r\n\r\n"),
]

_FIELD_VALUES = [
    Case("fv-plain", "field values", "9110 5.5", get(b"X-A: one two")),
    Case("fv-empty", "field values", "9110 5.5", get(b"X-A:")),
    Case("fv-no-space", "field values", "9110 5.5", get(b"X-A:1")),
    Case("fv-surrounding-whitespace", "field values", "9110 5.5", get(b"X-A: \t 1 \t ")),
    Case("fv-obs-text", "field values", "9110 5.5", get(b"X-A: caf\xc3\xa9")),
    Case("fv-nul", "field values", "9110 5.5", get(b"X-A: a\x00b")),
    Case("fv-bare-cr", "field values", "9112 2.2", get(b"X-A: a\rb")),
    Case("fv-ctl", "field values", "9110 5.5", get(b"X-A: a\x01b")),
    Case("fv-del", "field values", "9110 5.5", get(b"X-A: a\x7fb")),
    Case("fv-vtab", "field values", "9110 5.5", get(b"X-A: a\x0bb")),
    Case("fv-obs-fold", "field values", "9112 5.2", get(b"X-A: a", b" b")),
    Case("fv-obs-fold-tab", "field values", "9112 5.2", get(b"X-A: a", b"\tb")),
    Case("fv-repeated", "field values", "9110 5.3", get(b"X-A: 1", b"X-A: 2")),
    Case("fv-long", "field values", "9110 5.5", get(b"X-A: " + b"v" * 7000)),
]

_LINE_ENDINGS = [
    Case("le-bare-lf", "line endings", "9112 2.2", b"GET / HTTP/1.1\nHost: a.test\n\n"),
    Case("le-bare-lf-one-field", "line endings", "9112 2.2", b"GET / HTTP/1.1\r\nHost: a.test\nX-A: 1\r\n\r\n"),
    Case("le-bare-lf-end", "line endings", "9112 2.2", b"GET / HTTP/1.1\r\nHost: a.test\r\n\n"),
    Case("le-bare-cr", "line endings", "9112 2.2", b"GET / HTTP/1.1\rHost: a.test\r\r\n\r\n"),
    Case("le-cr-cr-lf", "line endings", "9112 2.2", b"GET / HTTP/1.1\r\r\nHost: a.test\r\n\r\n"),
    Case("le-bare-lf-request-line", "line endings", "9112 2.2", b"GET / HTTP/1.1\nHost: a.test\r\n\r\n"),
]

_CONTENT_LENGTH = [
    Case("cl-valid", "content-length", "9112 6.2", post(b"hello", b"Content-Length: 5")),
    Case("cl-zero", "content-length", "9112 6.2", post(b"", b"Content-Length: 0")),
    Case("cl-get-body", "content-length", "9110 9.3.1", get(b"Content-Length: 5") + b"hello"),
    Case("cl-twice-same", "content-length", "9110 8.6", post(b"hello", b"Content-Length: 5", b"Content-Length: 5")),
    Case("cl-twice-different", "content-length", "9112 6.3",
         post(b"hello", b"Content-Length: 5", b"Content-Length: 3")),
    Case("cl-list-same", "content-length", "9110 8.6", post(b"hello", b"Content-Length: 5, 5")),
    Case("cl-list-different", "content-length", "9112 6.3", post(b"hello", b"Content-Length: 5, 3")),
    Case("cl-plus", "content-length", "9110 8.6", post(b"hello", b"Content-Length: +5")),
    Case("cl-negative", "content-length", "9110 8.6", post(b"hello", b"Content-Length: -5")),
    Case("cl-leading-zeros", "content-length", "9110 8.6", post(b"hello", b"Content-Length: 005")),
    Case("cl-hex", "content-length", "9110 8.6", post(b"hello", b"Content-Length: 0x5")),
    Case("cl-empty", "content-length", "9110 8.6", post(b"", b"Content-Length:")),
    Case("cl-space-inside", "content-length", "9110 8.6", post(b"hello", b"Content-Length: 5 5")),
    Case("cl-huge", "content-length", "9110 8.6", post(b"hello", b"Content-Length: 99999999999999999999")),
    Case("cl-non-ascii-digit", "content-length", "9110 8.6", post(b"hello", b"Content-Length: \xd9\xa5")),
    Case("cl-obs-fold", "content-length", "9112 5.2", post(b"hello", b"Content-Length:", b" 5")),
    Case("cl-short-body-pipelined", "content-length", "9112 6.2",
         post(b"hel", b"Content-Length: 3") + b"lo" + get(), answers=2,
         note="the body is 3 bytes; the rest is a second (odd) request"),
]

_TRANSFER_ENCODING = [
    Case("te-chunked", "transfer-encoding", "9112 7.1", post(b"5\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("te-chunked-case", "transfer-encoding", "9112 7", post(HELLO, b"Transfer-Encoding: Chunked")),
    Case("te-chunked-twice", "transfer-encoding", "9112 6.1",
         post(b"5\r\nhello\r\n0\r\n\r\n", CHUNKED, CHUNKED)),
    Case("te-chunked-chunked", "transfer-encoding", "9112 6.1",
         post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: chunked, chunked")),
    Case("te-gzip-chunked", "transfer-encoding", "9112 6.1",
         post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: gzip, chunked")),
    Case("te-chunked-gzip", "transfer-encoding", "9112 6.3", post(b"5\r\nhello\r\n0\r\n\r\n",
                                                                   b"Transfer-Encoding: chunked, gzip")),
    Case("te-gzip", "transfer-encoding", "9112 6.3", post(b"hello", b"Transfer-Encoding: gzip")),
    Case("te-identity", "transfer-encoding", "9112 6.3", post(b"hello", b"Transfer-Encoding: identity")),
    Case("te-empty", "transfer-encoding", "9112 6.1", post(b"", b"Transfer-Encoding:")),
    Case("te-and-cl", "transfer-encoding", "9112 6.3",
         post(b"5\r\nhello\r\n0\r\n\r\n", b"Content-Length: 15", CHUNKED), note="request smuggling's classic"),
    Case("te-and-cl-first", "transfer-encoding", "9112 6.3",
         post(b"5\r\nhello\r\n0\r\n\r\n", CHUNKED, b"Content-Length: 15")),
    Case("te-http10", "transfer-encoding", "9112 6.1",
         b"POST /p HTTP/1.0\r\n" + HOST + CHUNKED + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    Case("te-space-before-colon", "transfer-encoding", "9112 5.1",
         post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding : chunked")),
    Case("te-leading-comma", "transfer-encoding", "9110 5.6.1",
         post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: , chunked")),
    Case("te-vtab", "transfer-encoding", "9110 5.5",
         post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: \x0bchunked")),
    Case("te-xchunked", "transfer-encoding", "9112 6.3", post(HELLO, b"Transfer-Encoding: xchunked")),
    Case("te-quoted", "transfer-encoding", "9112 6.3", post(HELLO, b'Transfer-Encoding: "chunked"')),
    Case("te-obs-fold", "transfer-encoding", "9112 5.2",
         post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding:", b" chunked")),
    Case("te-get", "transfer-encoding", "9110 9.3.1", get(CHUNKED) + b"5\r\nhello\r\n0\r\n\r\n"),
]

_CHUNKED = [
    Case("ch-two-chunks", "chunked body", "9112 7.1", post(b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-extension", "chunked body", "9112 7.1.1", post(b"5;a=b\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-extension-quoted", "chunked body", "9112 7.1.1", post(b'5;a="b;c"\r\nhello\r\n0\r\n\r\n', CHUNKED)),
    Case("ch-extension-bws", "chunked body", "9112 7.1.1", post(b"5 ; a=b\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-extension-bad", "chunked body", "9112 7.1.1", post(b"5;\x01\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-size-uppercase-hex", "chunked body", "9112 7.1", post(b"A\r\nhellohello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-size-leading-zeros", "chunked body", "9112 7.1", post(b"0005\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-size-0x", "chunked body", "9112 7.1", post(b"0x5\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-size-plus", "chunked body", "9112 7.1", post(b"+5\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-size-trailing-space", "chunked body", "9112 7.1", post(b"5 \r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-size-overflow", "chunked body", "9112 7.1",
         post(b"10000000000000005\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-size-bad", "chunked body", "9112 7.1", post(b"5x\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-size-empty", "chunked body", "9112 7.1", post(b"\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-data-longer", "chunked body", "9112 7.1", post(b"3\r\nhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-no-crlf-after-data", "chunked body", "9112 7.1", post(b"5\r\nhello0\r\n\r\n", CHUNKED)),
    Case("ch-bare-lf", "chunked body", "9112 7.1", post(b"5\nhello\n0\n\n", CHUNKED)),
    Case("ch-bare-lf-after-data", "chunked body", "9112 7.1", post(b"5\r\nhello\n0\r\n\r\n", CHUNKED)),
    Case("ch-bare-cr-after-size", "chunked body", "9112 7.1", post(b"5\rhello\r\n0\r\n\r\n", CHUNKED)),
    Case("ch-trailers", "chunked body", "9112 7.1.2", post(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", CHUNKED)),
    Case("ch-trailer-cl", "chunked body", "9110 6.5.1",
         post(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n", CHUNKED)),
    Case("ch-trailer-bad", "chunked body", "9112 7.1.2", post(b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", CHUNKED)),
    Case("ch-trailer-obs-fold", "chunked body", "9112 7.1.2",
         post(b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", CHUNKED)),
    Case("ch-last-chunk-extension", "chunked body", "9112 7.1.1", post(b"5\r\nhello\r\n0;a=b\r\n\r\n", CHUNKED)),
    Case("ch-smuggled-request", "chunked body", "9112 7.1",
         post(b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n", CHUNKED), answers=2,
         note="a second request after the last chunk: pipelined"),
]

_HOP_BY_HOP = [
    Case("hop-connection-names-field", "hop-by-hop", "9110 7.6.1", get(b"Connection: x-a", b"X-A: 1", b"X-B: 2")),
    Case("hop-keep-alive", "hop-by-hop", "9110 7.6.1", get(b"Keep-Alive: timeout=5")),
    Case("hop-te-trailers", "hop-by-hop", "9110 10.1.4", get(b"TE: trailers")),
    Case("hop-te-gzip", "hop-by-hop", "9110 10.1.4", get(b"TE: gzip")),
    Case("hop-proxy-connection", "hop-by-hop", "9110 7.6.1", get(b"Proxy-Connection: keep-alive")),
    Case("hop-proxy-authorization", "hop-by-hop", "9110 11.7.2", get(b"Proxy-Authorization: Basic eA==")),
    Case("hop-trailer", "hop-by-hop", "9110 6.6.2", get(b"Trailer: X-T")),
    Case("hop-upgrade-alone", "hop-by-hop", "9110 7.8", get(b"Upgrade: websocket")),
    Case("hop-connection-close", "hop-by-hop", "9112 9.6", get(b"Connection: close")),
    Case("hop-connection-names-host", "hop-by-hop", "9110 7.6.1", get(b"Connection: host")),
    Case("hop-connection-names-cl", "hop-by-hop", "9110 7.6.1", post(b"hello", b"Connection: content-length",
                                                                      b"Content-Length: 5")),
    Case("hop-connection-names-te", "hop-by-hop", "9110 7.6.1", post(b"5\r\nhello\r\n0\r\n\r\n",
                                                                      b"Connection: transfer-encoding", CHUNKED)),
    Case("hop-connection-names-xff", "hop-by-hop", "9110 7.6.1", get(b"Connection: x-forwarded-for",
                                                                      b"X-Forwarded-For: 192.0.2.1")),
    Case("hop-connection-twice", "hop-by-hop", "9110 7.6.1", get(b"Connection: x-a", b"Connection: x-b", b"X-A: 1",
                                                                  b"X-B: 2")),
    Case("hop-xff-from-client", "hop-by-hop", "9110 7.6.3", get(b"X-Forwarded-For: 192.0.2.1")),
]

_UPGRADE_EXPECT = [
    Case("up-websocket", "upgrade and expect", "9110 7.8",
         get(b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             b"Sec-WebSocket-Version: 13"),
         Reply(resp(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade",
                    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))),
    Case("up-refused", "upgrade and expect", "9110 7.8", get(b"Connection: Upgrade", b"Upgrade: websocket")),
    Case("up-h2c", "upgrade and expect", "9113 3.2",
         get(b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAAQAAP__")),
    answer("up-unasked-101", "upgrade and expect", "9110 15.2.2",
           resp(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade")),
    Case("ex-100-continue", "upgrade and expect", "9110 10.1.1", post(b"hello", b"Content-Length: 5",
                                                                      b"Expect: 100-continue")),
    Case("ex-unknown", "upgrade and expect", "9110 10.1.1", post(b"hello", b"Content-Length: 5", b"Expect: teapot")),
]

_LIMITS = [
    Case("lim-target-8k", "limits", "9112 3", get(start=b"GET /" + b"a" * 7900 + b" HTTP/1.1")),
    Case("lim-target-9k", "limits", "9112 3", get(start=b"GET /" + b"a" * 9000 + b" HTTP/1.1")),
    Case("lim-head-15k", "limits", "9110 5.4", get(*(b"X-%d: %s" % (i, b"v" * 1000) for i in range(15)))),
    Case("lim-head-17k", "limits", "9110 5.4", get(*(b"X-%d: %s" % (i, b"v" * 1000) for i in range(17)))),
    Case("lim-fields-100", "limits", "9110 5.4", get(*(b"X-%d: 1" % i for i in range(99)))),
    Case("lim-fields-101", "limits", "9110 5.4", get(*(b"X-%d: 1" % i for i in range(101)))),
    Case("lim-pipelined", "limits", "9112 9.3.2", get() + get(start=b"GET /2 HTTP/1.1"), answers=2),
]

_RESPONSES = [
    answer("rs-plain", "response status line", "9112 4", OK.data),
    answer("rs-no-reason", "response status line", "9112 4", resp(b"HTTP/1.1 200", LEN2, body=b"ok")),
    answer("rs-empty-reason", "response status line", "9112 4", resp(b"HTTP/1.1 200 ", LEN2, body=b"ok")),
    answer("rs-reason-obs-text", "response status line", "9112 4", resp(b"HTTP/1.1 200 D\xe9j\xe0", LEN2, body=b"ok")),
    answer("rs-http10", "response status line", "9112 2.3", resp(b"HTTP/1.0 200 OK", LEN2, body=b"ok")),
    answer("rs-http12", "response status line", "9110 6.2", resp(b"HTTP/1.2 200 OK", LEN2, body=b"ok")),
    answer("rs-lowercase-version", "response status line", "9112 2.3", resp(b"http/1.1 200 OK", LEN2, body=b"ok")),
    answer("rs-status-2-digits", "response status line", "9110 15", resp(b"HTTP/1.1 20 OK", LEN2, body=b"ok")),
    answer("rs-status-4-digits", "response status line", "9110 15", resp(b"HTTP/1.1 2000 OK", LEN2, body=b"ok")),
    answer("rs-status-600", "response status line", "9110 15", resp(b"HTTP/1.1 600 X", LEN2, body=b"ok")),
    answer("rs-status-099", "response status line", "9110 15", resp(b"HTTP/1.1 099 X", LEN2, body=b"ok")),
    answer("rs-unknown-status", "response status line", "9110 15", resp(b"HTTP/1.1 299 X", LEN2, body=b"ok")),
    answer("rs-garbage", "response status line", "9112 4", resp(b"ICY 200 OK", body=b"ok")),
    answer("rs-http09", "response status line", "9112 4", b"hello"),
    answer("rs-nothing", "response status line", "9112 4", b""),
    answer("rs-leading-empty-line", "response status line", "9112 2.2", b"\r\n" + OK.data),
]

_RESPONSE_FIELDS = [
    answer("rf-space-before-colon", "response fields", "9112 5.1", ok_with(b"X-A : 1")),
    answer("rf-space-before-colon-cl", "response fields", "9112 5.1",
           resp(b"HTTP/1.1 200 OK", b"Content-Length : 2", body=b"ok")),
    answer("rf-obs-fold", "response fields", "9112 5.2", ok_with(b"X-A: a", b" b")),
    answer("rf-obs-fold-cl", "response fields", "9112 5.2", resp(b"HTTP/1.1 200 OK", b"Content-Length:", b" 2",
                                                                  body=b"ok")),
    answer("rf-obs-fold-first", "response fields", "9112 2.2", b"HTTP/1.1 200 OK\r\n X-A: 1\r\n" + OK.data[17:]),
    answer("rf-bare-cr", "response fields", "9112 2.2", ok_with(b"X-A: a\rb")),
    answer("rf-nul", "response fields", "9110 5.5", ok_with(b"X-A: a\x00b")),
    answer("rf-ctl", "response fields", "9110 5.5", ok_with(b"X-A: a\x01b")),
    answer("rf-obs-text", "response fields", "9110 5.5", ok_with(b"X-A: caf\xc3\xa9")),
    answer("rf-bad-name", "response fields", "9110 5.1", ok_with(b"X(A): 1")),
    answer("rf-underscore", "response fields", "9110 5.1", ok_with(b"X_A: 1")),
    answer("rf-no-colon", "response fields", "9112 5", ok_with(b"Bad Header")),
    answer("rf-empty-value", "response fields", "9110 5.5", ok_with(b"X-A:")),
    answer("rf-set-cookie-twice", "response fields", "9110 5.3", ok_with(b"Set-Cookie: a=1", b"Set-Cookie: b=2")),
    answer("rf-fields-101", "response fields", "9110 5.4", ok_with(*(b"X-%d: 1" % i for i in range(101)))),
    answer("rf-head-17k", "response fields", "9110 5.4", ok_with(*(b"X-%d: %s" % (i, b"v" * 1000) for i in range(17)))),
]

_RESPONSE_LINE_ENDINGS = [
    answer("rle-bare-lf", "response line endings", "9112 2.2",
           b"HTTP/1.1 200 OK\nX-Script: 1\nContent-Type: text/plain\nContent-Length: 2\n\nok"),
    answer("rle-bare-lf-mixed", "response line endings", "9112 2.2",
           b"HTTP/1.1 200 OK\r\nX-Script: 1\nContent-Length: 2\r\n\r\nok"),
    answer("rle-bare-lf-end", "response line endings", "9112 2.2",
           b"HTTP/1.1 200 OK\r\nX-Script: 1\r\nContent-Length: 2\r\n\nok"),
    answer("rle-busybox-cgi", "response line endings", "9112 2.2",
           b"HTTP/1.1 200 OK\r\nX-Script: 1\nContent-type: text/html\n\n<p>hi\r\n\r\nthere</p>\n",
           note="busybox httpd's CGI answer: its status line, then the script's LF lines, until close"),
    answer("rle-bare-lf-chunked", "response line endings", "9112 2.2",
           b"HTTP/1.1 200 OK\nX-Script: 1\nTransfer-Encoding: chunked\n\n2\r\nok\r\n0\r\n\r\n"),
    answer("rle-bare-cr", "response line endings", "9112 2.2",
           b"HTTP/1.1 200 OK\rX-Script: 1\r\nContent-Length: 2\r\n\r\nok"),
]

_OK = b"HTTP/1.1 200 OK"
_CHUNKED_OK = b"2\r\nok\r\n0\r\n\r\n"
_RESPONSE_FRAMING = [
    answer("rb-until-close", "response framing", "9112 6.3", resp(_OK, body=b"okay")),
    answer("rb-http10-until-close", "response framing", "9112 6.3", resp(b"HTTP/1.0 200 OK", body=b"okay")),
    answer("rb-chunked", "response framing", "9112 7.1", resp(_OK, CHUNKED, body=_CHUNKED_OK)),
    answer("rb-chunked-extension", "response framing", "9112 7.1.1",
           resp(_OK, CHUNKED, body=b"2;a=b\r\nok\r\n0\r\n\r\n")),
    Case("rb-chunked-trailers", "response framing", "9112 7.1.2", get(b"TE: trailers"),
         Reply(resp(_OK, CHUNKED, b"Trailer: X-T", body=b"2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"))),
    answer("rb-chunked-bare-lf", "response framing", "9112 7.1", resp(_OK, CHUNKED, body=b"2\nok\n0\n\n")),
    answer("rb-chunked-bad-size", "response framing", "9112 7.1", resp(_OK, CHUNKED, body=b"2x\r\nok\r\n0\r\n\r\n")),
    answer("rb-cl-and-te", "response framing", "9112 6.3", resp(_OK, b"Content-Length: 20", CHUNKED, body=_CHUNKED_OK)),
    answer("rb-cl-twice-same", "response framing", "9110 8.6", ok_with(b"Content-Length: 2")),
    answer("rb-cl-twice-different", "response framing", "9112 6.3",
           resp(_OK, b"Content-Length: 2", b"Content-Length: 3", body=b"ok!")),
    answer("rb-cl-list", "response framing", "9110 8.6", resp(_OK, b"Content-Length: 2, 2", body=b"ok")),
    answer("rb-cl-bad", "response framing", "9110 8.6", resp(_OK, b"Content-Length: 2x", body=b"ok")),
    answer("rb-cl-short", "response framing", "9112 8", resp(_OK, b"Content-Length: 10", body=b"ok")),
    answer("rb-cl-long", "response framing", "9112 6.3", resp(_OK, LEN2, body=b"okEXTRA")),
    answer("rb-te-gzip", "response framing", "9112 6.3", resp(_OK, b"Transfer-Encoding: gzip", body=b"okay")),
    answer("rb-te-gzip-chunked", "response framing", "9112 6.1",
           resp(_OK, b"Transfer-Encoding: gzip, chunked", body=_CHUNKED_OK)),
    answer("rb-te-http10", "response framing", "9112 6.1", resp(b"HTTP/1.0 200 OK", CHUNKED, body=_CHUNKED_OK)),
    Case("rb-to-http10-client", "response framing", "9112 6.1", get(start=b"GET / HTTP/1.0"),
         Reply(resp(_OK, CHUNKED, body=_CHUNKED_OK))),
]

_BODILESS = [
    Case("nb-head", "bodiless responses", "9110 9.3.2", get(start=b"HEAD / HTTP/1.1"),
         Reply(resp(_OK, b"Content-Length: 10"))),
    Case("nb-head-chunked", "bodiless responses", "9110 9.3.2", get(start=b"HEAD / HTTP/1.1"),
         Reply(resp(_OK, CHUNKED))),
    answer("nb-204", "bodiless responses", "9110 15.3.5", resp(b"HTTP/1.1 204 No Content")),
    answer("nb-204-cl", "bodiless responses", "9110 8.6", resp(b"HTTP/1.1 204 No Content", b"Content-Length: 0")),
    answer("nb-304", "bodiless responses", "9110 15.4.5", resp(b"HTTP/1.1 304 Not Modified", b"Content-Length: 10")),
    answer("nb-304-te", "bodiless responses", "9110 15.4.5", resp(b"HTTP/1.1 304 Not Modified", CHUNKED)),
]

_INTERIM = [
    answer("1xx-100", "1xx", "9110 15.2.1", resp(b"HTTP/1.1 100 Continue") + OK.data),
    answer("1xx-103", "1xx", "8297", resp(b"HTTP/1.1 103 Early Hints", b"Link: </s.css>; rel=preload") + OK.data),
    answer("1xx-102", "1xx", "2518", resp(b"HTTP/1.1 102 Processing") + OK.data),
    answer("1xx-two", "1xx", "9110 15.2", resp(b"HTTP/1.1 100 Continue") + resp(b"HTTP/1.1 103 Early Hints") + OK.data),
    Case("1xx-to-http10", "1xx", "9110 15.2", get(start=b"GET / HTTP/1.0"),
         Reply(resp(b"HTTP/1.1 103 Early Hints") + OK.data)),
    answer("1xx-with-cl", "1xx", "9110 8.6", resp(b"HTTP/1.1 100 Continue", b"Content-Length: 3") + OK.data),
]

_RESPONSE_HOP_BY_HOP = [
    answer("rh-connection-names-field", "response hop-by-hop", "9110 7.6.1",
           ok_with(b"Connection: x-b", b"X-B: 1", b"X-C: 2")),
    answer("rh-keep-alive", "response hop-by-hop", "9110 7.6.1", ok_with(b"Keep-Alive: timeout=5")),
    answer("rh-connection-close", "response hop-by-hop", "9112 9.6", ok_with(b"Connection: close")),
    answer("rh-proxy-authenticate", "response hop-by-hop", "9110 11.7.1",
           resp(b"HTTP/1.1 407 Proxy Authentication Required", b"Proxy-Authenticate: Basic", LEN2, body=b"no")),
    answer("rh-upgrade-on-200", "response hop-by-hop", "9110 7.8", ok_with(b"Upgrade: h2c")),
    answer("rh-trailer-field", "response hop-by-hop", "9110 6.6.2", ok_with(b"Trailer: X-T")),
]

CASES: list[Case] = [
    *_REQUEST_LINE, *_HOST, *_FIELD_NAMES, *_FIELD_VALUES, *_LINE_ENDINGS, *_CONTENT_LENGTH, *_TRANSFER_ENCODING,
    *_CHUNKED, *_HOP_BY_HOP, *_UPGRADE_EXPECT, *_LIMITS, *_RESPONSES, *_RESPONSE_FIELDS, *_RESPONSE_LINE_ENDINGS,
    *_RESPONSE_FRAMING, *_BODILESS, *_INTERIM, *_RESPONSE_HOP_BY_HOP,
]  # fmt: skip
BY_ID = {case.id: case for case in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"
