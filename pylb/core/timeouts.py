"""Timeouts: their defaults, and HAProxy's ``TIMEOUT`` syntax.

Owns: the one table of timeouts the data plane obeys. Must not know: trio
(durations are plain seconds; the net layer turns them into deadlines).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pylb.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``client``: idle client (keep-alive, slow reader);
    ``request_head``: a whole request head once its first byte came (slowloris);
    ``server``: a backend's answer and each read of it (then 504);
    ``connect``: connecting to a backend; ``tunnel``: idle upgraded
    connections; ``handshake``: a TLS handshake."""

    connect: float = 5.0
    client: float = 50.0
    server: float = 50.0
    request_head: float = 10.0
    tunnel: float = 3600.0
    handshake: float = 10.0

    @classmethod
    def parse(cls, text: str, what: str = "TIMEOUT", base: Timeouts | None = None) -> Timeouts:
        """Parse ``connect 5000, client 50000, server 50000`` (milliseconds,
        HAProxy's form; ``s``/``m``/``h`` suffixes allowed). Names: connect,
        client, server, http-request (or request_head), tunnel, handshake."""
        names = {f.name: f.name for f in dataclasses.fields(cls)}
        names["http-request"] = names["request-head"] = "request_head"
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition(" ")
            key = names.get(name.strip().lower())
            if key is None:
                known = "connect, client, server, http-request, tunnel, handshake"
                raise ConfigError(f"{what}: unknown timeout {name!r} in {text!r} (known: {known})")
            values[key] = parse_duration(value.strip(), what)
        return dataclasses.replace(base or cls(), **values)


def parse_duration(text: str, what: str) -> float:
    """HAProxy durations: a bare number is milliseconds; us, ms, s, m, h, d suffixes."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    number = text.rstrip("usmhd")
    unit = text[len(number) :] or "ms"
    if not number.isascii() or not number.isdigit() or unit not in units or int(number) == 0:
        raise ConfigError(f"{what}: {text!r} is not a duration (examples: 5000 for 5000 ms, 5s, 1m)")
    return int(number) * units[unit]
