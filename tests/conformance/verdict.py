"""What a proxy did with a case, in one short line that can be compared and put in a table.

Owns: the normalization that makes three proxies comparable, and the notation of the table.
A verdict reads ``<what reached the backend>; <what reached the client>``:

- ``fwd``: the request reached the backend as sent, give or take what is normalized away;
  ``fwd x2``: the backend read two requests; after ``fwd``, the differences from what the client
  sent: ``-name`` (field removed), ``+name: value`` (added), ``~name: value`` (value changed),
  ``as "GET / HTTP/1.1"`` (request line changed), ``body=...``, ``trailers=...``, ``CL+TE!``,
  ``2xCL!`` (framing the backend could read two ways), ``stray=...`` (bytes that made no request);
- for the client: ``own 400`` (the proxy's own answer: only its status is compared), ``200``
  (the backend's answer, relayed) followed by its differences from what the backend sent, in the
  same notation, plus ``bare LF!`` or ``fold!`` when the head the client got is not canonical;
  ``closed``, ``timeout`` or ``garbled`` when no complete answer came.

Normalized away (each proxy adds or rewrites these its own way, and none of it changes what the
message means): request fields X-Forwarded-*, X-Real-IP, Forwarded and Via; response fields
Date and Server; Connection when it says only keep-alive or close; Content-Length and
Transfer-Encoding (the body is compared decoded instead, and ambiguous framing is flagged);
header names' case; runs of spaces and tabs inside a field value (one space); the response's
HTTP version; the bodies of proxies' own answers; bytes a proxy sent on a connection after the
backend had closed it (a real backend never reads them).
Must not know: sockets, the proxies' names.
"""

from __future__ import annotations

import re
from collections import Counter

from tests.conformance.runner import Case, Outcome
from tests.conformance.wire import Field, Message

IGNORED_REQUEST = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-port", b"x-forwarded-host", b"x-real-ip",
     b"forwarded", b"via", b"content-length", b"transfer-encoding"}
)  # fmt: skip
IGNORED_RESPONSE = frozenset({b"date", b"server", b"content-length", b"transfer-encoding"})
MARKER = b"x-script"  # every scripted answer carries it: an answer without it is the proxy's own
VALUE_CHARS = 24


def short(value: bytes | None, limit: int = VALUE_CHARS) -> str:
    """A value as the table shows it: printable ASCII as is, other bytes escaped (and ` and |,
    which a Markdown table cell cannot hold), cut at ``limit``."""
    if value is None:
        return "(no colon)"
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x60, 0x7C) else f"\\x{b:02x}" for b in value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_WHITESPACE_RE = re.compile(rb"[ \t]+")


def _keyed(fields: list[Field], ignored: frozenset[bytes]) -> Counter[tuple[bytes, bytes | None]]:
    out: Counter[tuple[bytes, bytes | None]] = Counter()
    for name, value in fields:
        lname = name.lower()
        if lname in ignored:
            continue
        if lname == b"connection" and value is not None:
            tokens = {t.strip().lower() for t in value.split(b",")}
            if tokens <= {b"keep-alive", b"close", b""}:
                continue
        out[(lname, None if value is None else _WHITESPACE_RE.sub(b" ", value))] += 1
    return out


def field_changes(sent: list[Field], got: list[Field], ignored: frozenset[bytes]) -> list[str]:
    """How ``got`` differs from ``sent``, in the table's notation."""
    before, after = _keyed(sent, ignored), _keyed(got, ignored)
    removed, added = before - after, after - before
    names_removed = {name for name, _ in removed}
    names_added = {name for name, _ in added}
    out = []
    for name in sorted(names_removed - names_added):
        out.append(f"-{short(name)}")
    for name, value in sorted(added, key=lambda kv: (kv[0], kv[1] or b"")):
        sign = "~" if name in names_removed else "+"
        out.append(f"{sign}{short(name)}: {short(value)}")
    return out


def framing_flags(fields: list[Field]) -> list[str]:
    names = [name.lower() for name, value in fields if value is not None]
    cl, te = names.count(b"content-length"), names.count(b"transfer-encoding")
    flags = []
    if cl and te:
        flags.append("CL+TE!")
    if cl > 1:
        flags.append(f"{cl}xCL!")
    if te > 1:
        flags.append(f"{te}xTE!")
    codings = [v.strip().lower() for n, v in fields if v is not None and n.lower() == b"transfer-encoding"]
    if te and codings != [b"chunked"]:
        flags.append(f"TE={short(b','.join(codings))}")
    lengths = [v for n, v in fields if v is not None and n.lower() == b"content-length"]
    if cl == 1 and not lengths[0].isdigit():
        flags.append(f"CL={short(lengths[0])}")
    return flags


def _trailer_names(fields: list[Field]) -> list[bytes]:
    return [name.lower() for name, _ in fields]


def _reason(msg: Message) -> bytes:
    parts = msg.start.split(b" ", 2)
    return parts[2] if len(parts) > 2 else b""


def _forwarded(case: Case, outcome: Outcome) -> str:
    received = outcome.received
    if not any(received.raw):
        return ""
    sent = case.sent()
    parts = []
    for msg in received.requests:
        changes = []
        if sent is None or msg.start != sent.start:
            changes.append(f'as "{short(msg.start, 40)}"')
        changes += field_changes(sent.fields if sent else [], msg.fields, IGNORED_REQUEST)
        changes += framing_flags(msg.fields)
        if sent is None or msg.body != sent.body:
            changes.append(f"body={short(msg.body)}")
        if _trailer_names(msg.trailers) != _trailer_names(sent.trailers if sent else []):
            changes.append(f"trailers={short(b','.join(_trailer_names(msg.trailers)))}")
        parts.append(" ".join(changes))
    head = "fwd" if len(received.requests) <= 1 else f"fwd x{len(received.requests)}"
    if received.garbled:
        parts.append(f"stray={short(received.garbled)}")
    if len(parts) > 1:
        parts = [p or "as sent" for p in parts]
    detail = " then ".join(p for p in parts if p)
    return f"{head} {detail}" if detail else head


def _head_flags(msg: Message) -> list[str]:
    head = msg.raw[: msg.raw.find(b"\n\n") + 2 if b"\r\n\r\n" not in msg.raw else msg.raw.find(b"\r\n\r\n") + 4]
    flags = []
    if head.replace(b"\r\n", b"").count(b"\n"):
        flags.append("bare LF!")
    if b"\n " in head or b"\n\t" in head:
        flags.append("fold!")
    return flags


def _answered(case: Case, outcome: Outcome) -> str:
    method = case.methods()[0]
    unmatched = case.scripted(method)
    parts = []
    for msg in outcome.responses:
        if not any(name.lower() == MARKER for name, _ in msg.fields):
            parts.append(f"own {msg.status}" if msg.status else f"own {short(msg.start)}")
            continue
        # the scripted answer this is: the first one left with its status, else the first one left
        want = next((m for m in unmatched if m.status == msg.status), unmatched[0] if unmatched else None)
        changes = [str(msg.status)]
        if want is not None:
            unmatched.remove(want)
            if msg.status != want.status:
                changes.append(f"(sent {want.status})")
            if _reason(msg) != _reason(want):
                changes.append(f"reason={short(_reason(msg))}")
            changes += field_changes(want.fields, msg.fields, IGNORED_RESPONSE)
            if msg.body != want.body:
                changes.append(f"body={short(msg.body)}")
            if _trailer_names(msg.trailers) != _trailer_names(want.trailers):
                changes.append(f"trailers={short(b','.join(_trailer_names(msg.trailers)))}")
        changes += framing_flags(msg.fields) + _head_flags(msg)
        if not msg.complete:
            changes.append("cut")
        parts.append(" ".join(changes))
    if outcome.end != "answered":
        parts.append(outcome.end)
    return " / ".join(parts)


def describe(case: Case, outcome: Outcome) -> str:
    """The verdict: what reached the backend, then what reached the client."""
    return "; ".join(part for part in (_forwarded(case, outcome), _answered(case, outcome)) if part)
