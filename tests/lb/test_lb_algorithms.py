"""Every balancing algorithm, as a property: exact cycles, least load, minimal movement."""

import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lb.algorithms import (
    ALGORITHMS,
    ConsistentHash,
    LeastConnections,
    PowerOfTwoChoices,
    RoundRobin,
    SmoothWeighted,
    load,
    make_algorithm,
)
from lb.backend import Admin, Backend, Pool
from lb.health import HealthSettings, HealthState


@dataclass
class Fake:
    name: str
    effective_weight: float = 1.0
    active: int = 0


def fakes(weights):
    return [Fake(f"10.0.0.{i}:80", w) for i, w in enumerate(weights)]


weights_st = st.lists(st.integers(1, 10), min_size=1, max_size=8)


@given(weights_st, st.integers(0, 20))
def test_round_robin_exact_over_a_cycle(weights, warmup):
    cands = fakes(weights)
    rr = RoundRobin()
    for _ in range(warmup):
        rr.pick(cands)
    picks = Counter(rr.pick(cands).name for _ in range(len(cands)))
    assert picks == Counter(c.name for c in cands)


@given(weights_st, st.integers(0, 3))
def test_smooth_weighted_exact_over_a_cycle(weights, cycles_before):
    cands = fakes(weights)
    swrr = SmoothWeighted()
    total = sum(weights)
    for _ in range(cycles_before * total):
        swrr.pick(cands)
    picks = Counter(swrr.pick(cands).name for _ in range(total))
    assert picks == {c.name: w for c, w in zip(cands, weights, strict=True)}


def test_smooth_weighted_spreads_picks_like_nginx():
    a, b, c = fakes([5, 1, 1])
    a.name, b.name, c.name = "a", "b", "c"
    swrr = SmoothWeighted()
    assert "".join(swrr.pick([a, b, c]).name for _ in range(7)) == "aabacaa"


@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(0, 20)), min_size=1, max_size=8),
)
def test_least_connections_never_picks_a_strictly_busier_backend(specs):
    cands = [Fake(f"b{i}", w, a) for i, (w, a) in enumerate(specs)]
    lc = LeastConnections()
    for _ in range(3):
        chosen = lc.pick(cands)
        assert all(load(chosen) <= load(c) for c in cands)


def test_least_connections_rotates_among_ties():
    cands = fakes([1, 1, 1])
    lc = LeastConnections()
    assert {lc.pick(cands).name for _ in range(3)} == {c.name for c in cands}


@given(st.lists(st.integers(0, 20), min_size=2, max_size=8), st.integers(0, 2**32))
def test_p2c_never_picks_the_single_busiest(actives, seed):
    cands = [Fake(f"b{i}", 1, a) for i, a in enumerate(actives)]
    p2c = PowerOfTwoChoices(random.Random(seed))
    busiest = max(actives)
    for _ in range(10):
        chosen = p2c.pick(cands)
        # It compares two distinct candidates, so it only picks the maximum on a tie.
        if sorted(actives)[-2] < busiest:
            assert chosen.active < busiest


def test_p2c_spreads_evenly_over_idle_backends():
    cands = fakes([1] * 4)
    p2c = PowerOfTwoChoices(random.Random(1))
    counts = Counter(p2c.pick(cands).name for _ in range(4000))
    assert min(counts.values()) > 700


@settings(max_examples=15)
@given(st.integers(2, 10), st.data())
def test_consistent_hash_moves_only_the_removed_share(n, data):
    cands = fakes([1] * n)
    gone = data.draw(st.sampled_from(cands))
    ch = ConsistentHash()
    keys = [f"192.0.{i // 256}.{i % 256}" for i in range(1500)]
    before = {k: ch.pick(cands, k).name for k in keys}
    rest = [c for c in cands if c is not gone]
    after = {k: ch.pick(rest, k).name for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    # Only the removed backend's keys move, and they are about 1/n of all keys.
    assert all(before[k] == gone.name for k in moved)
    assert len(moved) <= len(keys) * (1 / n + 0.1)


def test_consistent_hash_balance_and_stability():
    cands = fakes([1] * 4)
    ch = ConsistentHash()
    keys = [f"10.1.{i // 256}.{i % 256}" for i in range(4000)]
    counts = Counter(ch.pick(cands, k).name for k in keys)
    assert min(counts.values()) > 4000 / 4 * 0.6
    assert all(ch.pick(list(reversed(cands)), k).name == ch.pick(cands, k).name for k in keys)


def test_make_algorithm():
    assert isinstance(make_algorithm("p2c"), PowerOfTwoChoices)
    with pytest.raises(ValueError, match="roundrobin"):
        make_algorithm("nope")


# --- the pool: nothing ever picks an ineligible backend ------------------------------

backend_st = st.fixed_dictionaries(
    {
        "weight": st.integers(1, 5),
        "admin": st.sampled_from(list(Admin)),
        "down": st.booleans(),
        "ejected": st.booleans(),
        "maxconn": st.integers(0, 3),
        "active": st.integers(0, 4),
    }
)


@given(st.sampled_from(sorted(ALGORITHMS)), st.lists(backend_st, min_size=1, max_size=6))
def test_no_algorithm_ever_picks_an_ineligible_backend(name, specs):
    now = 100.0
    backends = []
    for i, s in enumerate(specs):
        health = HealthState(HealthSettings(fall=1))
        if s["down"]:
            health.record_check(False, now)
        if s["ejected"]:
            health.ejected_until = now + 5
        b = Backend(f"10.0.0.{i}", 80, weight=s["weight"], maxconn=s["maxconn"], health=health)
        b.admin, b.active = s["admin"], s["active"]
        backends.append(b)
    pool = Pool(make_algorithm(name), backends)
    eligible = [b for b in backends if b.eligible(now)]
    for i in range(10):
        chosen = pool.choose(f"192.0.2.{i}", now)
        if not eligible:
            assert chosen is None
        else:
            assert chosen in eligible
            assert chosen.admin is Admin.ENABLED
            assert chosen.health.takes_traffic(now)
            assert chosen.maxconn == 0 or chosen.active < chosen.maxconn


def test_pool_choose_excludes_tried_backends():
    a, b = Backend("127.0.0.1", 1), Backend("127.0.0.1", 2)
    pool = Pool(RoundRobin(), [a, b])
    assert {pool.choose("", 0, exclude={a.name}) for _ in range(4)} == {b}
    assert pool.choose("", 0, exclude={a.name, b.name}) is None


def test_slow_start_scales_effective_weight():
    settings_ = HealthSettings(fall=1, rise=1, slow_start=10.0)
    b = Backend("127.0.0.1", 1, weight=4, health=HealthState(settings_))
    b.health.record_check(False, 0.0)
    b.health.record_check(True, 100.0)
    pool = Pool(SmoothWeighted(), [b])
    pool.choose("", 105.0)
    assert b.effective_weight == pytest.approx(2.0)
    pool.choose("", 111.0)
    assert b.effective_weight == 4.0
