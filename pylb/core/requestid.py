"""Request ids: short, unique per process, safe in a header and in HTML.

Owns: the id each request gets (error pages show it and send it as
``X-Request-Id``; the access log is to carry the same one, so a user quoting a
page's id finds the log line). Must not know: where the randomness comes from
(the caller gives the per-process prefix, e.g. ``secrets.token_hex(4)``), I/O.
Invariants: ids are ``<prefix>-<counter in hex>``, drawn from [0-9a-zA-Z-];
no two ids from one ``RequestIds`` are equal.
"""

from __future__ import annotations

import re

_PREFIX_RE = re.compile(r"[0-9A-Za-z]{1,32}")


class RequestIds:
    """A source of request ids: ``next()`` gives the next one. On the
    per-request path a request takes a number (``count += 1``) and its id is
    written out (``name``) only when something shows it."""

    __slots__ = ("count", "prefix")

    def __init__(self, prefix: str) -> None:
        if _PREFIX_RE.fullmatch(prefix) is None:
            raise ValueError(f"a request-id prefix is 1 to 32 letters or digits, not {prefix!r}")
        self.prefix = prefix
        self.count = 0

    def name(self, number: int) -> str:
        """The id of the request that took ``number``."""
        return f"{self.prefix}-{number:x}"

    def next(self) -> str:
        self.count += 1
        return self.name(self.count)

    def __repr__(self) -> str:
        return f"<RequestIds prefix={self.prefix!r} issued={self.count}>"
