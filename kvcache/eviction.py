"""Eviction: the bounds, and which key to drop when a write would pass them.

On the request's journey: when the appserver's `SET stock:<sku> 42 EX 30` would push the
cache past `max_keys` or `max_bytes`, `Eviction._make_room` asks `pick_victim` for a key
to drop, drops it, and asks again until the write fits (or raises `OutOfMemory`, which
the server turns into Redis's `-OOM …`). `Eviction` is the part of `LRUCache` (cache.py)
that owns the bounds and the policy; the policy names and meanings are Redis's
`maxmemory-policy` values:

| policy           | candidates        | victim                                        |
|------------------|-------------------|-----------------------------------------------|
| `allkeys-lru`    | every key         | the least recently used (exact)               |
| `volatile-lru`   | keys with a TTL   | the least recently used of them (exact)       |
| `allkeys-random` | every key         | a random one                                  |
| `volatile-ttl`   | keys with a TTL   | the nearest deadline of `TTL_SAMPLES` random  |
| `noeviction`     | none              | none: the write fails with `OutOfMemory`      |

With no candidate left (a `volatile-*` policy and no key has a TTL, or `noeviction`) the
write fails, which the server turns into Redis's `-OOM …` error.

Why exact LRU when Redis samples: Redis keeps a 24-bit access clock per object and samples
5 keys into a 16-slot pool because a linked list per key costs memory in C. Python's
`OrderedDict` already is a hash table threaded on a linked list, so "least recently used"
is just its first key, O(1). Under `volatile-lru` the deadlines table is an `OrderedDict`
in recency order too, which makes that policy exact and O(1) as well (the other policies
keep deadlines in a plain dict, cheaper per write). Entries carry Redis's coarse access
time too (entry.py), but only for OBJECT IDLETIME: the order, not the stamp, picks victims.

Read next: `cache.py`, which keeps the tables this module reads and writes.

Simpler than the real thing: no LFU policies (`allkeys-lfu`, `volatile-lfu`), no
`volatile-random`, no `maxmemory-samples` / `maxmemory-eviction-tenacity` knobs.
"""

from __future__ import annotations

import random
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kvcache.entry import entry_size
from kvcache.expiry import KeyBag

ALLKEYS_LRU = "allkeys-lru"
VOLATILE_LRU = "volatile-lru"
ALLKEYS_RANDOM = "allkeys-random"
VOLATILE_TTL = "volatile-ttl"
NOEVICTION = "noeviction"
POLICIES = (ALLKEYS_LRU, VOLATILE_LRU, ALLKEYS_RANDOM, VOLATILE_TTL, NOEVICTION)

# volatile-ttl compares this many random keys with a TTL (Redis's maxmemory-samples).
TTL_SAMPLES = 5
# Random draws tried before giving up on finding a key other than the one being written.
RANDOM_TRIES = 16

# What "no bound" compares as: more keys or bytes than any process can hold.
UNBOUNDED = sys.maxsize

_MISSING = object()  # "exclude nothing": no key can be this object


class OutOfMemory(Exception):
    """A write would pass a bound and the policy may not (or cannot) evict anything."""


def check_policy(policy: str) -> str:
    """Return `policy` if it is one we know, else raise ValueError naming the choices."""
    if policy not in POLICIES:
        raise ValueError(f"unknown eviction policy {policy!r}; choose from {', '.join(POLICIES)}")
    return policy


def _first_other(table: dict[Any, Any], exclude: Any) -> Any:
    # Usually the very first key; the second one when the key being written is the oldest.
    for key in table:
        if key != exclude:
            return key
    return None


def pick_victim(
    policy: str,
    data: OrderedDict[Any, Any],
    deadlines: dict[Any, float],
    all_keys: KeyBag | None,
    volatile_keys: KeyBag,
    rng: random.Random,
    exclude: Any,
) -> Any:
    """The key to evict under `policy`, never `exclude` (the key being written); None if none.

    `data` is in recency order, least recently used first; so is `deadlines` under
    volatile-lru (elsewhere its order only matters as a fallback). `all_keys` is needed
    (and only passed) under allkeys-random.
    """
    if policy == ALLKEYS_LRU:
        return _first_other(data, exclude)
    if policy == VOLATILE_LRU:
        return _first_other(deadlines, exclude)
    if policy == ALLKEYS_RANDOM and all_keys is not None:
        if len(data) - (exclude in data) <= 0:
            return None
        for _ in range(RANDOM_TRIES):
            for key in all_keys.sample(rng, data, 1):
                if key != exclude:
                    return key
        return _first_other(data, exclude)
    if policy == VOLATILE_TTL:
        best = None
        for key in volatile_keys.sample(rng, deadlines, TTL_SAMPLES):
            if key != exclude and (best is None or deadlines[key] < deadlines[best]):
                best = key
        return best if best is not None else _first_other(deadlines, exclude)
    return None


class Eviction:
    """The bounds and the policy of an `LRUCache`: a base class holding this one concept.

    It works on the tables `LRUCache` keeps (declared here so a reader sees what it uses).
    """

    _data: OrderedDict[Any, tuple[Any, int, int]]
    _deadlines: dict[Any, float]
    _volatile_keys: KeyBag
    _rng: random.Random
    _on_evict: Callable[[Any, Any], None] | None
    used_bytes: int
    evictions: int

    def _init_bounds(self, max_keys: int, max_bytes: int, policy: str) -> None:
        if max_keys < 0 or max_bytes < 0:
            raise ValueError("max_keys and max_bytes must be >= 0 (0 = unbounded)")
        self._max_keys = max_keys
        self._max_bytes = max_bytes
        self._set_limits()
        self._policy = check_policy(policy)
        self.noeviction = self._policy == NOEVICTION  # writes may be refused (read-only)
        self._volatile_order = False  # is `_deadlines` an OrderedDict kept in LRU order?

    @property
    def max_keys(self) -> int:
        return self._max_keys

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def policy(self) -> str:
        return self._policy

    def configure(
        self,
        *,
        max_keys: int | None = None,
        max_bytes: int | None = None,
        policy: str | None = None,
    ) -> None:
        """Change bounds or policy at run time (CONFIG SET); evicts down to new bounds."""
        if policy is not None:
            self._policy = check_policy(policy)
            self.noeviction = self._policy == NOEVICTION
            self._order_deadlines()
        if max_keys is not None:
            if max_keys < 0:
                raise ValueError("max_keys must be >= 0")
            self._max_keys = max_keys
        if max_bytes is not None:
            if max_bytes < 0:
                raise ValueError("max_bytes must be >= 0")
            self._max_bytes = max_bytes
        self._set_limits()
        while self._over_bounds(0, 0):
            victim = self._victim(_MISSING)
            if victim is None:
                break
            self._evict(victim)

    def refuses_writes(self) -> bool:
        """True under noeviction while over a bound, which happens when the bounds were
        lowered below what is stored: Redis then refuses every write that may grow memory,
        even one that would fit."""
        return self.noeviction and (
            len(self._data) > self._key_limit or self.used_bytes > self._byte_limit
        )

    def room_for(self, items: list[tuple[Any, Any]]) -> bool:
        """Would storing all these (key, value) pairs fit without evicting anything?

        MSET asks this under noeviction so that a batch is written whole or not at all.
        An expired key still counts as stored: replacing it frees what it held.
        """
        keys, used = len(self._data), self.used_bytes
        sizes: dict[Any, int] = {}
        for key, value in items:
            size = entry_size(key, value)
            if key in sizes:
                used += size - sizes[key]
            elif (old := self._data.get(key)) is not None:
                used += size - old[1]
            else:
                keys += 1
                used += size
            sizes[key] = size
        return keys <= self._key_limit and used <= self._byte_limit

    def _order_deadlines(self) -> None:
        """Keep `deadlines` in recency order only while volatile-lru needs it.

        An OrderedDict costs a linked-list node per key and a move per read; the other
        policies never look at the order, so they get a plain dict. Switching rebuilds
        the table once, in `data`'s order, which is the recency order of every key.
        """
        want = self._policy == VOLATILE_LRU
        if want == self._volatile_order:
            return
        deadlines = self._deadlines
        if want:
            self._deadlines = OrderedDict((k, deadlines[k]) for k in self._data if k in deadlines)
        else:
            self._deadlines = dict(deadlines)
        self._volatile_order = want

    def _set_limits(self) -> None:
        # The hot path compares against these: "0 = unbounded" becomes, once here, an int
        # no count can reach (an int, not math.inf: comparing an int with a float costs
        # more than with an int; callgrind, an overwriting SET: ~5,030 → ~4,930).
        self._key_limit = self._max_keys or UNBOUNDED
        self._byte_limit = self._max_bytes or UNBOUNDED

    def _over_bounds(self, new_keys: int, new_bytes: int) -> bool:
        return (
            len(self._data) + new_keys > self._key_limit
            or self.used_bytes + new_bytes > self._byte_limit
        )

    def _make_room(self, key: Any, size: int, *, new_key: bool) -> None:
        """Evict until `key` (of `size` bytes) fits, or raise OutOfMemory.

        Refusals known up front (noeviction, bigger than the cache) change nothing; a
        volatile policy that runs out of candidates keeps the evictions it already made,
        as Redis does.
        """
        if self._policy == NOEVICTION or size > self._byte_limit:
            raise OutOfMemory(key)
        data = self._data
        new_keys = 1 if new_key else 0
        grow = size if new_key else size - data[key][1]
        while len(data) + new_keys > self._key_limit or self.used_bytes + grow > self._byte_limit:
            if self._policy == ALLKEYS_LRU:
                # The common case, without the policy dispatch: the oldest key goes.
                victim = next(iter(data))
                if victim == key:
                    victim = self._victim(key)
            else:
                victim = self._victim(key)
            if victim is None:
                raise OutOfMemory(key)
            self._evict(victim)

    def _victim(self, exclude: Any) -> Any:
        return pick_victim(
            self._policy,
            self._data,
            self._deadlines,
            self._key_bag() if self._policy == ALLKEYS_RANDOM else None,
            self._volatile_keys,
            self._rng,
            exclude,
        )

    def _evict(self, key: Any) -> None:
        # Like Redis, a victim whose TTL already ran out (not reclaimed yet) still counts
        # as an eviction: the policy chose it, nobody looked at its deadline.
        value = self._remove(key)
        self.evictions += 1
        if self._on_evict is not None:
            self._on_evict(key, value)

    def _remove(self, key: Any) -> Any:
        raise NotImplementedError  # LRUCache's: drop the key from every table

    def _key_bag(self) -> KeyBag:
        raise NotImplementedError  # LRUCache's: the bag of all keys, built on first need
