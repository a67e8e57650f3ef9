import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylb.core.errors import NoBackend
from pylb.core.models import Backend, Route, Service, Snapshot
from pylb.core.pool import Pool

A, B, C = Backend("10.0.0.1", 80), Backend("10.0.0.2", 80), Backend("10.0.0.3", 80)


def test_empty_pool_answers_no_backend_until_the_first_snapshot() -> None:
    pool = Pool()
    with pytest.raises(NoBackend, match="waiting for the first discovery"):
        pool.acquire()
    pool.swap(Snapshot.of_backends([A]))
    assert pool.acquire().backend == A


def test_swap_reports_added_and_removed_and_takes_effect_at_once() -> None:
    pool = Pool(Snapshot.of_backends([A, B]))
    result = pool.swap(Snapshot.of_backends([B, C]))
    assert result.added == (C,)
    assert result.removed == (A,)
    assert {pool.acquire().backend for _ in range(10)} == {B, C}


def test_removed_backend_drains_then_is_forgotten() -> None:
    pool = Pool(Snapshot.of_backends([A]))
    busy = pool.acquire()
    pool.swap(Snapshot.of_backends([B]))
    assert busy.draining and not busy.up
    assert "draining=1" in repr(pool)
    assert pool.statistics()["draining"] == [busy.statistics()]
    assert pool.acquire().backend == B
    pool.release(busy)
    assert "draining=0" in repr(pool)
    assert not pool.is_live(A)


def test_a_swap_changes_where_a_host_seen_before_goes() -> None:
    def world(web_host: str, default: str | None) -> Snapshot:
        services = (Service("web", (A,)), Service("api", (B,)))
        return Snapshot(services, default, (Route(web_host, "/", "web"), Route("api.test", "/", "api")))

    pool = Pool(world("a.test", "api"))
    assert pool.resolve(b"a.test", b"/x", "http", 80) == "web"
    assert pool.resolve(b"a.test", b"/x", "http", 80) == "web"  # answered again, as before
    pool.swap(world("b.test", "api"))
    assert pool.resolve(b"a.test", b"/x", "http", 80) == "api"  # no route now: the default
    pool.swap(world("b.test", None))
    with pytest.raises(NoBackend, match=r"host a\.test"):
        pool.resolve(b"a.test", b"/x", "http", 80)


def test_counters_survive_a_weight_change() -> None:
    pool = Pool(Snapshot.of_backends([A]))
    state = pool.acquire()
    pool.swap(Snapshot.of_backends([Backend(A.host, A.port, 5)]))
    assert pool.acquire() is state
    assert state.in_flight == 2 and state.backend.weight == 5


def test_service_without_backends_is_503_and_unknown_service_too() -> None:
    pool = Pool(Snapshot((Service("web"),), default="web"))
    with pytest.raises(NoBackend, match="no backend up"):
        pool.acquire()
    with pytest.raises(NoBackend):
        pool.acquire("nope")


def test_release_never_goes_negative_and_counts_failures() -> None:
    pool = Pool(Snapshot.of_backends([A]))
    state = pool.acquire()
    pool.release(state, failed=True)
    pool.release(state)
    assert state.in_flight == 0
    assert state.failures == 1


backend_sets = st.lists(st.sampled_from([A, B, C, Backend("10.0.0.4", 81)]), unique=True, max_size=4)


@settings(max_examples=200)
@given(st.lists(st.one_of(st.tuples(st.just("swap"), backend_sets), st.tuples(st.just("acquire"), st.none()),
                          st.tuples(st.just("release"), st.integers(0, 100)))))
def test_pool_invariants_under_any_interleaving(ops: list[tuple[str, object]]) -> None:
    pool = Pool(Snapshot.of_backends([A, B]))
    held = []
    for op, arg in ops:
        if op == "swap":
            pool.swap(Snapshot.of_backends(arg))  # type: ignore[arg-type]
        elif op == "acquire":
            try:
                state = pool.acquire()
            except NoBackend:
                assert not pool.snapshot.services[0].backends  # type: ignore[union-attr]
                continue
            assert state.up and pool.is_live(state.backend)
            held.append(state)
        elif held:
            pool.release(held.pop(arg % len(held)))  # type: ignore[operator]
        for state in pool.states():
            assert state.in_flight >= 0
        assert sum(s.in_flight for s in pool.states()) == len(held)
    for state in held:
        pool.release(state)
    assert pool.statistics()["draining"] == []
