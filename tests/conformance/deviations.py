"""Where pylb deliberately differs from both HAProxy and nginx: the reasons, and pylb's pinned verdicts.

Owns: ``DEVIATIONS``, each a reason (with its RFC section) and the cases it explains, with the
verdict pylb must give on each (on both drivers); and, for the request-side ones, a predicate
saying whether a generated request falls under the reason. The suite fails when pylb differs
from both proxies on a case that is not listed here, when a listed case gets another verdict
from pylb, and when a listed case no longer differs (the table must stay true).
The rule they follow: toward clients, refuse what two parsers could read differently, stricter
than HAProxy where RFC 9110/9112 lets a recipient refuse; toward backends, accept what the RFCs
let a recipient accept; toward clients, send only canonical messages.
Must not know: how cases are run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tests.conformance.wire import head_end, split_fields


@dataclass(frozen=True)
class Deviation:
    key: str
    title: str  # a few words, for the table's "why" column
    rfc: str
    why: str
    cases: dict[str, str]  # case id -> pylb's verdict
    applies: Callable[[bytes], bool] | None = None  # for generated requests: does the reason cover it?


def _head(request: bytes) -> bytes:
    end = head_end(request)
    return request if end < 0 else request[:end]


def _fields(request: bytes) -> list[tuple[bytes, bytes | None]]:
    return split_fields(_head(request))[1]


def _values(request: bytes, name: bytes) -> list[bytes]:
    return [v for n, v in _fields(request) if v is not None and n.strip().lower() == name]


def _bare_lf(request: bytes) -> bool:
    return b"\n" in request.replace(b"\r\n", b"")


def _request_line_spacing(request: bytes) -> bool:
    line = _head(request).split(b"\n", 1)[0].rstrip(b"\r")
    return b"  " in line or b"\t" in line or line != line.strip()


_VERSION_RE = re.compile(rb" HTTP/1\.[2-9]\r?\n")
_HOST_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[-A-Za-z0-9._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_CTL_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _minor_version(request: bytes) -> bool:
    return _VERSION_RE.search(_head(request).split(b"\n", 1)[0] + b"\n") is not None


def _other_scheme(request: bytes) -> bool:
    parts = _head(request).split(b" ", 2)
    return len(parts) > 1 and b"://" in parts[1] and not parts[1].lower().startswith((b"http://", b"https://"))


def _bad_host(request: bytes) -> bool:
    return any(_HOST_RE.fullmatch(v) is None for v in _values(request, b"host"))


def _ctl_in_value(request: bytes) -> bool:
    return any(v is not None and _CTL_RE.search(v) for _, v in _fields(request))


def _te_list(request: bytes) -> bool:
    return any(not all(c.strip() for c in v.split(b",")) for v in _values(request, b"transfer-encoding"))


def _chunk_grammar(request: bytes) -> bool:
    body = request[head_end(request) :] if head_end(request) >= 0 else b""
    return bool(_values(request, b"transfer-encoding")) and re.search(rb"[^\r\n]*[ \t;\x00-\x08]", body) is not None


def _names_fields(request: bytes) -> bool:
    tokens = {t.strip().lower() for v in _values(request, b"connection") for t in v.split(b",")}
    names = {n.strip().lower() for n, _ in _fields(request)}
    return bool(tokens & names - {b"host", b"content-length", b"transfer-encoding"})


def _proxy_fields(request: bytes) -> bool:
    names = {n.strip().lower() for n, _ in _fields(request)}
    return bool(names & {b"proxy-connection", b"proxy-authorization"})


def _upgrade(request: bytes) -> bool:
    return bool(_values(request, b"upgrade"))


def _large(request: bytes) -> bool:
    return len(_head(request)) > 16 * 1024 or len(_fields(request)) > 100


DEVIATIONS = [
    Deviation(
        "bare-lf", "bare LF refused", "9112 2.2, 7.1",
        "A bare LF as a line end in a request: RFC 9112 2.2 lets a recipient accept it in the head (MAY), "
        "and 7.1 gives chunk lines no such leniency. pylb refuses it from clients (HAProxy and nginx take it): "
        "a line end that one parser sees and another does not is how requests are smuggled.",
        {"le-bare-lf": "own 400", "le-bare-lf-one-field": "own 400", "le-bare-lf-end": "own 400",
         "le-bare-lf-request-line": "own 400", "ch-bare-lf": "own 400", "ch-bare-lf-after-data": "own 400"},
        _bare_lf,
    ),
    Deviation(
        "request-line", "one SP between parts", "9112 3",
        "The request line is method, target and version separated by single spaces. RFC 9112 3 lets a "
        "recipient split on any whitespace, and warns that the leniency invites smuggling when parsers differ.",
        {"rl-double-space": "own 400"},
        _request_line_spacing,
    ),
    Deviation(
        "minor-version", "HTTP/1.2+ refused", "9110 6.2",
        "RFC 9110 6.2 says a recipient SHOULD read HTTP/1.2 and later minors as HTTP/1.1. No client sends "
        "them; pylb forwards request lines as they come and refuses rather than rewrite one.",
        {"rl-http12": "own 400"},
        _minor_version,
    ),
    Deviation(
        "target-scheme", "http(s) URIs only", "9110 7.4",
        "An absolute-form target of another scheme (ftp://...): pylb routes by the target's authority for "
        "http and https only, so a backend reading the target could disagree with pylb's routing; a server "
        "may refuse what it cannot serve (RFC 9110 7.4).",
        {"rl-absolute-other-scheme": "own 400"},
        _other_scheme,
    ),
    Deviation(
        "host-grammar", "invalid Host refused", "9110 7.2",
        "A Host value that is not host[:port] (userinfo, a port that is not digits, raw non-ASCII): "
        "RFC 9110 7.2 says a server MUST answer 400; HAProxy and nginx forward it.",
        {"host-userinfo": "own 400", "host-bad-port": "own 400", "host-obs-text": "own 400"},
        _bad_host,
    ),
    Deviation(
        "request-ctl", "control bytes refused", "9110 5.5",
        "Control characters in a request field value are invalid (RFC 9110 5.5: a recipient MAY keep them "
        "in a safe context); pylb refuses them from clients, HAProxy and nginx pass them on.",
        {"fv-ctl": "own 400", "fv-del": "own 400", "fv-vtab": "own 400"},
        _ctl_in_value,
    ),
    Deviation(
        "te-list", "empty coding refused", "9110 5.6.1",
        "Transfer-Encoding: , chunked (an empty list element, which RFC 9110 5.6.1 says to ignore): refused, "
        "as HAProxy (422) and nginx (501) do, with 400: no client sends it.",
        {"te-leading-comma": "own 400"},
        _te_list,
    ),
    Deviation(
        "chunk-grammar", "strict chunk lines", "9112 7.1.1, 7.1.2",
        "Chunk lines and trailers held to RFC 9112's grammar: whitespace after a chunk size only before a "
        "';' extension, an extension a token or a quoted string, no folded trailer field. HAProxy and nginx "
        "skip whatever follows the size.",
        {"ch-extension-bad": "own 400", "ch-size-trailing-space": "own 400", "ch-trailer-obs-fold": "own 400"},
        _chunk_grammar,
    ),
    Deviation(
        "connection-named", "Connection-named fields removed", "9110 7.6.1",
        "A proxy MUST remove the fields that Connection names before forwarding (RFC 9110 7.6.1), in both "
        "directions. HAProxy forwards them all; nginx removes Connection and forwards what it names.",
        {"hop-connection-names-field": "fwd -connection -x-a; 200",
         "hop-connection-twice": "fwd -connection -x-a -x-b; 200",
         "rh-connection-names-field": "fwd; 200 -connection -x-b"},
        _names_fields,
    ),
    Deviation(
        "proxy-fields", "Proxy-* fields removed", "9110 7.6.1, 11.7",
        "Proxy-Connection is among the fields RFC 9110 7.6.1 says to remove; Proxy-Authorization carries "
        "credentials for the proxy (11.7.2), which pylb is: they never reach a backend, and a backend's "
        "Proxy-Authenticate challenge (11.7.1) is not passed to clients as if pylb made it.",
        {"hop-proxy-connection": "fwd -proxy-connection; 200",
         "hop-proxy-authorization": "fwd -proxy-authorization; 200",
         "rh-proxy-authenticate": "fwd; 407 -proxy-authenticate"},
        _proxy_fields,
    ),
    Deviation(
        "upgrade", "Upgrade only when asked", "9110 7.8",
        "Upgrade is hop-by-hop (RFC 9110 7.6.1): pylb passes it on only with Connection: upgrade, for "
        "WebSocket (never h2c: pylb speaks HTTP/1.1 to both sides), and never on a response that is not "
        "a 101.",
        {"hop-upgrade-alone": "fwd -upgrade; 200", "up-h2c": "fwd -connection -http2-settings -upgrade; 200",
         "rh-upgrade-on-200": "fwd; 200 -upgrade"},
        _upgrade,
    ),
    Deviation(
        "te-header", "TE removed, trailers relayed", "9110 7.6.1, 10.1.4",
        "TE is hop-by-hop (RFC 9110 7.6.1, 10.1.4): pylb removes it, and relays a chunked response's "
        "trailers as they come. HAProxy forwards TE: trailers; nginx removes it and drops the trailers.",
        {"rb-chunked-trailers": "fwd -te; 200"},
    ),
    Deviation(
        "limits", "431 for large heads", "6585 5",
        "A request head over 16 KiB or 100 field lines gets 431 Request Header Fields Too Large (RFC 6585 5); "
        "HAProxy answers 400, nginx's limits are per line (8 KiB) and larger.",
        {"lim-head-17k": "own 431", "lim-fields-101": "own 431"},
        _large,
    ),
    Deviation(
        "status-code", "status 100-599 only", "9110 15",
        "A status code is three digits, 100 to 599 (RFC 9110 15); a status line that says otherwise is not "
        "an answer pylb can frame for a client, which gets 502. HAProxy and nginx relay 20, 2000 or 099.",
        {"rs-status-2-digits": "fwd; own 502", "rs-status-4-digits": "fwd; own 502", "rs-status-099": "fwd; own 502"},
    ),
    Deviation(
        "response-leading-line", "no empty line before a status line", "9112 2.2",
        "RFC 9112 2.2's leniency for empty lines before the start line is for servers reading requests; "
        "a response that starts with one gets 502 (HAProxy skips it, nginx relays it garbled).",
        {"rs-leading-empty-line": "fwd; own 502"},
    ),
    Deviation(
        "response-ctl", "control bytes: 502", "9110 5.5",
        "A control character in a response field value is invalid (RFC 9110 5.5); pylb answers 502 rather "
        "than pass on a byte some clients refuse. HAProxy and nginx relay it.",
        {"rf-ctl": "fwd; own 502"},
    ),
    Deviation(
        "response-chunk-lf", "strict chunk lines (responses)", "9112 7.1",
        "pylb relays a chunked body as it comes (it does not re-chunk), so a chunk line ending in a bare LF "
        "would reach the client, which may read it differently: pylb answers 502 when nothing of the answer "
        "went out yet, and resets the connection otherwise. (HAProxy and nginx re-chunk what they read.)",
        {"rb-chunked-bare-lf": "fwd; own 502"},
    ),
    Deviation(
        "response-cl-te", "CL with TE: 502", "9112 6.3",
        "A response with both Content-Length and Transfer-Encoding 'ought to be handled as an error' "
        "(RFC 9112 6.3): pylb answers 502; HAProxy and nginx drop the Content-Length and relay it.",
        {"rb-cl-and-te": "fwd; own 502"},
    ),
    Deviation(
        "response-te-http10", "TE in HTTP/1.0: 502", "9112 6.1",
        "An HTTP/1.0 message with Transfer-Encoding MUST be treated as having faulty framing "
        "(RFC 9112 6.1): pylb answers 502; HAProxy and nginx decode it as chunked.",
        {"rb-te-http10": "fwd; own 502"},
    ),
    Deviation(
        "1xx-http10", "no 1xx to HTTP/1.0", "9110 15.2",
        "A server MUST NOT send a 1xx response to an HTTP/1.0 client (RFC 9110 15.2): pylb drops the 103; "
        "HAProxy and nginx pass it on.",
        {"1xx-to-http10": "fwd; 200"},
    ),
]  # fmt: skip

BY_CASE = {case: deviation for deviation in DEVIATIONS for case in deviation.cases}
assert len(BY_CASE) == sum(len(d.cases) for d in DEVIATIONS), "a case is under two deviations"
