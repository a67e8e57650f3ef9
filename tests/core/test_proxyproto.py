import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylb.core import proxyproto
from pylb.core.proxyproto import ProxyHeader, ProxyProtocolError

V4 = (("192.0.2.1", 5000), ("198.51.100.2", 80))
V6 = (("2001:db8::1", 5000), ("2001:db8::2", 443))


def test_v1_bytes_are_haproxys() -> None:
    assert proxyproto.encode("v1", *V4) == b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 80\r\n"
    assert proxyproto.encode("v1", *V6) == b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 443\r\n"


def test_v2_bytes_are_haproxys() -> None:
    header = proxyproto.encode("v2", *V4)
    assert header[:12] == b"\r\n\r\n\x00\r\nQUIT\n"
    assert header[12:16] == b"\x21\x11\x00\x0c"
    assert header[16:] == bytes([192, 0, 2, 1, 198, 51, 100, 2]) + (5000).to_bytes(2, "big") + (80).to_bytes(2, "big")


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("addresses", [V4, V6])
def test_roundtrip_fed_byte_by_byte(version: str, addresses: tuple[tuple[str, int], tuple[str, int]]) -> None:
    wire = proxyproto.encode(version, *addresses) + b"GET / HTTP/1.1\r\n"
    for i in range(len(wire)):
        header = proxyproto.parse(wire[:i])
        if header is not None:
            break
    assert header == ProxyHeader(addresses[0], addresses[1], len(proxyproto.encode(version, *addresses)))


def test_mixed_families_are_mapped() -> None:
    header = proxyproto.parse(proxyproto.encode("v1", ("2001:db8::1", 1), ("10.0.0.1", 2)))
    assert header is not None and header.destination == ("::ffff:a00:1", 2)


def test_unknown_and_local_carry_no_address() -> None:
    assert proxyproto.parse(b"PROXY UNKNOWN\r\nrest") == ProxyHeader(None, None, 15)
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    assert proxyproto.parse(local) == ProxyHeader(None, None, 16)


@pytest.mark.parametrize(
    "wire",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY " + b"x" * 200,
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12),
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04" + bytes(4),
    ],
)
def test_bad_headers_are_refused(wire: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        proxyproto.parse(wire)


@given(st.binary(max_size=120))
def test_parse_never_crashes_and_never_overreads(data: bytes) -> None:
    try:
        header = proxyproto.parse(data)
    except ProxyProtocolError:
        return
    assert header is None or header.length <= len(data)
