"""Keyspace pieces without sockets: SCAN's guarantee under churn, its bounds, and the
engine driven directly with a fake clock (TTL rounding is Redis's (ms + 500) // 1000)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcache import LRUCache
from kvcache.keyspace import MAX_SCAN_SNAPSHOTS, Keyspace
from kvcache.server import kvcache_engine


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def full_scan(ks: Keyspace, count: int, churn=None) -> list[bytes]:
    seen: list[bytes] = []
    cursor = 0
    while True:
        cursor, batch = ks.scan(cursor, count)
        seen += batch
        if churn:
            churn()
        if cursor == 0:
            return seen


@settings(max_examples=50)
@given(n=st.integers(0, 200), count=st.integers(1, 50), seed=st.integers(0, 1000))
def test_scan_returns_every_key_present_throughout(n: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    cache = LRUCache(0, 0)
    stable = [b"s%d" % i for i in range(n)]
    for key in stable:
        cache.set(key, b"v")
    ks = Keyspace(cache, Clock())
    churned = iter(range(10**6))

    def churn() -> None:
        # Other clients add and delete keys between SCAN calls.
        cache.set(b"t%d" % next(churned), b"v")
        if rng.random() < 0.5:
            for key in cache.keys()[:1]:
                if key.startswith(b"t"):
                    cache.delete(key)

    seen = full_scan(ks, count, churn)
    assert set(stable) <= set(seen)


def test_abandoned_scans_are_bounded() -> None:
    cache = LRUCache(0, 0)
    for i in range(100):
        cache.set(b"k%d" % i, b"v")
    ks = Keyspace(cache, Clock())
    cursors = [ks.scan(0, 10)[0] for _ in range(MAX_SCAN_SNAPSHOTS * 3)]
    assert ks.open_scans <= MAX_SCAN_SNAPSHOTS
    # A forgotten cursor still answers: it restarts from a fresh snapshot.
    _, batch = ks.scan(cursors[0], 10)
    assert len(batch) == 10


def test_ttl_rounding_with_a_fake_clock() -> None:
    clock = Clock()
    engine = kvcache_engine(LRUCache(0, 0, clock=clock), clock=clock)
    session = engine.open_session()

    def run(*args: bytes) -> object:
        return engine.execute(session, list(args))

    run(b"SET", b"k", b"v", b"PX", b"10499")
    assert run(b"TTL", b"k") == 10
    assert run(b"PTTL", b"k") == 10499
    clock.now += 0.999
    assert run(b"TTL", b"k") == 10  # 9500 ms left rounds to 10 s, as Redis does
    clock.now += 9.5
    assert run(b"PTTL", b"k") == 0  # at the deadline the key still lives
    clock.now += 0.002
    assert run(b"GET", b"k") is None
    assert run(b"TTL", b"k") == -2


def test_mset_under_noeviction_is_all_or_nothing() -> None:
    from kvcache import entry_size

    limit = 2 * entry_size(b"k1", b"v")
    engine = kvcache_engine(LRUCache(0, limit, policy="noeviction"))
    session = engine.open_session()

    def run(*args: bytes) -> object:
        return engine.execute(session, list(args))

    oom = "OOM command not allowed when used memory > 'maxmemory'."
    assert run(b"MSET", b"k1", b"v", b"k2", b"v", b"k3", b"v").message == oom
    assert run(b"DBSIZE") == 0
    assert run(b"MSETNX", b"k1", b"v", b"k2", b"v", b"k3", b"v").message == oom
    assert run(b"MSET", b"k1", b"v", b"k2", b"v") == "OK"
    assert run(b"MSET", b"k1", b"w", b"k2", b"w") == "OK"  # replacing frees as it takes
    assert run(b"MGET", b"k1", b"k2") == [b"w", b"w"]


def test_idletime_follows_the_lru_clock_with_a_fake_clock() -> None:
    """IDLETIME is whole seconds of the LRU clock, which moves only when the cache ticks
    (the server's 100 ms timer), as Redis's serverCron moves server.lruclock."""
    clock = Clock()
    cache = LRUCache(0, 0, clock=clock)
    engine = kvcache_engine(cache, clock=clock)
    session = engine.open_session()

    def run(*args: bytes) -> object:
        return engine.execute(session, list(args))

    run(b"MSET", b"a", b"x", b"b", b"y")
    clock.now += 7.9
    assert run(b"OBJECT", b"IDLETIME", b"a") == 0  # no tick yet: the clock has not moved
    cache.tick()
    assert run(b"OBJECT", b"IDLETIME", b"a") == 7
    assert run(b"EXISTS", b"a") == 1
    assert run(b"GET", b"b") == b"y"
    assert [run(b"OBJECT", b"IDLETIME", k) for k in (b"a", b"b")] == [7, 0]
    clock.now += 0.2
    cache.active_expire()  # the server's timer: sweeps and ticks
    assert [run(b"OBJECT", b"IDLETIME", k) for k in (b"a", b"b")] == [8, 1]
    assert run(b"EXPIRE", b"a", b"100") == 1
    assert run(b"OBJECT", b"IDLETIME", b"a") == 0
    assert run(b"OBJECT", b"IDLETIME", b"nope") is None
