"""What one exchange did: the record the access log, statistics and tests read.

Owns: ``RequestRecord``, made once per request by the exchange machine
(``pylb.core.exchange``), and ``ConnectionRecord``, made once per TCP-mode
connection at its end (``pylb.net.tcpproxy``), each handed to the balancer's
observer; the termination codes they carry (HAProxy's two letters). Must not
know: how records are printed or counted (``pylb.observe``), I/O.

Times are seconds on the balancer's clock (``time.perf_counter`` in a running
balancer); a phase that did not happen is -1.
Neither record holds a header value other than Host, User-Agent and Referer
(never Authorization or Cookie). Records are read-only by convention, not
frozen: a frozen dataclass of this size costs 2.1 us to build against 0.2 us
(measured), and one is built per request whenever an observer is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from pylb.core.models import Backend

# Termination state, first letter (what ended the exchange) and second (where it was):
# HAProxy's vocabulary, so log parsers keep working.
# LOCAL: pylb answered itself without an error (a redirect, the monitor URI); KILLED: pylb closed
# the connection on purpose (a TCP connection whose backend left the pool, once --tcp-drain passed).
NORMAL, CLIENT_ABORT, SERVER_ABORT, PROXY, CLIENT_TIMEOUT, SERVER_TIMEOUT = "-", "C", "S", "P", "c", "s"
LOCAL, KILLED = "L", "K"
AT_NONE, AT_REQUEST, AT_CONNECT, AT_HEADERS, AT_DATA, AT_LAST = "-", "R", "C", "H", "D", "L"


@dataclass(slots=True)
class RequestRecord:
    """One request: who asked what, which backend answered, how it went.

    ``bytes_sent``: bytes sent to the client (head and body);
    ``bytes_received``: bytes of the request (head and body) from the client;
    ``seconds``: from the request's first byte to the last byte of the answer.
    Timings: ``t_request`` (first byte to whole head), ``t_connect`` (a new
    backend connection, -1 when one was reused or none was needed),
    ``t_response`` (request forwarded to the answer's head), all in seconds.
    ``termination``: two letters as HAProxy logs them (``--`` when all went
    well; ``SH``: the backend failed before its answer's head...).
    ``retries``: other connections or backends tried for this request.
    ``start``: when its first byte came, on the balancer's clock (-1 when
    unknown). ``user_agent`` and ``referer``: those headers, only when
    the observer asked for them (``Site.agents``: the combined and json
    access logs), else empty. A request whose head could not be read has
    ``method`` ``""`` and ``target`` ``"<BADREQ>"``, as HAProxy logs it.
    """

    client: str
    method: str
    target: str
    backend: Backend | None
    status: int
    bytes_sent: int
    seconds: float
    client_port: int = 0
    host: str = ""
    service: str = ""
    version: str = "HTTP/1.1"
    bytes_received: int = 0
    t_request: float = -1.0
    t_connect: float = -1.0
    t_response: float = -1.0
    retries: int = 0
    termination: str = "--"
    request_id: str = ""
    listener: str = ""
    start: float = -1.0
    user_agent: str = ""
    referer: str = ""


@dataclass(slots=True)
class ConnectionRecord:
    """One TCP-mode connection: who connected, which backend took it, how it
    ended. ``bytes_in``: from the client to the backend; ``bytes_out``: back
    to the client. ``t_connect``: the backend connect (-1: none was made);
    ``seconds``: from accept to close. ``termination``: HAProxy's two letters
    (``--``: ended normally; ``SC``: no backend could be reached; ``cD``: the
    idle timeout; ``KD``: closed after its backend left the pool)."""

    client: str
    client_port: int
    listener: str
    service: str
    backend: Backend | None
    bytes_in: int
    bytes_out: int
    seconds: float
    t_connect: float = -1.0
    retries: int = 0
    termination: str = "--"
    start: float = -1.0
