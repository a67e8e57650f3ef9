"""``tls=`` takes what a test has at hand (pylb.open_balancer and the test kit)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

import pylb
from pylb.testing import open_backends, open_test_balancer

FORMS: dict[str, Callable[[trustme.CA, Path], object]] = {
    "a trustme CA": lambda ca, tmp: ca,
    "a trustme LeafCert": lambda ca, tmp: ca.issue_cert("127.0.0.1", "localhost"),
    "a trustme Blob": lambda ca, tmp: ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem,
    "PEM text": lambda ca, tmp: ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.bytes().decode(),
    "PEM bytes": lambda ca, tmp: ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.bytes(),
    "a pathlib.Path": lambda ca, tmp: write(ca, tmp),
    "a str path": lambda ca, tmp: str(write(ca, tmp)),
    "an SSLContext": lambda ca, tmp: server_context(ca),
}


def write(ca: trustme.CA, tmp: Path) -> Path:
    path = tmp / "bundle.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.mark.parametrize("form", FORMS)
async def test_every_form_serves_https(form: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    tls = FORMS[form](ca, tmp_path)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with open_backends(1) as (one,), open_test_balancer([one], tls=tls) as lb:
        assert lb.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(verify=client_context) as client:
            assert (await client.get(lb.url)).text == "Hello from backend-1\n"
        async with httpx.AsyncClient() as client:
            assert (await client.get(lb.http_url)).status_code == 200  # plain http keeps serving


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (Path("/nonexistent/bundle.pem"), r"tls /nonexistent/bundle.pem: cannot read the file \(No such file"),
        ("missing.pem", r"tls missing.pem: cannot read the file"),
        (trustme.CA().cert_pem, "tls: no private key found"),  # a CA's certificate Blob: no key in it
        (42, "tls: expected an SSLContext, PEM text or bytes, a path to a PEM file, or a trustme CA"),
    ],
)
async def test_what_is_not_a_certificate_gets_one_line(tls: object, message: str) -> None:
    with pytest.raises(pylb.ConfigError, match=message):
        async with pylb.open_balancer([], tls=tls):
            pass


async def test_client_ssl_context_trusts_the_ca_given() -> None:
    ca = trustme.CA()
    async with open_backends(1) as (one,), open_test_balancer([one], tls=ca) as lb:
        async with httpx.AsyncClient(verify=lb.client_ssl_context()) as client:
            assert (await client.get(lb.url)).status_code == 200
    async with open_test_balancer([], tls=ca.issue_cert("127.0.0.1")) as lb:
        with pytest.raises(pylb.ConfigError, match=r"client_ssl_context: give tls=<a trustme\.CA>"):
            lb.client_ssl_context()
