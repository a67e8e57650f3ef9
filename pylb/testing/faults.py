"""Faults on live connections, in toxiproxy's vocabulary.

Owns: what each fault does to the bytes of one direction of one connection
(``carry``) and to its end (``closing``), given a ``Carrier`` that forwards,
sleeps, closes or resets. Must not know: sockets, relays, the balancer
(``pylb.testing.relay`` applies them; ``lb.fault()`` picks the backend).

Directions are toxiproxy's: ``"upstream"`` is what pylb sends to the backend
(requests), ``"downstream"`` what the backend sends back (responses), the
default. Every wait is ``trio``'s clock (a ``MockClock`` is honoured) and
ends early when the fault is removed, as toxiproxy's toxics do; random
choices (jitter, slice sizes, toxicity) come from the balancer's seeded
``random.Random``.

Where pylb's faults differ from toxiproxy's toxics of the same name, the
class says so: times are milliseconds throughout (toxiproxy's slicer delay
is in microseconds) and bandwidth is KiB/s (toxiproxy's rate is KB/s).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

__all__ = [
    "Bandwidth",
    "Carrier",
    "Direction",
    "Down",
    "Fault",
    "Latency",
    "LimitData",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Timeout",
]

Direction = Literal["upstream", "downstream"]


class Carrier(Protocol):
    """What a fault can do with the bytes it was given (one per chunk)."""

    arrived: float  # when the chunk was read (trio's clock)
    rng: random.Random

    async def forward(self, data: bytes) -> None:
        """Pass ``data`` on (to the next fault, then the peer)."""

    async def sleep_until(self, deadline: float) -> None:
        """Wait until ``deadline`` (trio's clock), or less if the fault is removed."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the fault is removed."""

    def counter(self) -> list[int]:
        """A counter of this fault on this connection and direction (starts at [0])."""

    def close(self) -> None:
        """Close the connection, both ways (FIN to both peers)."""

    def reset(self) -> None:
        """Reset the connection, both ways (RST to both peers)."""


@dataclass(frozen=True)
class Fault:
    """Base of the faults: passes bytes through untouched."""

    toxic: ClassVar[str] = ""  # toxiproxy's name for it

    async def carry(self, data: bytes, carrier: Carrier) -> None:
        await carrier.forward(data)

    async def closing(self, carrier: Carrier) -> None:
        """The sender closed this direction; return to pass the close on."""

    def __str__(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class Latency(Fault):
    """Delay every chunk by ``ms`` plus or minus up to ``jitter_ms`` (toxiproxy's
    ``latency``), counted from when the chunk arrived: a stream of chunks is
    delayed, not slowed down. Never less than 0."""

    toxic: ClassVar[str] = "latency"
    ms: float
    jitter_ms: float = 0.0

    async def carry(self, data: bytes, carrier: Carrier) -> None:
        delay = self.ms + (carrier.rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0)
        await carrier.sleep_until(carrier.arrived + max(0.0, delay) / 1000)
        await carrier.forward(data)


@dataclass(frozen=True)
class Bandwidth(Fault):
    """At most ``kib_per_s`` KiB per second (toxiproxy's ``bandwidth``, whose
    ``rate`` is in KB/s), sent in slices of a tenth of a second's worth."""

    toxic: ClassVar[str] = "bandwidth"
    kib_per_s: float

    async def carry(self, data: bytes, carrier: Carrier) -> None:
        rate = max(self.kib_per_s, 0.001) * 1024
        step = max(1, int(rate / 10))
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            await carrier.sleep(len(piece) / rate)
            await carrier.forward(piece)


@dataclass(frozen=True)
class Slicer(Fault):
    """Cut the bytes into pieces of ``size`` bytes (plus or minus up to
    ``variation``), ``delay_ms`` apart (toxiproxy's ``slicer``: ``average_size``,
    ``size_variation``, and a ``delay`` in microseconds there)."""

    toxic: ClassVar[str] = "slicer"
    size: int
    delay_ms: float = 0.0
    variation: int = 0

    async def carry(self, data: bytes, carrier: Carrier) -> None:
        start = 0
        while start < len(data):
            size = self.size + (carrier.rng.randint(-self.variation, self.variation) if self.variation else 0)
            piece = data[start : start + max(1, size)]
            start += len(piece)
            await carrier.forward(piece)
            if self.delay_ms and start < len(data):
                await carrier.sleep(self.delay_ms / 1000)


@dataclass(frozen=True)
class LimitData(Fault):
    """Let ``nbytes`` through in this direction (counted from when the fault
    met the connection), then close the connection (toxiproxy's
    ``limit_data``): a response longer than that arrives cut short."""

    toxic: ClassVar[str] = "limit_data"
    nbytes: int

    async def carry(self, data: bytes, carrier: Carrier) -> None:
        sent = carrier.counter()
        piece = data[: max(0, self.nbytes - sent[0])]
        if piece:
            await carrier.forward(piece)
            sent[0] += len(piece)
        if sent[0] >= self.nbytes:
            carrier.close()


@dataclass(frozen=True)
class SlowClose(Fault):
    """Hold the sender's close back for ``ms`` (toxiproxy's ``slow_close``): a
    response framed by the end of the connection ends that much later."""

    toxic: ClassVar[str] = "slow_close"
    ms: float

    async def closing(self, carrier: Carrier) -> None:
        await carrier.sleep(self.ms / 1000)


@dataclass(frozen=True)
class Timeout(Fault):
    """Drop every byte in this direction and close the connection ``ms`` after
    the fault met it (toxiproxy's ``timeout``); with ``ms=0`` the connection
    stays open, silent, until the fault is removed (bytes sent meanwhile are
    lost): a backend that hangs, for pylb's server timeout."""

    toxic: ClassVar[str] = "timeout"
    ms: float = 0.0

    async def carry(self, data: bytes, carrier: Carrier) -> None:
        return  # dropped; the relay closes the connection when ``ms`` have passed


@dataclass(frozen=True)
class ResetPeer(Fault):
    """On the next bytes in this direction, wait ``timeout_ms`` and reset the
    connection (TCP RST to both peers; toxiproxy's ``reset_peer``). Downstream:
    the backend's answer never arrives; pylb answers 502 (or, for a request it
    may replay, tries another backend)."""

    toxic: ClassVar[str] = "reset_peer"
    timeout_ms: float = 0.0

    async def carry(self, data: bytes, carrier: Carrier) -> None:
        if self.timeout_ms:
            await carrier.sleep(self.timeout_ms / 1000)
        carrier.reset()


@dataclass(frozen=True)
class Down(Fault):
    """The backend is down (toxiproxy's ``enabled: false``): its open
    connections close and new ones are refused (ECONNREFUSED), in both
    directions whatever ``direction`` says, until the fault is removed."""

    toxic: ClassVar[str] = "down"

    async def carry(self, data: bytes, carrier: Carrier) -> None:
        carrier.close()
