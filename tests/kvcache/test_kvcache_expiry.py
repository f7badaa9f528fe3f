"""Active expiry and the pieces the model test cannot see: sweeps, budgets, bags, sizes."""

from __future__ import annotations

import random

import pytest

from kvcache import LRUCache, OutOfMemory, entry_size
from kvcache.expiry import BAG_SLACK, KeyBag


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_active_expiry_reclaims_keys_nobody_reads() -> None:
    clock = Clock()
    cache = LRUCache(0, 0, clock=clock, rng=random.Random(1))
    for i in range(1000):
        cache.set(i, b"v", ttl=1)
    for i in range(1000, 1100):
        cache.set(i, b"v")
    clock.now += 2
    for _ in range(200):
        if len(cache) == 100:
            break
        cache.active_expire(budget=1.0)
    assert len(cache) == 100
    assert cache.stats().expirations == 1000
    assert sorted(cache.keys()) == list(range(1000, 1100))


def test_sweep_stops_when_few_keys_expired() -> None:
    clock = Clock()
    cache = LRUCache(0, 0, clock=clock, rng=random.Random(2))
    for i in range(1000):
        cache.set(i, b"v", ttl=10 if i % 50 else 1)
    clock.now += 2
    # About 2% of the keys are expired: one round of 20 samples, then it stops (<= 10%).
    assert cache.active_expire(budget=1.0) <= 20


def test_sweep_respects_its_time_budget() -> None:
    clock = Clock()
    ticks = iter(range(10**6))
    cache = LRUCache(0, 0, clock=clock, timer=lambda: next(ticks), rng=random.Random(3))
    for i in range(10_000):
        cache.set(i, b"v", ttl=1)
    clock.now += 2
    # The fake timer advances 1 per read and the budget is 1: exactly one round runs.
    assert cache.active_expire(budget=1) <= 20


def test_bag_stays_bounded_under_churn() -> None:
    bag = KeyBag()
    live: set[int] = set()
    for i in range(50_000):
        live.discard(i - 10)
        live.add(i)
        bag.add(i, live)
    assert len(bag.keys) <= 2 * len(live) + BAG_SLACK
    assert set(bag.sample(random.Random(0), live, 100)) <= live


def test_lazy_expiry_on_read_counts_a_miss_and_an_expiration() -> None:
    clock = Clock()
    cache = LRUCache(clock=clock)
    cache.set("k", "v", ttl=1)
    clock.now += 1
    assert cache.get("k") == "v"  # at the deadline exactly the key still lives (Redis: now > when)
    clock.now += 0.001
    assert cache.get("k") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.keys) == (1, 1, 1, 0)


def test_bytes_are_accounted_and_released() -> None:
    cache = LRUCache(0, 0)
    cache.set(b"k", b"x" * 100)
    assert cache.used_bytes == entry_size(b"k", b"x" * 100)
    cache.set(b"k", b"y")
    assert cache.used_bytes == entry_size(b"k", b"y")
    cache.delete(b"k")
    assert cache.used_bytes == 0


def test_value_bigger_than_the_whole_cache_is_refused() -> None:
    cache = LRUCache(10, 1000)
    cache.set(b"a", b"small")
    with pytest.raises(OutOfMemory):
        cache.set(b"big", b"x" * 2000)
    assert cache.get(b"a") == b"small"


def test_noeviction_refuses_and_changes_nothing() -> None:
    cache = LRUCache(2, 0, policy="noeviction")
    cache.set("a", 1)
    cache.set("b", 2)
    with pytest.raises(OutOfMemory):
        cache.set("c", 3)
    cache.set("a", 10)  # an overwrite needs no new slot
    assert cache.keys() == ["b", "a"]
    assert cache.stats().evictions == 0


def test_volatile_policy_without_ttl_keys_behaves_like_noeviction() -> None:
    cache = LRUCache(2, 0, policy="volatile-lru")
    cache.set("a", 1)
    cache.set("b", 2)
    with pytest.raises(OutOfMemory):
        cache.set("c", 3)
    cache.set("b", 2, ttl=100)
    cache.set("c", 3)
    assert cache.keys() == ["a", "c"]


def test_volatile_ttl_evicts_the_nearest_deadline() -> None:
    cache = LRUCache(3, 0, policy="volatile-ttl", rng=random.Random(0))
    cache.set("soon", 1, ttl=1)
    cache.set("later", 2, ttl=100)
    cache.set("never", 3)
    cache.set("new", 4)
    assert sorted(cache.keys()) == ["later", "never", "new"]


def test_shrinking_the_bounds_evicts_at_once() -> None:
    cache = LRUCache(0, 0)
    for i in range(10):
        cache.set(i, i)
    cache.configure(max_keys=3)
    assert cache.keys() == [7, 8, 9]
    cache.configure(policy="noeviction", max_keys=1)
    assert len(cache) == 3
    with pytest.raises(ValueError, match="unknown eviction policy"):
        cache.configure(policy="lfu")


def test_random_key_and_clear() -> None:
    cache = LRUCache(rng=random.Random(0))
    assert cache.random_key() is None
    for i in range(50):
        cache.set(i, i)
    for i in range(40):
        cache.delete(i)
    assert all(cache.random_key() in range(40, 50) for _ in range(100))
    cache.clear()
    assert (len(cache), cache.used_bytes, cache.random_key()) == (0, 0, None)


def test_switching_to_volatile_lru_keeps_exact_recency() -> None:
    cache = LRUCache(4, 0, policy="allkeys-lru")
    cache.set("a", 1, ttl=100)
    cache.set("b", 2, ttl=100)
    cache.set("p", 3)
    cache.get("a")  # recency now: b, p, a
    cache.configure(policy="volatile-lru")
    cache.set("c", 4, ttl=100)
    cache.set("d", 5)  # full: the least recently used key with a TTL is "b"
    assert sorted(cache.keys()) == ["a", "c", "d", "p"]
    cache.configure(policy="allkeys-lru")
    cache.set("e", 6)  # back to all keys: "p" is now the oldest
    assert sorted(cache.keys()) == ["a", "c", "d", "e"]


def test_the_all_keys_bag_is_built_on_first_need_and_kept_current() -> None:
    """No bag of all keys until RANDOMKEY or allkeys-random wants one; from then on,
    keys added later are in it, and switching policy at run time works."""
    cache = LRUCache(0, 0, rng=random.Random(1))
    for i in range(10):
        cache.set(i, i)
    assert cache._all_keys is None  # white-box: no slot or append per new key until then
    assert cache.random_key() in range(10)
    for i in range(10, 20):
        cache.set(i, i)
    for i in range(10):
        cache.delete(i)
    assert {cache.random_key() for _ in range(200)} <= set(range(10, 20))
    evicted: list[int] = []
    later = LRUCache(5, 0, rng=random.Random(2), on_evict=lambda k, v: evicted.append(k))
    for i in range(5):
        later.set(i, i)
    later.configure(policy="allkeys-random")
    for i in range(5, 50):
        later.set(i, i)
    assert len(later) == 5 and len(evicted) == 45
    assert set(later.keys()) | set(evicted) == set(range(50))
