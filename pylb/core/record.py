"""What one exchange did: the record the access log, statistics and tests read.

Owns: ``Capture``, the tuple the exchange machine (``pylb.core.exchange``)
hands its site's recorder once per request, and what it means:
``request_record`` turns one into a ``RequestRecord`` (what an embedding
observer gets), ``phases`` derives its timings, ``head_text`` its request
line; ``ConnectionRecord``, made once per TCP-mode connection at its end
(``pylb.net.tcpproxy``); the termination codes both carry (HAProxy's two
letters). Must not know: how records are printed or counted
(``pylb.observe``), I/O.

Why a capture and not a record: the request path pays for what it makes
whether anything reads it or not, and a record (22 fields, four of them
decoded or derived) cost 2.8 us of CPU per request more than a tuple of what
the machine already holds (measured: ``small_keepalive`` with the records
dropped at once, 26.6 us against 23.8 us per request). The batch that reads
captures (the access log's lines, the tally) derives only what it shows.

Times are seconds on the balancer's clock (``time.perf_counter`` in a running
balancer); a phase that did not happen is -1.
Neither record holds a header value other than Host, User-Agent and Referer
(never Authorization or Cookie). Records are read-only by convention, not
frozen: a frozen dataclass of this size costs 2.1 us to build against 0.2 us
(measured). One is built per request for an embedding observer (at once, on
the request path) and per line of the json and combined access logs (in the
batch); the haproxy log and the tally read captures.
"""

from __future__ import annotations

from dataclasses import dataclass

from pylb.core.http1 import Head, agents
from pylb.core.models import Backend
from pylb.core.requestid import RequestIds

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
    something shows them (the combined and json access logs:
    ``request_record(capture, with_agents=True)``), else empty. A request whose head could not be read has
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


# A capture's fields, in order (``Capture``): the client's address (bytes, as accepted) and port,
# the request's parsed head (None: it could not be read), the backend (None: none was reached),
# the status (0: none was sent), bytes sent to the client and received from it, the phases' times
# (``[start, head, connect start, connected, forwarded, answered]`` on the balancer's clock, -1 for
# a phase that did not happen; None when the machine kept none), the end's time, the other
# connections or backends tried, the termination, the request's number (its id, from ``ids``), the
# service, the listener, and the listener's ``RequestIds``.
Capture = tuple[
    bytes, int, Head | None, Backend | None, int, int, int, list[float] | None, float, int, str, int, str, str,
    RequestIds,
]  # fmt: skip

_VERSIONS = ("HTTP/1.0", "HTTP/1.1")
_TEXTS_MAX = 512  # heads' texts remembered (heads repeat: the parse cache hands out the same object)
_texts: dict[Head, tuple[str, str, str, str]] = {}


def head_text(head: Head | None) -> tuple[str, str, str, str]:
    """A head's method, target, Host and version as text (latin-1, as they
    came); ``("", "<BADREQ>", "", "")`` for a head that could not be read
    (HAProxy's name for it)."""
    if head is None:
        return "", "<BADREQ>", "", ""
    text = _texts.get(head)
    if text is None:
        text = (
            head.method.decode("latin-1"),
            head.target.decode("latin-1"),
            head.host.decode("latin-1") if head.host is not None else "",
            _VERSIONS[head.minor],
        )
        if len(_texts) >= _TEXTS_MAX:
            _texts.clear()
        _texts[head] = text
    return text


def phases(timing: list[float] | None, end: float) -> tuple[float, float, float, float, float]:
    """``(start, t_request, t_connect, t_response, seconds)`` from a
    capture's times (``RequestRecord`` says what each is); without times
    (an answer to a head never read), the end is the start."""
    if timing is None:
        return end, -1.0, -1.0, -1.0, 0.0
    start, head_at, dial, dialed, sent, answered = timing
    return (
        start,
        head_at - start if head_at >= 0 else -1.0,
        dialed - dial if dial >= 0 and dialed >= 0 else -1.0,
        answered - sent if sent >= 0 and answered >= 0 else -1.0,
        duration(timing, end),
    )


def duration(timing: list[float] | None, end: float) -> float:
    """``phases(timing, end)[4]`` alone: from the request's first byte to its end."""
    return end - timing[0] if timing is not None else 0.0


def request_record(capture: Capture, with_agents: bool = False) -> RequestRecord:
    """The record of a capture; ``with_agents``: read its User-Agent and
    Referer from the head (the combined and json access logs show them)."""
    client, port, head, backend, status, sent, received, timing, end, retries, termination, rid, service, name, ids = (
        capture
    )
    start, t_request, t_connect, t_response, seconds = phases(timing, end)
    method, target, host, version = head_text(head)
    agent, referer = agents(head.raw) if with_agents and head is not None else ("", "")
    return RequestRecord(
        client.decode(), method, target, backend, status, sent, seconds, port, host, service, version, received,
        t_request, t_connect, t_response, retries, termination, ids.name(rid), name, start, agent, referer,
    )  # fmt: skip
