"""pylb's own error types, each carrying the HTTP status the client should get.

Owns: the mapping "what went wrong" -> "what the client sees". Errors are
raised where the problem is detected (parser, pool, dialer) and translated
into a response once, in the proxy loop. Knows nothing of I/O.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid user input (flag, env var, label); the message is one line that
    names the input and the fix. The CLI prints it and exits 2."""


class ProxyError(Exception):
    """A request could not be served; ``status`` is what the client gets."""

    status: int = 502
    reason: str = "Bad Gateway"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(ProxyError):
    """The client sent something pylb will not forward."""

    status = 400
    reason = "Bad Request"


class HeadTooLarge(BadRequest):
    """The request head exceeded the size or header-count limit."""

    status = 431
    reason = "Request Header Fields Too Large"


class UriTooLong(BadRequest):
    status = 414
    reason = "URI Too Long"


class ProxyProtocolError(BadRequest):
    """A trusted source's PROXY protocol header is missing or malformed."""


class UnsupportedCoding(BadRequest):
    """A request body in a transfer coding pylb does not implement, chunked last
    (``gzip, chunked``): RFC 9112 6.1's 501."""

    status = 501
    reason = "Not Implemented"


class VersionNotSupported(BadRequest):
    """A well-formed HTTP version whose major number is not 1 (``HTTP/2.0``)."""

    status = 505
    reason = "HTTP Version Not Supported"


class BadGateway(ProxyError):
    """The backend failed or answered something that is not valid HTTP."""

    status = 502
    reason = "Bad Gateway"


class NoBackend(ProxyError):
    """The service has no backend that can take a request right now."""

    status = 503
    reason = "Service Unavailable"


class GatewayTimeout(ProxyError):
    """The backend did not answer within the server timeout."""

    status = 504
    reason = "Gateway Timeout"


class ConnectFailed(BadGateway):
    """The backend refused or reset the connection attempt: nothing was sent,
    so the request may go to another backend (redispatch)."""


class ConnectTimeout(GatewayTimeout):
    """Connecting to the backend took longer than the connect timeout:
    nothing was sent, so the request may go to another backend."""


class RequestTimeout(BadRequest):
    """The client did not send a whole request head in time (slowloris)."""

    status = 408
    reason = "Request Timeout"


class NoAnswer(BadGateway):
    """A backend connection closed or reset before the first byte of an
    answer: a backend going away (its listener closed after the kernel had
    accepted the connection), or a reused connection it had closed while
    idle. A request that may be replayed goes to another connection or
    backend."""
