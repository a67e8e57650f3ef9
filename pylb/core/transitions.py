"""The exchange machine's vocabulary and its one state table.

Owns: the actions a driver performs (``READ_CLIENT``... ``CLOSE``), the
states of one client connection's exchange, the names of what happens, and
``TRANSITIONS``: every move the machine (``pylb.core.exchange``) can make,
in one table, as h11's ``_state.py`` keeps its own. ``describe()`` renders
it for docs/architecture.md (a test holds the two equal). Must not know:
how a move is decided (the machine's), I/O.
"""

from __future__ import annotations

# ---- actions: what the driver does next ---------------------------------------------------
NOTHING = 0  # go on waiting for what you were waiting for
READ_CLIENT = 1  # wait for client bytes (or EOF) until ``deadline``
DIAL = 2  # open a new connection to ``backend``: then connected() or connect_failed()
SEND_BACKEND = 3  # write ``out`` to the backend connection ``conn``: then backend_sent()
READ_BACKEND = 4  # wait for backend bytes: then backend_data() or backend_eof()
SEND_CLIENT = 5  # write ``out`` to the client: then client_sent()
TUNNEL = 6  # 101: write ``out`` to the client, ``buf`` to the backend, relay both ways; tunnel_done()
CLOSE = 7  # close the client connection (with a reset when ``reset``): the end
ACTION_NAMES = ("NOTHING", "READ_CLIENT", "DIAL", "SEND_BACKEND", "READ_BACKEND", "SEND_CLIENT", "TUNNEL", "CLOSE")

# ---- states ---------------------------------------------------------------------------------
IDLE = 0  # between requests: waiting for the first byte of the next (client timeout)
HEAD = 1  # a request head is arriving (request_head timeout, from its first byte)
CONNECT = 2  # a backend is chosen; a new connection to it is being opened
SEND = 3  # the request (head and the body held here) is being written to the backend
WAIT = 4  # the request went out: waiting for the answer's head (server timeout)
INTERIM = 5  # a 1xx answer is being written to the client
RELAY = 6  # the answer's head went out; its body is being relayed
FLUSH = 7  # the last bytes for this request are being written (an answer, or pylb's own)
TUNNELING = 8  # after a 101: bytes both ways, the driver's
CLOSED = 9  # over: the driver closes the client connection
STATE_NAMES = ("IDLE", "HEAD", "CONNECT", "SEND", "WAIT", "INTERIM", "RELAY", "FLUSH", "TUNNELING", "CLOSED")

# ---- what happened (the table's columns) ------------------------------------------------------
BYTES = "a request head begins"
BLANK = "only empty lines: still idle"
REQUEST = "head routed, backend chosen, idle connection taken"
DIALING = "no idle connection to it: dial"
CONNECTED = "dialed"
SENT = "request written"
REPLAY = "another connection (a replay, or another backend after a failed dial)"
INTERIM_HEAD = "a 1xx head, written on"
INTERIM_SENT = "the 1xx is written"
ANSWER_HEAD = "the answer's head, its body follows"
SWITCH = "101 Switching Protocols"
PIECE = "a piece of the answer's body, written on"
LAST = "the answer is complete"
ANSWER = "pylb answers itself (an error, a redirect)"
DONE = "written; the connection stays"
END = "the connection ends"

TRANSITIONS: dict[int, dict[str, int]] = {
    IDLE: {BYTES: HEAD, END: CLOSED},
    HEAD: {REQUEST: SEND, DIALING: CONNECT, ANSWER: FLUSH, BLANK: IDLE, END: CLOSED},
    CONNECT: {CONNECTED: SEND, DIALING: CONNECT, REPLAY: SEND, ANSWER: FLUSH, END: CLOSED},
    SEND: {SENT: WAIT, REPLAY: SEND, DIALING: CONNECT, ANSWER: FLUSH, END: CLOSED},
    WAIT: {
        INTERIM_HEAD: INTERIM,
        ANSWER_HEAD: RELAY,
        LAST: FLUSH,
        SWITCH: TUNNELING,
        REPLAY: SEND,
        DIALING: CONNECT,
        ANSWER: FLUSH,
        END: CLOSED,
    },
    INTERIM: {INTERIM_SENT: WAIT, END: CLOSED},
    RELAY: {PIECE: RELAY, LAST: FLUSH, ANSWER: FLUSH, END: CLOSED},
    FLUSH: {DONE: IDLE, END: CLOSED},
    TUNNELING: {END: CLOSED},
    CLOSED: {END: CLOSED},
}


class ProtocolBug(RuntimeError):
    """An event the machine cannot take in its state: a driver's mistake."""


def describe() -> str:
    """The state table as Markdown (docs/architecture.md shows it; a test
    holds the two equal)."""
    rows = ["| state | what happened | next state |", "| --- | --- | --- |"]
    for state, moves in TRANSITIONS.items():
        for what, to in moves.items():
            rows.append(f"| {STATE_NAMES[state]} | {what} | {STATE_NAMES[to]} |")
    return "\n".join(rows)
