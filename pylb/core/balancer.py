"""Balancing algorithms: which backend of a service takes the next request.

Owns: the choice among a service's live backend states. Must not know: how
states are counted (``pylb.core.pool`` does that) or any I/O.

Invariants: ``pick()`` returns a backend that is up, or None when none is;
it never mutates the counters it reads.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Protocol

from pylb.core.state import BackendState


class Balancer(Protocol):
    def pick(self, key: bytes = b"") -> BackendState | None:
        """The next backend; ``key`` (the client's address) matters only to
        ``source``."""
        ...


class Cursor(Protocol):
    """A counter per service that survives snapshot swaps and may be shared
    by worker processes (so requests alternate across all of them)."""

    def advance(self, slot: str, step: int = 1) -> int:
        """The counter's value for ``slot``, then add ``step`` to it."""
        ...


class LocalCursor:
    """Counters in this process."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def advance(self, slot: str, step: int = 1) -> int:
        value = self._counts.get(slot, 0)
        self._counts[slot] = value + step
        return value


def smooth_order(weights: Sequence[int]) -> tuple[int, ...]:
    """nginx's smooth weighted round robin, as one period of indices: with
    weights 5,1,1 the order is a a b a c a a, never a burst of five."""
    divisor = math.gcd(*weights) or 1
    weights = [w // divisor for w in weights]  # 2,4 is 1,2: a shorter period, the same order
    current = [0] * len(weights)
    total = sum(weights)
    order = []
    for _ in range(total):
        for i, weight in enumerate(weights):
            current[i] += weight
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(best)
    return tuple(order)


class RoundRobin:
    """Smooth weighted round robin over one precomputed period, driven by a
    cursor: a backend that is down is skipped (the others keep their
    proportions), and worker processes sharing the cursor take turns."""

    __slots__ = ("_cursor", "_order", "_slot", "_states")

    def __init__(self, states: Sequence[BackendState], cursor: Cursor | None = None, slot: str = "") -> None:
        self._states = tuple(states)
        weights = [s.backend.weight for s in self._states]
        self._order = smooth_order(weights) if len(set(weights)) > 1 else tuple(range(len(weights)))
        self._cursor = cursor if cursor is not None else LocalCursor()
        self._slot = slot

    def pick(self, key: bytes = b"") -> BackendState | None:
        order, states = self._order, self._states
        n = len(order)
        if not n:
            return None
        start = self._cursor.advance(self._slot)
        for k in range(n):
            state = states[order[(start + k) % n]]
            if state.up:
                if k:
                    self._cursor.advance(self._slot, k)
                return state
        return None


class LeastConn:
    """Fewest in-flight requests relative to weight; ties rotate so equal
    backends share the load instead of the first one taking it all."""

    __slots__ = ("_cursor", "_slot", "_states")

    def __init__(self, states: Sequence[BackendState], cursor: Cursor | None = None, slot: str = "") -> None:
        self._states = tuple(states)
        self._cursor = cursor if cursor is not None else LocalCursor()
        self._slot = slot

    def pick(self, key: bytes = b"") -> BackendState | None:
        states = self._states
        n = len(states)
        best: BackendState | None = None
        offset = self._cursor.advance(self._slot) if n else 0
        for k in range(n):
            state = states[(offset + k) % n]
            if not state.up:
                continue
            # in_flight/weight < best.in_flight/best.weight, without floats
            if best is None or state.in_flight * best.backend.weight < best.in_flight * state.backend.weight:
                best = state
        return best


class SourceHash:
    """The client's address picks the backend (HAProxy's ``balance source``):
    a client sticks to one backend while the set of backends up is unchanged.
    Rendezvous hashing, so a backend leaving moves only its own clients."""

    __slots__ = ("_states",)

    def __init__(self, states: Sequence[BackendState]) -> None:
        self._states = tuple(states)

    def pick(self, key: bytes = b"") -> BackendState | None:
        best: BackendState | None = None
        best_score = -1
        for state in self._states:
            if not state.up:
                continue
            digest = hashlib.blake2b(key + b"|" + str(state.backend).encode(), digest_size=8).digest()
            score = int.from_bytes(digest, "big") * state.backend.weight
            if score > best_score:
                best, best_score = state, score
        return best


def make_balancer(
    algorithm: str, states: Sequence[BackendState], cursor: Cursor | None = None, slot: str = ""
) -> Balancer:
    if algorithm == "leastconn":
        return LeastConn(states, cursor, slot)
    if algorithm == "source":
        return SourceHash(states)
    return RoundRobin(states, cursor, slot)
