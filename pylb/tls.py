"""Certificates and server TLS contexts, from PEM text to SNI selection.

Owns: reading PEM bundles (``SSL_CERT``, ``DEFAULT_SSL_CERT``, a folder of
``*.pem`` files, a ``--ssl-cert`` file) into ``CertBundle``s; loading them into
``ssl.SSLContext``s without a plaintext key on disk; the hardened server
settings (TLS 1.2+, ECDHE with AEAD ciphers, ALPN ``http/1.1``); and the
``CertStore`` that picks a certificate for the server name a client sends.
Must not know: trio, sockets, HTTP, or where certificates come from at run time
(discovery hands bundles to ``CertStore.add``/``replace_dynamic``).

Invariants:
- Key material never appears in a log line, an exception message, a repr or a
  statistics dict; errors name the input (``what``), never its value.
- A plaintext key touches no disk: it goes through a memfd, else a 0600 file in
  a private 0700 directory (RAM-backed when ``/dev/shm`` exists) that is
  removed as soon as OpenSSL has read it.
- ``CertStore.context`` is one object for the store's whole life; adding or
  removing certificates swaps the name table in one assignment, so listeners
  never rewrap and a handshake sees either the old table or the new one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import shutil
import ssl
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from pylb.core.errors import ConfigError

__all__ = [
    "CIPHERS",
    "CertBundle",
    "CertStore",
    "bundle_from_file",
    "bundles_from_env",
    "bundles_from_folder",
    "load_into",
    "new_server_context",
    "parse_pem_bundle",
    "server_context",
]

# Mozilla "intermediate" for TLS 1.2, minus DHE: forward secrecy by ECDHE and
# AEAD ciphers only (no CBC, no RSA key exchange). TLS 1.3 suites are all AEAD.
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:@SECLEVEL=2"
)
ALPN = ("http/1.1",)
HINT = "see docs/tls.md"

_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_ENCRYPTED = "the private key is encrypted; remove the passphrase: openssl pkey -in key.pem -out key.pem"
_PUBLIC = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A private key and its certificate chain, checked to belong together.

    ``names`` are the leaf's DNS names (SAN dNSName entries, lowercased; the CN
    only when the certificate has no SAN). ``fingerprint`` is the SHA-256 of the
    leaf in hex: the certificate's identity in logs and in ``CertStore.remove``.
    ``source`` names where it came from (``SSL_CERT``, a file) for messages.
    """

    key_pem: str = field(repr=False)
    chain_pem: str = field(repr=False)
    names: tuple[str, ...]
    not_after: datetime
    fingerprint: str
    expired: bool = False
    source: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """Short, safe description for log lines."""
        return (
            f"{self.source or 'certificate'} [{', '.join(self.names) or 'no DNS names'}] sha256:{self.fingerprint[:16]}"
        )


# -- parsing ------------------------------------------------------------------


def parse_pem_bundle(text: str, what: str, *, now: datetime | None = None) -> CertBundle:
    """Parse PEM text holding one private key and its certificate chain, in any
    order, with real or ``\\n``-escaped newlines.

    Raises ConfigError (one line naming ``what``, never quoting ``text``) for
    text that is not PEM, a missing or encrypted key, several keys, no
    certificate, or a key that matches no certificate. An expired certificate
    is returned with ``expired=True``: warning about it is the caller's job.
    """
    blocks = _BLOCK.findall(_normalize(text))
    if not blocks:
        raise ConfigError(f"{what}: {_not_pem_reason(text)}")
    keys = [(label, body) for label, body in blocks if label.endswith("PRIVATE KEY")]
    certs = [(label, body) for label, body in blocks if label in ("CERTIFICATE", "X509 CERTIFICATE")]
    if not keys:
        raise ConfigError(f"{what}: no private key found (the PEM must hold the key and the certificate; {HINT})")
    if len(keys) > 1:
        raise ConfigError(f"{what}: {len(keys)} private keys found; keep only the certificate's key ({HINT})")
    if not certs:
        raise ConfigError(f"{what}: no certificate found (the PEM must hold the key and the certificate; {HINT})")
    key = _load_key(*keys[0], what)
    chain = [_load_cert(body, what, n, len(certs)) for n, (_, body) in enumerate(certs, 1)]
    leaf = _leaf_for(key.public_key().public_bytes(*_PUBLIC), chain, what)
    ordered = _order_chain(leaf, chain)
    not_after = leaf.not_valid_after_utc
    return CertBundle(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii"),
        chain_pem="".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in ordered),
        names=_dns_names(leaf),
        not_after=not_after,
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        expired=not_after <= (now or datetime.now(UTC)),
        source=what,
    )


def _normalize(text: str) -> str:
    text = text.strip().strip("'\"").strip()
    return text.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n").replace("\r", "\n")


def _not_pem_reason(text: str) -> str:
    if not text.strip():
        return f"is empty (it must hold the PEM key and certificate; {HINT})"
    if text.strip().strip("'\"").startswith(("/", "./")):
        return f"holds no PEM block; it must hold the PEM text itself, not a file path ({HINT})"
    return f"not a PEM bundle: no PEM blocks found (the PEM must hold the key and the certificate; {HINT})"


def _der(body: str) -> bytes:
    # Whitespace-agnostic: tolerates lines joined by spaces or indented lines.
    return base64.b64decode("".join(body.split()), validate=True)


def _load_key(label: str, body: str, what: str) -> PrivateKeyTypes:
    if "ENCRYPTED" in label or "ENCRYPTED" in body:
        raise ConfigError(
            f"{what}: the private key is encrypted; remove the passphrase: openssl pkey -in key.pem -out key.pem"
        )
    try:
        lines = "\n".join(_wrap("".join(body.split())))
        return serialization.load_pem_private_key(
            f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode(), None
        )
    except TypeError:
        raise ConfigError(f"{what}: {_ENCRYPTED}") from None
    except Exception:
        raise ConfigError(f"{what}: the private key could not be read (truncated or not a key? {HINT})") from None


def _wrap(b64: str) -> list[str]:
    return [b64[i : i + 64] for i in range(0, len(b64), 64)]


def _load_cert(body: str, what: str, n: int, total: int) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(_der(body))
    except (ValueError, binascii.Error):
        raise ConfigError(f"{what}: certificate {n} of {total} could not be read (truncated? {HINT})") from None


def _leaf_for(public: bytes, chain: list[x509.Certificate], what: str) -> x509.Certificate:
    for cert in chain:
        if cert.public_key().public_bytes(*_PUBLIC) == public:
            return cert
    raise ConfigError(
        f"{what}: the private key does not match the certificate (compare `openssl x509 -noout -pubkey` "
        f"with `openssl pkey -pubout`; {HINT})"
    )


def _order_chain(leaf: x509.Certificate, chain: list[x509.Certificate]) -> list[x509.Certificate]:
    """Leaf first, then each issuer in turn; certificates off that path keep
    their order at the end (OpenSSL sends them; clients ignore what they don't need)."""
    ordered, rest = [leaf], [c for c in chain if c is not leaf and c != leaf]
    while (issuer := next((c for c in rest if c.subject == ordered[-1].issuer), None)) is not None:
        ordered.append(issuer)
        rest.remove(issuer)
    return ordered + rest


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    else:
        names = san.get_values_for_type(x509.DNSName)
    return tuple(dict.fromkeys(_canonical(n) for n in names if n))


def _canonical(name: str) -> str:
    return name.strip().rstrip(".").lower()


# -- loading from memory -----------------------------------------------------


def load_into(context: ssl.SSLContext, bundle: CertBundle) -> None:
    """Load ``bundle`` into ``context`` (``load_cert_chain`` only takes paths).

    The PEMs go through memfds (``/proc/self/fd/N``); where those are missing,
    through 0600 files in a fresh 0700 directory removed before returning.
    Raises ConfigError naming ``bundle.source`` if OpenSSL refuses them.
    """
    pems = (bundle.chain_pem, bundle.key_pem)
    try:
        with contextlib.ExitStack() as stack:
            try:
                chain_path, key_path = stack.enter_context(_memfd_files(pems))
            except OSError:
                chain_path, key_path = stack.enter_context(_private_files(pems))
            context.load_cert_chain(chain_path, key_path)
    except ssl.SSLError as exc:
        reason = exc.reason or exc.__class__.__name__
        raise ConfigError(
            f"{bundle.source or 'certificate'}: OpenSSL refused the key or certificate ({reason})"
        ) from None


@contextlib.contextmanager
def _memfd_files(pems: Sequence[str]) -> Iterator[list[str]]:
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        raise OSError("memfd unavailable")
    fds: list[int] = []
    try:
        for pem in pems:
            fds.append(os.memfd_create("pylb-tls", os.MFD_CLOEXEC))
            with open(fds[-1], "w", encoding="ascii", closefd=False) as file:
                file.write(pem)
        yield [f"/proc/self/fd/{fd}" for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


@contextlib.contextmanager
def _private_files(pems: Sequence[str]) -> Iterator[list[str]]:
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="pylb-tls-", dir=shm)  # mode 0700
    try:
        paths = []
        for n, pem in enumerate(pems):
            path = os.path.join(folder, f"{n}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(pem)
            paths.append(path)
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- server contexts and SNI ---------------------------------------------------


def new_server_context() -> ssl.SSLContext:
    """A server context with pylb's hardening and no certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
        | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    )
    context.set_alpn_protocols(list(ALPN))
    return context


class _Entry:
    __slots__ = ("bundle", "context", "dynamic")

    def __init__(self, bundle: CertBundle, dynamic: bool) -> None:
        self.bundle, self.dynamic = bundle, dynamic
        self.context = new_server_context()
        load_into(self.context, bundle)


class CertStore:
    """The certificates a TLS listener serves, chosen per handshake by SNI.

    Wrap sockets with ``context``: its SNI callback looks the client's server
    name up (exact name first, then a one-level wildcard) in a table swapped
    atomically by ``add``, ``remove``, ``replace_dynamic`` and ``set_default``,
    and falls back to the default certificate. When several certificates claim
    a name, the one valid longest (latest ``not_after``) wins.
    """

    def __init__(self, default: CertBundle, others: Iterable[CertBundle] = ()) -> None:
        self._default = _Entry(default, dynamic=False)
        self.context: ssl.SSLContext = self._default.context
        self.context.sni_callback = self._on_server_name
        self._entries: dict[str, _Entry] = {default.fingerprint: self._default}
        self._names: dict[str, ssl.SSLContext] = {}
        self._selected = {"exact": 0, "wildcard": 0, "default": 0}
        self._install({**self._entries, **self._build(others, dynamic=False)})

    @property
    def default(self) -> CertBundle:
        return self._default.bundle

    @property
    def bundles(self) -> tuple[CertBundle, ...]:
        return tuple(entry.bundle for entry in self._entries.values())

    def add(self, bundle: CertBundle) -> bool:
        """Serve ``bundle`` from the next handshake on; False if already served."""
        if bundle.fingerprint in self._entries:
            return False
        self._install({**self._entries, **self._build([bundle], dynamic=True)})
        return True

    def remove(self, fingerprint: str) -> bool:
        """Stop serving a certificate; False if unknown. The default stays
        (replace it with ``set_default``)."""
        if fingerprint == self._default.bundle.fingerprint:
            raise ValueError("the default certificate cannot be removed; use set_default()")
        if fingerprint not in self._entries:
            return False
        self._install({fp: e for fp, e in self._entries.items() if fp != fingerprint})
        return True

    def replace_dynamic(self, bundles: Iterable[CertBundle]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Make the run-time certificates exactly ``bundles`` (the ones given
        at construction stay); returns the fingerprints (added, removed).
        Unchanged certificates keep their context; all contexts are built
        before the swap, so a bad bundle changes nothing."""
        wanted = {b.fingerprint: b for b in bundles}
        kept = {fp: e for fp, e in self._entries.items() if not e.dynamic or fp in wanted}
        fresh = self._build((b for fp, b in wanted.items() if fp not in kept), dynamic=True)
        removed = tuple(fp for fp in self._entries if fp not in kept)
        self._install({**kept, **fresh})
        return tuple(fresh), removed

    def set_default(self, bundle: CertBundle) -> None:
        """Serve ``bundle`` to clients whose name matches nothing (or who send
        none). ``context`` stays the same object; the old default is dropped."""
        if bundle.fingerprint == self._default.bundle.fingerprint:
            return
        entry = self._entries.get(bundle.fingerprint) or _Entry(bundle, dynamic=False)
        entry.dynamic = False
        entries = {fp: e for fp, e in self._entries.items() if e is not self._default}
        self._default = entry
        self._install({bundle.fingerprint: entry, **entries})

    def select(self, server_name: str | None) -> tuple[ssl.SSLContext, str]:
        """The context for ``server_name`` and how it matched: exact, wildcard or default."""
        if server_name:
            names, name = self._names, _canonical(server_name)
            if (context := names.get(name)) is not None:
                return context, "exact"
            parent = name.partition(".")[2]
            if parent and (context := names.get("*." + parent)) is not None:
                return context, "wildcard"
        return self._default.context, "default"

    def _on_server_name(self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        # OpenSSL calls this for every handshake, with None when the client
        # sends no SNI, so a replaced default is picked up here too.
        context, how = self.select(server_name)
        self._selected[how] += 1
        if conn.context is not context:
            conn.context = context

    def _build(self, bundles: Iterable[CertBundle], dynamic: bool) -> dict[str, _Entry]:
        new = {b.fingerprint: b for b in bundles if b.fingerprint not in self._entries}
        return {fp: _Entry(b, dynamic) for fp, b in new.items()}

    def _install(self, entries: dict[str, _Entry]) -> None:
        ranked = sorted(entries.values(), key=lambda e: e.bundle.not_after, reverse=True)
        names: dict[str, ssl.SSLContext] = {}
        for entry in ranked:
            for name in entry.bundle.names:
                names.setdefault(name, entry.context)
        self._entries, self._names = entries, names

    def statistics(self) -> dict[str, object]:
        bundles = self.bundles
        return {
            "certificates": len(bundles),
            "dynamic": sum(e.dynamic for e in self._entries.values()),
            "expired": sum(b.expired for b in bundles),
            "names": sorted(self._names),
            "default": self._default.bundle.label,
            "selected": dict(self._selected),
        }

    def __repr__(self) -> str:
        names = sorted(self._names)
        shown = ", ".join(names[:8]) + (f", ... {len(names) - 8} more" if len(names) > 8 else "")
        default = self._default.bundle.names[0] if self._default.bundle.names else "(no DNS names)"
        return f"<CertStore certificates={len(self._entries)} names={len(names)} [{shown}] default={default}>"


def server_context(default: CertBundle, others: Sequence[CertBundle] = ()) -> CertStore:
    """A CertStore serving ``default`` plus ``others`` by SNI; wrap with ``.context``."""
    return CertStore(default, others)


# -- sources -------------------------------------------------------------------


def bundles_from_env(env: Mapping[str, str]) -> list[CertBundle]:
    """``DEFAULT_SSL_CERT`` then ``SSL_CERT`` (the first is the default when
    both are set); blank ones are skipped and a repeated certificate kept once."""
    found: dict[str, CertBundle] = {}
    for name in ("DEFAULT_SSL_CERT", "SSL_CERT"):
        if env.get(name, "").strip():
            bundle = parse_pem_bundle(env[name], name)
            found.setdefault(bundle.fingerprint, bundle)
    return list(found.values())


def bundles_from_folder(path: str | os.PathLike[str], what: str = "CERT_FOLDER") -> list[CertBundle]:
    """Every ``*.pem`` file in ``path``, sorted by name, each a bundle."""
    try:
        files = sorted(entry.path for entry in os.scandir(path) if entry.name.endswith(".pem") and entry.is_file())
    except OSError as exc:
        raise ConfigError(f"{what}: cannot list folder {os.fspath(path)!r} ({exc.strerror})") from None
    return [bundle_from_file(file, what) for file in files]


def bundle_from_file(path: str | os.PathLike[str], what: str = "--ssl-cert") -> CertBundle:
    """The bundle in one PEM file; errors name ``what`` and the file."""
    label = f"{what} {os.fspath(path)}"
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read the file ({exc.strerror})") from None
    return parse_pem_bundle(data.decode("utf-8", "replace"), label)


_PrivateKey = "rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey"  # documentation only
