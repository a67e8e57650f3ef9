"""HTTP policy: what pylb changes in messages it forwards, and its own answers.

Owns: hop-by-hop stripping, the X-Forwarded-* headers, the Connection header
toward the client, one Content-Length line where equal values came repeated,
and the small error pages. Must not know: sockets or routing. Pure functions
from a ``Head`` and facts to bytes.
Invariants: what is sent has CRLF line ends and one framing header (a
response head that came with bare LFs is normalized by the parser, and its
``raw`` is then already canonical); an error page says the status, its reason
and the request id, never why in pylb's words (a backend's address, an errno:
those go to the log).
"""

from __future__ import annotations

from pylb.core.http1 import HOP_BY_HOP, SPOOFABLE, Head

_TRANSFER_ENCODING = frozenset({b"transfer-encoding"})
# Fields pylb frames and routes by: a Connection header naming them must not
# make them vanish between pylb and its peer (that would smuggle a request).
END_TO_END = frozenset({b"content-length", b"transfer-encoding", b"host"})


def forwarded_suffix(client_ip: str, proto: str, port: int) -> bytes:
    """The X-Forwarded-* lines that are the same for every request on one
    client connection; computed once per connection."""
    return (
        b"X-Forwarded-For: "
        + client_ip.encode()
        + b"\r\nX-Forwarded-Proto: "
        + proto.encode()
        + b"\r\nX-Forwarded-Port: "
        + str(port).encode()
        + b"\r\n"
    )


def request_head_out(head: Head, suffix: bytes, client_ip: bytes, upgrade: bool = False) -> bytes:
    """The head to send to the backend: the client's head without hop-by-hop
    and spoofable headers, plus X-Forwarded-For (appended to what the client
    sent), -Proto, -Port and -Host. Unchanged lines keep their bytes.

    The common heads take no rebuild: one without any header pylb acts on
    goes on as received, one whose only such header is a lone
    ``Connection: keep-alive`` (most browsers') without that line, which the
    parser has cut out already (``Head.forward``)."""
    host = b"X-Forwarded-Host: " + head.host + b"\r\n" if head.host is not None else b""
    if not head.needs_rewrite:
        forward = head.forward
        return (head.raw[:-2] if forward is None else forward) + suffix + host + b"\r\n"
    drop = HOP_BY_HOP | (head.connection - END_TO_END)
    keep_upgrade = upgrade and b"upgrade" in head.connection
    lines = [head.raw[: head.raw.index(b"\r\n") + 2]]
    prior_xff: list[bytes] = []
    length = _length_line(head)
    for name, value in head.fields:
        lname = name.lower()
        if lname == b"x-forwarded-for":
            prior_xff.append(value)
        elif lname in SPOOFABLE or (lname in drop and not (keep_upgrade and lname == b"upgrade")):
            continue
        elif lname == b"content-length" and head.fold_length:
            lines.append(length)
            length = b""
        else:
            lines.append(name + b": " + value + b"\r\n")
    if keep_upgrade:
        lines.append(b"Connection: upgrade\r\n")
    if prior_xff:
        lines.append(b"X-Forwarded-For: " + b", ".join([*prior_xff, client_ip]) + b"\r\n")
        suffix = suffix[suffix.index(b"\r\n") + 2 :]
    lines += (suffix, host, b"\r\n")
    return b"".join(lines)


def response_head_out(
    head: Head, client_minor: int, keep_alive: bool, extra: bytes = b"", dechunk: bool = False
) -> bytes:
    """The head to send to the client: hop-by-hop headers stripped, the
    Connection header saying whether this client connection stays open, and
    ``extra`` header lines (CRLF-terminated) added. ``dechunk``: the body
    goes out decoded and delimited by close (to an HTTP/1.0 client), so
    Transfer-Encoding goes too."""
    if not head.needs_rewrite and keep_alive and client_minor == 1 and not dechunk:
        return head.raw[:-2] + extra + b"\r\n" if extra else head.raw
    drop = HOP_BY_HOP | (head.connection - END_TO_END) | (_TRANSFER_ENCODING if dechunk else frozenset())
    lines = [head.raw[: head.raw.index(b"\r\n") + 2]]
    switching = head.status == 101
    length = _length_line(head)
    for name, value in head.fields:
        lname = name.lower()
        if lname in drop and not (switching and lname == b"upgrade"):
            continue
        if lname == b"content-length" and head.fold_length:
            lines.append(length)
            length = b""
            continue
        lines.append(name + b": " + value + b"\r\n")
    if switching:
        lines.append(b"Connection: upgrade\r\n")
    elif not keep_alive:
        lines.append(b"Connection: close\r\n")
    elif client_minor == 0:
        lines.append(b"Connection: keep-alive\r\n")
    lines += (extra, b"\r\n")
    return b"".join(lines)


def _length_line(head: Head) -> bytes:
    """The one Content-Length line of a head whose equal values came repeated."""
    if not head.fold_length:
        return b""
    first = next(v for n, v in head.fields if n.lower() == b"content-length")
    return b"Content-Length: " + first.split(b",")[0].strip() + b"\r\n"


def hsts_header(max_age: int) -> bytes:
    """The Strict-Transport-Security line for https responses (empty when 0)."""
    return b"Strict-Transport-Security: max-age=%d\r\n" % max_age if max_age else b""


def https_redirect(head: Head, https_port: int, keep_alive: bool) -> bytes | None:
    """The redirect a plain-HTTP request gets under FORCE_SSL: 301 for GET and
    HEAD, 308 (method and body kept) otherwise; host and path kept. None when
    the request names no host to redirect to."""
    if head.host is None:
        return None
    host = head.host
    host = host[: host.index(b"]") + 1] if host.startswith(b"[") else host.partition(b":")[0]
    port = b"" if https_port == 443 else b":%d" % https_port
    target = head.target
    if target.startswith((b"http://", b"https://")):  # absolute form: keep only the path
        parts = target.split(b"/", 3)
        target = b"/" + parts[3] if len(parts) > 3 else b"/"
    elif not target.startswith(b"/"):
        target = b"/"
    location = b"https://" + host + port + target
    status = b"301 Moved Permanently" if head.method in (b"GET", b"HEAD") else b"308 Permanent Redirect"
    return (
        b"HTTP/1.1 " + status + b"\r\nLocation: " + location + b"\r\nContent-Length: 0\r\nServer: pylb\r\n"
        + (b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    )


def monitor_response(ok: bool, keep_alive: bool, head_only: bool = False) -> bytes:
    """The answer to MONITOR_URI: 200 while pylb serves, 503 while it does not
    (draining, or no backend of the default service up), as HAProxy's monitor."""
    body = b"OK: serving\n" if ok else b"Service Unavailable: draining or no backend up\n"
    head = (
        (b"HTTP/1.1 200 OK\r\n" if ok else b"HTTP/1.1 503 Service Unavailable\r\n")
        + b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nCache-Control: no-store\r\n" % len(body)
        + (b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
        + b"Server: pylb\r\n\r\n"
    )
    return head if head_only else head + body


def error_response(
    status: int, reason: str, keep_alive: bool = False, head_only: bool = False, request_id: str = ""
) -> bytes:
    """pylb's own answer: a small HTML page with the status, its reason and the
    request id (also sent as ``X-Request-Id``), and nothing else: what went
    wrong, in pylb's words, may name a backend's address, so it goes to the
    log only. ``reason`` is pylb's own text (never a peer's)."""
    rid = f"<p>Request id: {request_id}</p>" if request_id else ""
    body = (
        f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1>"
        f"{rid}<hr><address>pylb</address></body></html>\n"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        + (f"X-Request-Id: {request_id}\r\n" if request_id else "")
        + f"Connection: {'keep-alive' if keep_alive else 'close'}\r\nServer: pylb\r\n\r\n"
    ).encode()
    return head if head_only else head + body
