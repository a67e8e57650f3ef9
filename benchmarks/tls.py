"""TLS for the HTTPS cases: the one certificate both proxies serve, and what a proxy negotiates.

Owns: making the run's certificate (ECDSA P-256, issued by a throwaway trustme CA, written as one
PEM holding the key and the certificate, the form HAProxy's `crt` and pylb's `--ssl-cert` both
take), the client contexts the harness uses (no verification: the certificate is ours), and the
probe of a TLS listener: protocol version, cipher suite, key-exchange group and certificate type
(from `openssl s_client -brief`, which names the group; Python's `ssl` does not), and whether the
proxy issues session tickets that resume a session.
Knows nothing of which proxy is behind a port. Invariants: the key is written into the run's temp
dir only (mode 0600) and never printed; every probe is bounded by a timeout.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

PROBE_TIMEOUT_S = 10.0
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def write_certificate(tmp: Path) -> Path:
    """Issue an ECDSA P-256 certificate for localhost and 127.0.0.1; write key + chain to one PEM."""
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    path = tmp / "bench-cert.pem"
    path.touch(mode=0o600)
    path.write_bytes(leaf.private_key_and_cert_chain_pem.bytes())
    return path


def client_context(*, tls13_only: bool = False) -> ssl.SSLContext:
    """A client context that does not verify the peer (the certificate is the run's own)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls13_only:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


@dataclass(frozen=True)
class TlsFacts:
    """What a TLS listener negotiated with a default OpenSSL client (as wrk is one)."""

    version: str
    cipher: str
    group: str
    signature: str
    tickets_resume: bool  # a session ticket it issued resumed the next connection

    def describe(self) -> str:
        resume = "session tickets resume" if self.tickets_resume else "no resumption by ticket"
        return f"{self.version}, {self.cipher}, group {self.group}, {self.signature} certificate; {resume}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_s_client(text: str) -> dict[str, str]:
    """The protocol, cipher suite, group and signature type from `openssl s_client -brief` output."""
    patterns = {
        "version": r"^Protocol version:\s*(\S+)",
        "cipher": r"^Ciphersuite:\s*(\S+)",
        # OpenSSL 3.0/3.1: "Server Temp Key: X25519, 253 bits"; 3.2+: "Negotiated TLS1.3 group: X25519"
        "group": r"^(?:Server Temp Key|Negotiated TLS1\.3 group):\s*([^,\s]+)",
        "signature": r"^Signature type:\s*(\S+)",
    }
    found = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, text, re.M)
        found[key] = match.group(1) if match else "?"
    return found


def _s_client(port: int) -> dict[str, str]:
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-brief"]
    try:
        done = subprocess.run(argv, input=b"", capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return parse_s_client("")
    return parse_s_client((done.stdout + done.stderr).decode(errors="replace"))


def _one_exchange(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None) -> ssl.SSLSocket:
    """Connect, send one GET and read the first bytes of the answer (TLS 1.3 tickets come after
    the handshake, so a session is resumable only once something has been read)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S)
    conn = context.wrap_socket(raw, server_hostname="localhost", session=session)
    conn.sendall(REQUEST)
    if not conn.recv(65536):
        raise ConnectionError("closed without an answer")
    return conn


def probe(port: int) -> TlsFacts:
    """What the TLS listener on 127.0.0.1:`port` negotiates; raises OSError if it does not answer."""
    facts = _s_client(port)
    context = client_context()
    first = _one_exchange(port, context, None)
    session = first.session
    first.close()
    second = _one_exchange(port, context, session)
    resumed = bool(second.session_reused)
    second.close()
    return TlsFacts(facts["version"], facts["cipher"], facts["group"], facts["signature"], resumed)
