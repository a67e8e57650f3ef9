"""Balancing algorithms: which backend of a service takes the next request.

Owns: the choice among a service's live backend states. Must not know: how
states are counted (``pylb.core.pool`` does that) or any I/O.

Invariants: ``pick()`` returns a backend that is up, or None when none is;
it never mutates the counters it reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from pylb.core.state import BackendState


class Balancer(Protocol):
    def pick(self, key: bytes = b"") -> BackendState | None:
        """The next backend; ``key`` (the client's address) matters only to
        ``source``."""
        ...


class RoundRobin:
    """Smooth weighted round robin (nginx's): with weights 5,1,1 the order is
    a a b a c a a, never a burst of five. Equal weights take a cheap rotation."""

    __slots__ = ("_current", "_next", "_states", "_weighted")

    def __init__(self, states: Sequence[BackendState]) -> None:
        self._states = tuple(states)
        self._next = 0
        self._current = [0] * len(self._states)
        self._weighted = len({s.backend.weight for s in self._states}) > 1

    def pick(self, key: bytes = b"") -> BackendState | None:
        if self._weighted:
            return self._pick_weighted()
        states = self._states
        n = len(states)
        for _ in range(n):
            state = states[self._next]
            self._next = (self._next + 1) % n
            if state.up:
                return state
        return None

    def _pick_weighted(self) -> BackendState | None:
        best = -1
        total = 0
        current = self._current
        for i, state in enumerate(self._states):
            if not state.up:
                continue
            weight = state.backend.weight
            current[i] += weight
            total += weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return self._states[best]


class LeastConn:
    """Fewest in-flight requests relative to weight; ties rotate so equal
    backends share the load instead of the first one taking it all."""

    __slots__ = ("_offset", "_states")

    def __init__(self, states: Sequence[BackendState]) -> None:
        self._states = tuple(states)
        self._offset = 0

    def pick(self, key: bytes = b"") -> BackendState | None:
        states = self._states
        n = len(states)
        best: BackendState | None = None
        for k in range(n):
            state = states[(self._offset + k) % n]
            if not state.up:
                continue
            # in_flight/weight < best.in_flight/best.weight, without floats
            if best is None or state.in_flight * best.backend.weight < best.in_flight * state.backend.weight:
                best = state
        if n:
            self._offset = (self._offset + 1) % n
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


def make_balancer(algorithm: str, states: Sequence[BackendState]) -> Balancer:
    if algorithm == "leastconn":
        return LeastConn(states)
    if algorithm == "source":
        return SourceHash(states)
    return RoundRobin(states)
