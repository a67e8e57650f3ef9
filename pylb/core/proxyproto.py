"""The PROXY protocol (HAProxy's, v1 text and v2 binary): who the client was.

Owns: encoding the header pylb sends to backends that want the client's
address (``send-proxy``), and parsing the header a balancer in front of pylb
sends (``accept-proxy``, only from trusted sources). Must not know: sockets.

Invariants: ``parse`` never accepts a header it cannot fully check, and says
how many bytes it used so the rest of the stream stays intact.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from pylb.core.errors import ProxyProtocolError

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107


class ProxyHeader(NamedTuple):
    """The addresses a PROXY header carries; None for ``UNKNOWN``/``LOCAL``."""

    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int


def encode_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def encode_v2(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    family = 0x21 if src.version == 6 else 0x11  # TCP over IPv6 / IPv4
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def encode(version: str, source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    if ":" in source[0] and ":" not in destination[0]:
        destination = ("::ffff:" + destination[0], destination[1])
    elif ":" not in source[0] and ":" in destination[0]:
        source = ("::ffff:" + source[0], source[1])
    return encode_v2(source, destination) if version == "v2" else encode_v1(source, destination)


def parse(buf: bytes) -> ProxyHeader | None:
    """The header at the start of ``buf``, or None when more bytes are
    needed. Raises ProxyProtocolError when ``buf`` does not start with one."""
    if buf.startswith(V2_SIGNATURE[: len(buf)]) and len(buf) < 16:
        return None
    if buf.startswith(V2_SIGNATURE):
        return _parse_v2(buf)
    if b"PROXY "[: len(buf)] == buf[:6]:
        return _parse_v1(buf)
    raise ProxyProtocolError("expected a PROXY protocol header from this trusted source")


def _parse_v1(buf: bytes) -> ProxyHeader | None:
    end = buf.find(b"\r\n", 0, V1_MAX + 1)
    if end < 0:
        if len(buf) > V1_MAX:
            raise ProxyProtocolError("PROXY v1 header longer than 107 bytes")
        return None
    parts = buf[:end].decode("ascii", "replace").split(" ")
    if parts[1:2] == ["UNKNOWN"]:
        return ProxyHeader(None, None, end + 2)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("malformed PROXY v1 header")
    try:
        src, dst = ipaddress.ip_address(parts[2]), ipaddress.ip_address(parts[3])
        ports = [int(p) for p in parts[4:6] if p.isdigit() and len(p) <= 5]
    except ValueError:
        raise ProxyProtocolError("malformed address in PROXY v1 header") from None
    if len(ports) != 2 or max(ports) > 65535 or src.version != dst.version:
        raise ProxyProtocolError("malformed port in PROXY v1 header")
    if (src.version == 6) != (parts[1] == "TCP6"):
        raise ProxyProtocolError("PROXY v1 address does not match its family")
    return ProxyHeader((str(src), ports[0]), (str(dst), ports[1]), end + 2)


def _parse_v2(buf: bytes) -> ProxyHeader | None:
    version_command, family = buf[12], buf[13]
    (length,) = struct.unpack("!H", buf[14:16])
    if len(buf) < 16 + length:
        return None
    if version_command >> 4 != 2 or version_command & 0x0F not in (0, 1):
        raise ProxyProtocolError("unsupported PROXY v2 version or command")
    total = 16 + length
    if version_command & 0x0F == 0 or family >> 4 == 0:  # LOCAL, or UNSPEC family
        return ProxyHeader(None, None, total)
    body = buf[16:total]
    if family == 0x11 and length >= 12:
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        ports = struct.unpack("!HH", body[8:12])
    elif family == 0x21 and length >= 36:
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])  # type: ignore[assignment]
        ports = struct.unpack("!HH", body[32:36])
    else:
        raise ProxyProtocolError("unsupported PROXY v2 address family")
    return ProxyHeader((str(src), ports[0]), (str(dst), ports[1]), total)
