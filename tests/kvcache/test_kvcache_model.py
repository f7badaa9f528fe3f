"""LRUCache against a plain model: a dict in recency order, driven by a fake clock.

Hypothesis runs random sequences of sets (with and without TTL), gets, touches, peeks,
deletes, EXPIRE/PERSIST, clock jumps, LRU clock ticks and active sweeps; after every step
the cache must answer as the model does (values, deadlines, idle times), stay within its
bounds, and every eviction must pick the key the policy names (for allkeys-lru: exactly
the least recently used live key).
"""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kvcache import LRUCache, OutOfMemory, entry_size

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"])
VALUES = st.binary(max_size=120)
TTLS = st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.0, 5.0]))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeTimer:
    """A budget timer that moves a little on every read, so sweeps always end."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.0001
        return self.t


def make_machine(policy: str, max_keys: int, max_bytes: int) -> type[RuleBasedStateMachine]:
    class CacheMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock()
            self.victims: list[bytes] = []
            self.cache = LRUCache(
                max_keys,
                max_bytes,
                policy=policy,
                clock=self.clock,
                timer=FakeTimer(),
                rng=random.Random(0),
                on_evict=lambda k, v: self.victims.append(k),
            )
            # key -> (value, deadline or None), least recently used first.
            self.model: OrderedDict[bytes, tuple[bytes, float | None]] = OrderedDict()
            # The LRU clock as the model sees it (whole seconds at the last tick), and
            # each key's stamp on it at its last use.
            self.lru = int(self.clock.now)
            self.atime: dict[bytes, int] = {}
            self.hits = 0
            self.misses = 0

        # --- the model's view of time -----------------------------------------------

        def live(self, key: bytes) -> bool:
            if key not in self.model:
                return False
            deadline = self.model[key][1]
            if deadline is not None and self.clock.now > deadline:
                del self.model[key]
                return False
            return True

        def live_keys(self) -> list[bytes]:
            return [k for k in list(self.model) if self.live(k)]

        def check_victims(self, writing: bytes | None) -> None:
            """Each eviction must be the key the policy names, in the model's order."""
            for victim in self.victims:
                if victim not in self.model or not self.live(victim):
                    # Expired but not reclaimed yet: Redis may evict such a key too.
                    continue
                candidates = [k for k in self.live_keys() if k != writing]
                assert victim in candidates, f"evicted {victim!r}, not a live key"
                if policy == "allkeys-lru":
                    assert victim == candidates[0], f"evicted {victim!r}, LRU is {candidates[0]!r}"
                elif policy == "volatile-lru":
                    volatile = [k for k in candidates if self.model[k][1] is not None]
                    assert victim == volatile[0]
                elif policy == "volatile-ttl":
                    assert self.model[victim][1] is not None
                assert policy != "noeviction"
                del self.model[victim]
            self.victims.clear()

        # --- rules ------------------------------------------------------------------

        @rule(key=KEYS, value=VALUES, ttl=TTLS, keep_ttl=st.booleans())
        def set(self, key: bytes, value: bytes, ttl: float | None, keep_ttl: bool) -> None:
            deadline = None if ttl is None else self.clock.now + ttl
            was_live = self.live(key)
            try:
                self.cache.store(key, value, deadline, keep_ttl=keep_ttl and ttl is None)
            except OutOfMemory:
                self.check_victims(key)
                if policy == "allkeys-lru":
                    assert entry_size(key, value) > max_bytes
                if was_live:
                    self.model.move_to_end(key)
                    assert self.cache.peek(key) == self.model[key][0]
                else:
                    assert self.cache.peek(key) is None
                return
            self.check_victims(key)
            if keep_ttl and ttl is None and was_live:
                deadline = self.model[key][1]
            self.model[key] = (value, deadline)
            self.model.move_to_end(key)
            self.atime[key] = self.lru

        @rule(key=KEYS)
        def get(self, key: bytes) -> None:
            got = self.cache.get(key)
            if self.live(key):
                assert got == self.model[key][0]
                self.model.move_to_end(key)
                self.atime[key] = self.lru
                self.hits += 1
            else:
                assert got is None
                self.misses += 1

        @rule(key=KEYS)
        def touch(self, key: bytes) -> None:
            got = self.cache.touch(key)
            if self.live(key):
                assert got == self.model[key][0]
                self.model.move_to_end(key)
                self.atime[key] = self.lru
            else:
                assert got is None

        @rule(key=KEYS)
        def peek_and_deadline(self, key: bytes) -> None:
            if self.live(key):
                assert self.cache.peek(key) == self.model[key][0]
                assert self.cache.deadline(key) == self.model[key][1]
                assert self.cache.idle_time(key) == max(0, self.lru - self.atime[key])
            else:
                assert self.cache.peek(key) is None
                assert key not in self.cache
                with pytest.raises(KeyError):
                    self.cache.deadline(key)
                assert self.cache.idle_time(key) is None

        @rule(key=KEYS)
        def delete(self, key: bytes) -> None:
            assert self.cache.delete(key) == self.live(key)
            self.model.pop(key, None)

        @rule(key=KEYS, ttl=st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 1.0, 3.0])))
        def expire(self, key: bytes, ttl: float | None) -> None:
            deadline = None if ttl is None else self.clock.now + ttl
            assert self.cache.expire_at(key, deadline) == self.live(key)
            if self.live(key):
                if deadline is not None and deadline <= self.clock.now:
                    del self.model[key]
                else:
                    self.model[key] = (self.model[key][0], deadline)
                    self.model.move_to_end(key)
                    self.atime[key] = self.lru

        @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
        def advance(self, dt: float) -> None:
            self.clock.now += dt

        @rule()
        def tick(self) -> None:
            self.cache.tick()
            self.lru = int(self.clock.now)

        @rule()
        def sweep(self) -> None:
            self.cache.active_expire()  # ticks the LRU clock first
            self.lru = int(self.clock.now)

        @precondition(lambda self: policy == "allkeys-lru")
        @rule()
        def order(self) -> None:
            assert self.cache.keys() == self.live_keys()

        # --- invariants -------------------------------------------------------------

        @invariant()
        def bounds_hold(self) -> None:
            stats = self.cache.stats()
            assert stats.keys <= max_keys
            assert stats.used_bytes <= max_bytes
            live = self.live_keys()
            assert sorted(self.cache.keys()) == sorted(live)
            assert stats.used_bytes >= sum(entry_size(k, self.model[k][0]) for k in live)
            # Exact accounting (white-box): what is charged is what the stored entries
            # cost, expired ones not reclaimed yet included, whether or not an entry keeps
            # its size (entry.py).
            stored = self.cache._data.items()
            assert stats.used_bytes == sum(entry_size(k, e[0]) for k, e in stored)

        @invariant()
        def counters_agree(self) -> None:
            stats = self.cache.stats()
            assert (stats.hits, stats.misses) == (self.hits, self.misses)

    return CacheMachine


BYTES_BOUND = 4 * entry_size(b"a", b"x" * 60)

LRU_KEYS = make_machine("allkeys-lru", 4, 10**9)
LRU_BYTES = make_machine("allkeys-lru", 8, BYTES_BOUND)
VOLATILE_LRU = make_machine("volatile-lru", 4, BYTES_BOUND)
VOLATILE_TTL = make_machine("volatile-ttl", 4, BYTES_BOUND)
RANDOM = make_machine("allkeys-random", 4, BYTES_BOUND)
NOEVICTION = make_machine("noeviction", 4, BYTES_BOUND)

# The exact-LRU machines get the most examples: they carry the strongest claim.
for machine, examples in (
    (LRU_KEYS, 50),
    (LRU_BYTES, 50),
    (VOLATILE_LRU, 30),
    (VOLATILE_TTL, 25),
    (RANDOM, 25),
    (NOEVICTION, 25),
):
    machine.TestCase.settings = settings(max_examples=examples, stateful_step_count=40)

TestLRUByKeys = LRU_KEYS.TestCase
TestLRUByBytes = LRU_BYTES.TestCase
TestVolatileLRU = VOLATILE_LRU.TestCase
TestVolatileTTL = VOLATILE_TTL.TestCase
TestAllkeysRandom = RANDOM.TestCase
TestNoEviction = NOEVICTION.TestCase
