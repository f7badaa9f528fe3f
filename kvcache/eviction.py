"""Eviction policies: which key to drop when the cache is full.

When a write would push the cache past `max_keys` or `max_bytes`, `LRUCache` asks
`pick_victim` for a key to drop, drops it, and asks again until the write fits. The policy
names and meanings are Redis's `maxmemory-policy` values:

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
keep deadlines in a plain dict, cheaper per write).

Read next: `cache.py`, which keeps these tables and calls `pick_victim`.

Simpler than the real thing: no LFU policies (`allkeys-lfu`, `volatile-lfu`), no
`volatile-random`, no `maxmemory-samples` / `maxmemory-eviction-tenacity` knobs.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

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
    all_keys: KeyBag,
    volatile_keys: KeyBag,
    rng: random.Random,
    exclude: Any,
) -> Any:
    """The key to evict under `policy`, never `exclude` (the key being written); None if none.

    `data` is in recency order, least recently used first; so is `deadlines` under
    volatile-lru (elsewhere its order only matters as a fallback).
    """
    if policy == ALLKEYS_LRU:
        return _first_other(data, exclude)
    if policy == VOLATILE_LRU:
        return _first_other(deadlines, exclude)
    if policy == ALLKEYS_RANDOM:
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
