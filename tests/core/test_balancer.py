from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylb.core.balancer import LeastConn, RoundRobin
from pylb.core.models import Backend
from pylb.core.state import BackendState


def states(*weights: int) -> list[BackendState]:
    return [BackendState(Backend("10.0.0.1", 8000 + i, w)) for i, w in enumerate(weights)]


def names(picks: list[BackendState | None]) -> str:
    return "".join("abcdefgh"[p.backend.port - 8000] if p else "-" for p in picks)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((1, 1), "abababab"),
        ((1, 1, 1), "abcabcab"),
        ((5, 1, 1), "aabacaaaabacaa"),  # smooth: never five a's in a row
        ((3, 1), "aabaaaba"),
        ((1, 2), "babbabba"),
    ],
)
def test_roundrobin_order(weights: tuple[int, ...], expected: str) -> None:
    rr = RoundRobin(states(*weights))
    assert names([rr.pick() for _ in expected]) == expected


def test_roundrobin_skips_down_backends() -> None:
    s = states(1, 1, 1)
    s[1].healthy = False
    rr = RoundRobin(s)
    assert names([rr.pick() for _ in range(4)]) == "acac"
    for state in s:
        state.draining = True
    assert rr.pick() is None


@given(st.lists(st.integers(1, 20), min_size=1, max_size=8), st.integers(1, 5))
def test_roundrobin_is_exactly_fair_over_whole_cycles(weights: list[int], cycles: int) -> None:
    s = states(*weights)
    rr = RoundRobin(s)
    total = sum(weights) * cycles
    counts = Counter(rr.pick().backend.port for _ in range(total))  # type: ignore[union-attr]
    assert [counts[st.backend.port] for st in s] == [w * cycles for w in weights]


def test_leastconn_prefers_fewest_in_flight_and_rotates_ties() -> None:
    s = states(1, 1, 1)
    lc = LeastConn(s)
    assert names([lc.pick() for _ in range(3)]) == "abc"  # all idle: ties rotate
    s[0].in_flight, s[1].in_flight, s[2].in_flight = 3, 1, 2
    assert names([lc.pick() for _ in range(3)]) == "bbb"


def test_leastconn_weights_scale_the_count() -> None:
    s = states(4, 1)
    s[0].in_flight, s[1].in_flight = 3, 1  # 3/4 < 1/1
    assert LeastConn(s).pick() is s[0]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 10), st.booleans()), min_size=1, max_size=8))
def test_leastconn_never_picks_a_busier_backend(spec: list[tuple[int, int, bool]]) -> None:
    s = states(*(w for _, w, _ in spec))
    for state, (load, _, up) in zip(s, spec, strict=True):
        state.in_flight, state.healthy = load, up
    pick = LeastConn(s).pick()
    ups = [x for x in s if x.up]
    if not ups:
        assert pick is None
        return
    assert pick is not None and pick.up
    assert all(pick.in_flight * x.backend.weight <= x.in_flight * pick.backend.weight for x in ups)
