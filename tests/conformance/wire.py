"""Reading HTTP/1.1 messages as they were sent, whatever they look like.

Owns: a deliberately tolerant reader of request and response heads and bodies, used by the
recording backend (to know where each forwarded request ends) and by the client (to know where
each response ends). It must read what three different proxies send, including their mistakes:
a line ends at LF (a CR before it is dropped), an obs-fold line continues the field before it,
a line without a colon is kept with the value None, a chunked body reads sizes and extensions
leniently. It shares no code with pylb's parser, so pylb's framing bugs cannot hide behind it.
Must not know: the proxies, the cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Field = tuple[bytes, bytes | None]  # (name as sent, value trimmed; None: the line has no colon)

_END_RE = re.compile(rb"\r?\n\r?\n")
_SIZE_RE = re.compile(rb"[ \t]*([0-9A-Fa-f]+)[^\n]*\n")


@dataclass
class Message:
    """One message as read: its raw head and the fields, body and trailers it carried."""

    raw: bytes  # head and body, exactly as received
    start: bytes  # the start line, without its line end
    fields: list[Field]
    body: bytes = b""
    trailers: list[Field] = field(default_factory=list)
    framing: str = "none"  # "none", "length", "chunked" or "close"
    complete: bool = True  # False: the body was cut short (the connection ended)

    def get(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.fields if v is not None and n.strip().lower() == name]

    @property
    def status(self) -> int:
        parts = self.start.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def head_end(buf: bytes) -> int:
    """Where the head in ``buf`` ends (past its empty line), or -1."""
    match = _END_RE.search(buf)
    if match is None:
        return -1
    # A head whose start line is the empty line: RFC 9112 2.2's leading CRLF.
    return match.end()


def split_fields(head: bytes) -> tuple[bytes, list[Field]]:
    """The start line and the fields of a head (line ends LF or CRLF, obs-fold joined)."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    while lines and lines[-1] == b"":
        lines.pop()
    start, fields = (lines[0] if lines else b""), []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and fields and fields[-1][1] is not None:
            name, value = fields[-1]
            fields[-1] = (name, (value or b"") + b" " + line.strip(b" \t"))
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name, value.strip(b" \t")))
        else:
            fields.append((line, None))
    return start, fields


def _chunked(buf: bytes, at: int) -> tuple[bytes, list[Field], int] | None:
    """Decode a chunked body from ``buf[at:]``: (body, trailers, end), or None if incomplete."""
    body = b""
    while True:
        match = _SIZE_RE.match(buf, at)
        if match is None:
            if b"\n" in buf[at:]:
                raise ValueError(f"bad chunk size line {buf[at : at + 40]!r}")
            return None
        size = int(match.group(1), 16)
        at = match.end()
        if size == 0:
            end = head_end(b"\n" + buf[at:])
            if end < 0:
                return None
            _, trailers = split_fields(b"-\n" + buf[at : at + end - 1])
            return body, trailers, at + end - 1
        if len(buf) < at + size + 1:
            return None
        body += buf[at : at + size]
        at += size
        if buf[at : at + 2] == b"\r\n":
            at += 2
        elif buf[at : at + 1] == b"\n":
            at += 1
        elif len(buf) - at < 2:
            return None
        else:
            raise ValueError(f"no line end after chunk data: {buf[at : at + 20]!r}")


def framing_of(fields: list[Field], *, response: bool, status: int = 0, method: bytes = b"GET") -> tuple[str, int]:
    """How the body of a message with ``fields`` is delimited: (kind, length)."""
    if response and (status < 200 or status in (204, 304) or method == b"HEAD"):
        return "none", 0
    te = [v.strip().lower() for n, v in fields if v is not None and n.strip().lower() == b"transfer-encoding"]
    if te:
        codings = [c.strip() for t in te for c in t.split(b",")]
        return ("chunked", 0) if codings[-1:] == [b"chunked"] else ("close" if response else "none", 0)
    for name, value in fields:
        if value is not None and name.strip().lower() == b"content-length":
            first = value.split(b",")[0].strip()
            if first.isdigit():
                return "length", int(first)
    return ("close", 0) if response else ("none", 0)


def read_message(buf: bytes, *, response: bool, method: bytes = b"GET", eof: bool = False) -> Message | None:
    """The first message in ``buf``, or None when more bytes are needed.

    ``eof``: the connection has ended, so a body delimited by close is complete, and a message cut
    short is returned with ``complete=False``."""
    end = head_end(buf)
    if end < 0:
        if eof and buf.strip():
            start, fields = split_fields(buf)
            return Message(buf, start, fields, complete=False)
        return None
    head = buf[:end]
    start, fields = split_fields(head)
    status = 0
    if response:
        parts = start.split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    kind, length = framing_of(fields, response=response, status=status, method=method)
    msg = Message(head, start, fields, framing=kind)
    if kind == "length":
        if len(buf) - end < length:
            if not eof:
                return None
            msg.body, msg.raw, msg.complete = buf[end:], buf, False
            return msg
        msg.body, msg.raw = buf[end : end + length], buf[: end + length]
    elif kind == "chunked":
        try:
            decoded = _chunked(buf, end)
        except ValueError:
            decoded = None
            if not eof:
                raise
        if decoded is None:
            if not eof:
                return None
            msg.raw, msg.complete = buf, False
            return msg
        msg.body, msg.trailers, stop = decoded
        msg.raw = buf[:stop]
    elif kind == "close":
        if not eof:
            return None
        msg.body, msg.raw = buf[end:], buf
    return msg
