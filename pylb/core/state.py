"""Live per-backend state: counters the data plane updates on every request.

Owns: one mutable record per backend address, kept across snapshot swaps so
that in-flight counts survive a weight change. Must not know: I/O or time.

Invariants: ``in_flight`` is never negative; a state whose backend left the
snapshot is ``draining`` and is never ``up`` again.
"""

from __future__ import annotations

from pylb.core.models import Backend


class BackendState:
    __slots__ = ("backend", "draining", "failures", "fails_in_row", "healthy", "in_flight", "oks_in_row", "requests")

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.draining = False
        self.healthy = True
        self.oks_in_row = 0  # consecutive successful checks (pylb.core.health)
        self.fails_in_row = 0  # consecutive failed checks or connects

    @property
    def up(self) -> bool:
        """Whether new requests may go here."""
        return self.healthy and not self.draining

    def statistics(self) -> dict[str, object]:
        return {
            "backend": str(self.backend),
            "weight": self.backend.weight,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "failures": self.failures,
            "draining": self.draining,
            "healthy": self.healthy,
        }

    def __repr__(self) -> str:
        flags = "".join(f" {f}" for f, on in (("draining", self.draining), ("down", not self.healthy)) if on)
        return (
            f"<BackendState {self.backend} w={self.backend.weight} in_flight={self.in_flight}"
            f" requests={self.requests}{flags}>"
        )
