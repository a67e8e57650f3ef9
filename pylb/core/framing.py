"""Body framing: where a chunked body ends in a byte stream, checked strictly.

Owns: the chunked coding's grammar (sizes, extensions, CRLFs, trailers) and
the limits on its lines. Must not know: sockets. The proxy forwards chunked
bodies byte for byte; this scanner only tells it where the body ends and
refuses anything a smuggler could use (bad sizes, bare LF, oversize lines).
"""

from __future__ import annotations

import re

from pylb.core.errors import ProxyError
from pylb.core.http1 import _FIELD_RE

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXT = rb"[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?"
_SIZE_LINE_RE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:" + _EXT + rb")*\r\n")
MAX_LINE = 4096
MAX_TRAILERS = 16 * 1024

_SIZE, _DATA, _CRLF, _TRAILER, _DONE = range(5)


class ChunkedScanner:
    """Feed the bytes of a chunked body as they come; ``feed`` returns how
    many of them belong to the body (the rest is the next message)."""

    __slots__ = ("_error", "_line", "_remaining", "_state", "_trailers")

    def __init__(self, error: type[ProxyError]) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._line = b""
        self._trailers = 0
        self._error = error

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes, payload: list[bytes] | None = None) -> int:
        """Scan ``data``; return how many bytes belong to the body. With
        ``payload``, append the chunk data found (the decoded body) to it."""
        i, n = 0, len(data)
        while i < n and self._state != _DONE:
            if self._state == _DATA:
                take = min(self._remaining, n - i)
                if payload is not None:
                    payload.append(data[i : i + take])
                i += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _CRLF
            elif self._state == _CRLF:
                i = self._crlf(data, i)
            else:
                i = self._line_step(data, i)
        return i

    def _crlf(self, data: bytes, i: int) -> int:
        need = 2 - len(self._line)
        self._line += data[i : i + need]
        i += min(need, len(data) - i)
        if len(self._line) == 2:
            if self._line != b"\r\n":
                raise self._error("chunk data not followed by CRLF")
            self._line = b""
            self._state = _SIZE
        return i

    def _line_step(self, data: bytes, i: int) -> int:
        end = data.find(b"\n", i)
        if end < 0:
            self._line += data[i:]
            if len(self._line) > MAX_LINE:
                raise self._error("chunk size or trailer line too long")
            return len(data)
        line = self._line + data[i : end + 1]
        self._line = b""
        if self._state == _SIZE:
            self._size_line(line)
        else:
            self._trailer_line(line)
        return end + 1

    def _size_line(self, line: bytes) -> None:
        match = _SIZE_LINE_RE.fullmatch(line)
        if match is None:
            raise self._error("invalid chunk size line")
        size = int(match.group(1), 16)
        if size == 0:
            self._state = _TRAILER
        else:
            self._remaining = size
            self._state = _DATA

    def _trailer_line(self, line: bytes) -> None:
        if line == b"\r\n":
            self._state = _DONE
            return
        self._trailers += len(line)
        if self._trailers > MAX_TRAILERS or _FIELD_RE.fullmatch(line) is None:
            raise self._error("invalid or oversized trailer section")
