"""pylb.tls: PEM bundles, loading keys without disk, hardened contexts, SNI.

Handshakes run over in-memory BIO pairs: no sockets, no trio, no sleeps.
"""

from __future__ import annotations

import os
import ssl
import stat
import tempfile
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pylb import tls
from pylb.core.errors import ConfigError
from pylb.tls import CertBundle, CertStore

# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaves(ca: trustme.CA) -> dict[str, trustme.LeafCert]:
    return {
        "default": ca.issue_cert("default.test"),
        "a": ca.issue_cert("a.test", "www.a.test"),
        "wild": ca.issue_cert("*.w.test", key_type=trustme.KeyType.RSA),
        "other": ca.issue_cert("other.test"),
        "new": ca.issue_cert("new.test"),
    }


def key_pem(leaf: trustme.LeafCert) -> str:
    return leaf.private_key_pem.bytes().decode()


def chain_pem(leaf: trustme.LeafCert) -> str:
    return "".join(blob.bytes().decode() for blob in leaf.cert_chain_pems)


def bundle(leaf: trustme.LeafCert, what: str = "SSL_CERT") -> CertBundle:
    return tls.parse_pem_bundle(key_pem(leaf) + chain_pem(leaf), what)


def escaped(pem: str) -> str:
    """What ``awk 1 ORS='\\n' cert.pem`` prints."""
    return pem.replace("\n", "\\n")


def self_signed(
    names: tuple[str, ...] = (), cn: str = "cn.test", key: rsa.RSAPrivateKey | None = None
) -> tuple[str, str]:
    """(key PEM, certificate PEM), for shapes trustme does not make."""
    private = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    cert = builder.sign(private, hashes.SHA256())
    pkcs8 = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pkcs8.decode(), cert.public_bytes(serialization.Encoding.PEM).decode()


def encrypted(leaf: trustme.LeafCert, form: serialization.PrivateFormat) -> str:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    return key.private_bytes(
        serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(b"passphrase")
    ).decode()


class Refused(Exception):
    """The server side of a handshake failed."""


def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str | None
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a TLS handshake between two SSLObjects over memory BIOs."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, obj in (("client", client), ("server", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                if side == "server":
                    raise Refused(exc.reason) from exc
                raise
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return client, server
    raise AssertionError("handshake did not finish")


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())


def names_seen(client: ssl.SSLObject) -> set[str]:
    cert = client.getpeercert()
    assert cert
    return {str(entry[1]) for entry in cert["subjectAltName"] if entry[0] == "DNS"}


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """One line, and no trace of the input anywhere in the exception."""
    message = str(exc)
    assert "\n" not in message
    rendered = "".join(traceback.format_exception(exc))
    assert "-----" not in message and "BEGIN" not in message
    for secret in secrets:
        for line in secret.replace("\\n", "\n").splitlines():
            if len(line.strip()) >= 8 and "-----" not in line:
                assert line.strip() not in rendered


# -- parsing -------------------------------------------------------------------


def test_parse_key_first_real_newlines(leaves: dict[str, trustme.LeafCert]) -> None:
    leaf = leaves["a"]
    got = tls.parse_pem_bundle(leaf.private_key_and_cert_chain_pem.bytes().decode(), "SSL_CERT")
    assert got.names == ("a.test", "www.a.test")
    assert not got.expired and got.not_after.tzinfo is not None and got.not_after > datetime.now(UTC)
    leaf_cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    assert got.fingerprint == leaf_cert.fingerprint(hashes.SHA256()).hex()
    assert got.chain_pem.startswith(leaf.cert_chain_pems[0].bytes().decode())
    assert "PRIVATE KEY" in got.key_pem and "PRIVATE KEY" not in got.chain_pem
    assert got.source == "SSL_CERT"


@pytest.mark.parametrize(
    "shape",
    [
        lambda k, c: escaped(c + k),
        lambda k, c: escaped(k + c),
        lambda k, c: '"' + escaped(c + k) + '"\n',
        lambda k, c: "  '" + (c + k).replace("\n", "\r\n") + "'  ",
        lambda k, c: escaped(c + k).replace("\\n", "\\r\\n"),
        lambda k, c: (c + k).replace("\n", " ").replace("----- ", "-----\n").replace(" -----", "\n-----"),
    ],
    ids=["escaped-cert-first", "escaped-key-first", "quoted", "crlf", "escaped-crlf", "spaces"],
)
def test_parse_tolerates_shapes(leaves: dict[str, trustme.LeafCert], shape: Callable[[str, str], str]) -> None:
    leaf = leaves["a"]
    assert tls.parse_pem_bundle(shape(key_pem(leaf), chain_pem(leaf)), "SSL_CERT") == bundle(leaf)


def test_parse_orders_chain_leaf_first(ca: trustme.CA) -> None:
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("chain.test")
    leaf_pem, intermediate_pem = (blob.bytes().decode() for blob in leaf.cert_chain_pems)
    got = tls.parse_pem_bundle(intermediate_pem + key_pem(leaf) + leaf_pem, "SSL_CERT")
    assert got.chain_pem == leaf_pem + intermediate_pem
    assert got.names == ("chain.test",)


def test_names_from_san_lowercased_cn_ignored() -> None:
    key, cert = self_signed(("Mixed.Example.TEST.", "*.Wild.test"), cn="ignored.test")
    assert tls.parse_pem_bundle(key + cert, "SSL_CERT").names == ("mixed.example.test", "*.wild.test")


def test_names_from_cn_without_san() -> None:
    key, cert = self_signed((), cn="Legacy.Test")
    assert tls.parse_pem_bundle(cert + key, "SSL_CERT").names == ("legacy.test",)


def test_expired_is_flagged_not_refused(ca: trustme.CA) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    leaf = ca.issue_cert("old.test", not_before=past - timedelta(days=30), not_after=past)
    got = bundle(leaf)
    assert got.expired and got.not_after < datetime.now(UTC)
    fresh = tls.parse_pem_bundle(key_pem(leaf) + chain_pem(leaf), "SSL_CERT", now=past - timedelta(days=2))
    assert not fresh.expired


def test_bundle_repr_shows_no_key(leaves: dict[str, trustme.LeafCert]) -> None:
    got = bundle(leaves["a"])
    text = repr(got) + got.label
    assert "a.test" in text and got.fingerprint[:16] in text
    assert "PRIVATE" not in text and "BEGIN" not in text


Leaves = dict[str, trustme.LeafCert]
BAD_CASES: dict[str, tuple[Callable[[Leaves], str], str]] = {
    "garbage": (lambda _leaves: "s3cr3t-value that is surely not a certificate", "not a PEM bundle"),
    "empty": (lambda _leaves: "  \n ", "is empty"),
    "path": (lambda _leaves: "/etc/ssl/private/site.pem", "not a file path"),
    "no-key": (lambda lv: chain_pem(lv["a"]), "no private key found"),
    "no-cert": (lambda lv: key_pem(lv["a"]), "no certificate found"),
    "encrypted-pkcs8": (
        lambda lv: encrypted(lv["a"], serialization.PrivateFormat.PKCS8) + chain_pem(lv["a"]),
        "openssl pkey -in key.pem -out key.pem",
    ),
    "encrypted-legacy": (
        lambda lv: escaped(encrypted(lv["a"], serialization.PrivateFormat.TraditionalOpenSSL) + chain_pem(lv["a"])),
        "remove the passphrase",
    ),
    "mismatch": (lambda lv: key_pem(lv["a"]) + chain_pem(lv["other"]), "does not match the certificate"),
    "several-keys": (lambda lv: key_pem(lv["a"]) + key_pem(lv["other"]) + chain_pem(lv["a"]), "2 private keys"),
    "corrupt-key": (lambda lv: key_pem(lv["a"]).replace("\n", "\nAAAA", 2) + chain_pem(lv["a"]), "private key could"),
    "corrupt-cert": (lambda lv: key_pem(lv["a"]) + chain_pem(lv["a"]).replace("\n", "\n!!", 2), "certificate 1 of"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_bundles_give_one_clean_line(leaves: dict[str, trustme.LeafCert], case: str) -> None:
    make, expected = BAD_CASES[case]
    text = make(leaves)
    with pytest.raises(ConfigError) as info:
        tls.parse_pem_bundle(text, "SSL_CERT")
    assert str(info.value).startswith("SSL_CERT: ")
    assert expected in str(info.value)
    assert_clean(info.value, text, "s3cr3t", "/etc/ssl/private")


# -- loading without a plaintext key on disk ------------------------------------


class Recording(ssl.SSLContext):
    """Notes what the paths given to load_cert_chain look like while loading."""

    seen: list[dict[str, object]]

    def load_cert_chain(self, certfile: object, keyfile: object = None, password: object = None) -> None:
        self.seen = []
        for path in (certfile, keyfile):
            assert isinstance(path, str)
            info = os.stat(path)
            link = os.readlink(path) if path.startswith("/proc/self/fd/") else None
            parent = os.stat(os.path.dirname(path)) if link is None else None
            self.seen.append({"path": path, "mode": stat.S_IMODE(info.st_mode), "link": link, "parent": parent})
        super().load_cert_chain(certfile, keyfile)  # type: ignore[arg-type]


def temp_listing() -> set[str]:
    roots = [tempfile.gettempdir()] + (["/dev/shm"] if os.path.isdir("/dev/shm") else [])
    return {os.path.join(root, name) for root in roots for name in os.listdir(root)}


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="no memfd on this platform")
def test_load_uses_memfd_and_leaves_nothing(leaves: dict[str, trustme.LeafCert]) -> None:
    before = temp_listing()
    context = Recording(ssl.PROTOCOL_TLS_SERVER)
    tls.load_into(context, bundle(leaves["a"]))
    assert [str(s["link"]).startswith("/memfd:pylb-tls") for s in context.seen] == [True, True]
    for seen in context.seen:
        try:
            after = os.readlink(str(seen["path"]))
        except OSError:
            continue  # the fd is closed
        assert after != seen["link"]
    assert temp_listing() == before


def test_load_falls_back_to_private_temp_files(
    leaves: dict[str, trustme.LeafCert], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    before = temp_listing()
    context = Recording(ssl.PROTOCOL_TLS_SERVER)
    tls.load_into(context, bundle(leaves["a"]))
    folders = {os.path.dirname(str(s["path"])) for s in context.seen}
    assert len(folders) == 1
    for seen in context.seen:
        assert seen["link"] is None and seen["mode"] == 0o600
        parent = seen["parent"]
        assert isinstance(parent, os.stat_result) and stat.S_IMODE(parent.st_mode) == 0o700
    assert not any(os.path.exists(folder) for folder in folders)
    assert temp_listing() == before


def test_load_refused_by_openssl_is_a_clean_config_error() -> None:
    key, cert = self_signed(("weak.test",), key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    weak = tls.parse_pem_bundle(key + cert, "SSL_CERT")
    with pytest.raises(ConfigError, match=r"^SSL_CERT: OpenSSL refused the key or certificate \(") as info:
        tls.load_into(tls.new_server_context(), weak)
    assert_clean(info.value, key, cert)


# -- hardening -----------------------------------------------------------------


@pytest.fixture(scope="module")
def store(leaves: dict[str, trustme.LeafCert]) -> CertStore:
    return tls.server_context(bundle(leaves["default"]), [bundle(leaves["a"]), bundle(leaves["wild"])])


def test_context_settings() -> None:
    context = tls.new_server_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    # OP_SINGLE_ECDH_USE is 0 on OpenSSL >= 1.1 (always on); asking for it costs nothing.
    wanted = ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    wanted |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    assert context.options & wanted == wanted
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(n.startswith("ECDHE-") and ("GCM" in n or "CHACHA20" in n) for n in tls12)
    assert all(c["aead"] for c in context.get_ciphers())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls11_client_refused(ca: trustme.CA, store: CertStore) -> None:
    client = client_context(ca)
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(Refused, match=r"UNSUPPORTED_PROTOCOL|VERSION"):
        handshake(store.context, client, "a.test")


@pytest.fixture(scope="module")
def rsa_store(ca: trustme.CA) -> CertStore:
    # An RSA certificate, so RSA-authenticated suites are refused only for their cipher.
    return tls.server_context(bundle(ca.issue_cert("rsa.test", key_type=trustme.KeyType.RSA)))


CBC_OR_RSA_KX = ["AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "AES128-GCM-SHA256"]


@pytest.mark.parametrize("cipher", CBC_OR_RSA_KX)
def test_tls12_cbc_and_rsa_key_exchange_refused(ca: trustme.CA, rsa_store: CertStore, cipher: str) -> None:
    client = client_context(ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(cipher)
    with pytest.raises(Refused, match="NO_SHARED_CIPHER"):
        handshake(rsa_store.context, client, "rsa.test")


def test_tls12_ecdhe_gcm_accepted(ca: trustme.CA, rsa_store: CertStore) -> None:
    client = client_context(ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    conn, _ = handshake(rsa_store.context, client, "rsa.test")
    assert conn.version() == "TLSv1.2"
    assert conn.cipher() == ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2", 128)


@pytest.mark.parametrize("name", ["default.test", "a.test", "x.w.test"])
def test_alpn_http11_never_h2(ca: trustme.CA, store: CertStore, name: str) -> None:
    client = client_context(ca)
    client.set_alpn_protocols(["h2", "http/1.1"])
    assert handshake(store.context, client, name)[0].selected_alpn_protocol() == "http/1.1"
    client = client_context(ca)
    client.set_alpn_protocols(["h2"])
    assert handshake(store.context, client, name)[0].selected_alpn_protocol() is None


# -- SNI -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("a.test", {"a.test", "www.a.test"}),
        ("www.a.test", {"a.test", "www.a.test"}),
        ("x.w.test", {"*.w.test"}),
        ("w.test", {"default.test"}),
        ("y.x.w.test", {"default.test"}),
        ("unknown.test", {"default.test"}),
        (None, {"default.test"}),
    ],
)
def test_sni_picks_certificate(ca: trustme.CA, store: CertStore, server_name: str | None, expected: set[str]) -> None:
    client = client_context(ca)
    if server_name is None or expected == {"default.test"}:
        client.check_hostname = False  # the default certificate does not name it
    conn, _ = handshake(store.context, client, server_name)
    assert names_seen(conn) == expected


def test_select_is_case_insensitive_and_ignores_trailing_dot(store: CertStore) -> None:
    by_name = {b.names[0]: b for b in store.bundles}
    assert store.select("A.TEST.") == (store.select("a.test")[0], "exact")
    assert store.select("X.W.Test.")[1] == "wildcard"
    assert store.select("")[0] is store.select(None)[0] is store.context
    assert store.select("www.a.test")[0] is not store.context
    assert set(by_name) == {"default.test", "a.test", "*.w.test"}


def test_runtime_add_remove_replace(ca: trustme.CA, leaves: dict[str, trustme.LeafCert]) -> None:
    store = tls.server_context(bundle(leaves["default"]), [bundle(leaves["a"])])
    listener_context = store.context
    client = client_context(ca)
    client.check_hostname = False

    def seen(name: str) -> set[str]:
        return names_seen(handshake(listener_context, client, name)[0])

    assert seen("new.test") == {"default.test"}
    new = bundle(leaves["new"])
    assert store.add(new) and not store.add(new)
    assert seen("new.test") == {"new.test"}
    assert store.remove(new.fingerprint) and not store.remove(new.fingerprint)
    assert seen("new.test") == {"default.test"}

    other, wild = bundle(leaves["other"]), bundle(leaves["wild"])
    assert store.replace_dynamic([new, other]) == ((new.fingerprint, other.fingerprint), ())
    kept = store.select("new.test")[0]
    assert store.replace_dynamic([new, wild]) == ((wild.fingerprint,), (other.fingerprint,))
    assert store.select("new.test")[0] is kept  # built once, reused
    assert seen("other.test") == {"default.test"} and seen("z.w.test") == {"*.w.test"}
    assert store.replace_dynamic([]) == ((), (new.fingerprint, wild.fingerprint))
    assert seen("a.test") == {"a.test", "www.a.test"}  # given at construction: static
    assert store.context is listener_context
    with pytest.raises(ValueError, match="default"):
        store.remove(store.default.fingerprint)


def test_set_default_keeps_the_listener_context(ca: trustme.CA, leaves: dict[str, trustme.LeafCert]) -> None:
    store = tls.server_context(bundle(leaves["default"]))
    listener_context = store.context
    store.set_default(bundle(leaves["other"]))
    client = client_context(ca)
    client.check_hostname = False
    assert names_seen(handshake(listener_context, client, None)[0]) == {"other.test"}
    assert names_seen(handshake(listener_context, client, "default.test")[0]) == {"other.test"}
    assert store.context is listener_context and len(store.bundles) == 1


def test_longest_valid_certificate_wins_a_shared_name(ca: trustme.CA, leaves: dict[str, trustme.LeafCert]) -> None:
    soon = datetime.now(UTC) + timedelta(days=1)
    short = bundle(ca.issue_cert("shared.test", "short.test", not_after=soon))
    long = bundle(ca.issue_cert("shared.test", "long.test"))
    for order in ([short, long], [long, short]):
        store = tls.server_context(bundle(leaves["default"]), order)
        assert store.select("shared.test")[0] is store.select("long.test")[0]


def test_statistics_and_repr(ca: trustme.CA, store: CertStore) -> None:
    client = client_context(ca)
    before = store.statistics()["selected"]
    assert isinstance(before, dict)
    handshake(store.context, client, "x.w.test")
    stats = store.statistics()
    assert stats["certificates"] == 3 and stats["dynamic"] == 0 and stats["expired"] == 0
    assert stats["names"] == ["*.w.test", "a.test", "default.test", "www.a.test"]
    assert stats["selected"] == {**before, "wildcard": before["wildcard"] + 1}
    text = repr(store) + repr(stats)
    assert "certificates=3" in text and "names=4" in text and "default=default.test" in text
    assert "PRIVATE" not in text and "BEGIN" not in text
    for b in store.bundles:
        assert b.key_pem.splitlines()[1] not in text


# -- sources -------------------------------------------------------------------


def test_bundles_from_env(leaves: dict[str, trustme.LeafCert]) -> None:
    a, d = bundle(leaves["a"]), bundle(leaves["default"])
    env = {
        "SSL_CERT": escaped(key_pem(leaves["a"]) + chain_pem(leaves["a"])),
        "DEFAULT_SSL_CERT": chain_pem(leaves["default"]) + key_pem(leaves["default"]),
    }
    assert [b.fingerprint for b in tls.bundles_from_env(env)] == [d.fingerprint, a.fingerprint]
    assert tls.bundles_from_env({"SSL_CERT": env["SSL_CERT"]}) == [a]
    assert tls.bundles_from_env({"SSL_CERT": env["SSL_CERT"], "DEFAULT_SSL_CERT": env["SSL_CERT"]}) == [a]
    assert tls.bundles_from_env({"DEFAULT_SSL_CERT": " "}) == []
    with pytest.raises(ConfigError, match=r"^SSL_CERT: no certificate found") as info:
        tls.bundles_from_env({**env, "SSL_CERT": key_pem(leaves["a"])})
    assert_clean(info.value, key_pem(leaves["a"]))


@pytest.fixture
def folder(tmp_path: Path, leaves: dict[str, trustme.LeafCert]) -> Path:
    for name, leaf in (("b.pem", leaves["wild"]), ("a.pem", leaves["a"])):
        (tmp_path / name).write_text(key_pem(leaf) + chain_pem(leaf))
    (tmp_path / "notes.txt").write_text("not a certificate")
    (tmp_path / "dir.pem").mkdir()
    return tmp_path


def test_bundles_from_folder(folder: Path) -> None:
    got = tls.bundles_from_folder(folder)
    assert [b.names[0] for b in got] == ["a.test", "*.w.test"]
    assert got[0].source == f"CERT_FOLDER {folder / 'a.pem'}"


def test_folder_bad_file_names_the_file_not_the_content(folder: Path, leaves: dict[str, trustme.LeafCert]) -> None:
    (folder / "c.pem").write_text(key_pem(leaves["a"]))
    with pytest.raises(ConfigError, match=r"^CERT_FOLDER .*c\.pem: no certificate found") as info:
        tls.bundles_from_folder(folder)
    assert_clean(info.value, key_pem(leaves["a"]))


def test_folder_unreadable_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object, mode: str = "r") -> Iterator[bytes]:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(tls, "open", refuse, raising=False)
    with pytest.raises(ConfigError, match=r"^CERT_FOLDER .*a\.pem: cannot read the file \(Permission denied\)$"):
        tls.bundles_from_folder(folder)


def test_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^CERT_FOLDER: cannot list folder .*\(No such file or directory\)$"):
        tls.bundles_from_folder(tmp_path / "absent")


def test_bundle_from_file(folder: Path) -> None:
    assert tls.bundle_from_file(folder / "a.pem").names == ("a.test", "www.a.test")
    with pytest.raises(ConfigError, match=r"^--ssl-cert .*absent\.pem: cannot read the file"):
        tls.bundle_from_file(folder / "absent.pem")
    with pytest.raises(ConfigError, match=r"^--ssl-cert .*notes\.txt: not a PEM bundle"):
        tls.bundle_from_file(folder / "notes.txt")
