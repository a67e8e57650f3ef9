"""What one exchange did: the record the access log, statistics and tests read.

Owns: ``RequestRecord``, made once per request by the exchange machine
(``pylb.core.exchange``) and handed to the balancer's observer; the
termination codes it carries (HAProxy's two letters). Must not know: how
records are printed or counted (``pylb.observe``), I/O.

Times are seconds on the balancer's clock; a phase that did not happen is -1.
"""

from __future__ import annotations

from dataclasses import dataclass

from pylb.core.models import Backend

# Termination state, first letter (what ended the exchange) and second (where it was):
# HAProxy's vocabulary, so log parsers keep working.
NORMAL, CLIENT_ABORT, SERVER_ABORT, PROXY, CLIENT_TIMEOUT, SERVER_TIMEOUT = "-", "C", "S", "P", "c", "s"
AT_NONE, AT_REQUEST, AT_CONNECT, AT_HEADERS, AT_DATA, AT_LAST = "-", "R", "C", "H", "D", "L"


@dataclass(frozen=True, slots=True)
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
