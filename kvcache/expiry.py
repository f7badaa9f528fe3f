"""Active expiry: reclaim keys whose TTL ran out even when nobody reads them.

kvcache forgets a key in two ways, as Redis does:

- **lazily**: every read checks the key's deadline and deletes it if it has passed
  (`LRUCache.get`), so an expired value is never returned;
- **actively**: a periodic sweep (this module) samples random keys *that have a TTL*,
  deletes the expired ones, and keeps sampling while the sample was more than 10% expired.
  Without it, a key written once with a TTL and never read again would hold memory forever.

Sampling needs a random key in O(1), which a Python dict cannot give (`random.choice(list(d))`
copies every key). So keys with a TTL are also kept in a flat list, a `KeyBag`: a random
index is a random key. Removing from the middle of a list is O(n), so the bag is *lazy*: a
deleted key stays in the list until a sample lands on it (then it is swapped with the last
slot and popped, O(1)) or until the bag grows past twice the live keys and is rebuilt.
The same bag, over all keys, serves `allkeys-random` eviction and `RANDOMKEY`.

The sweep is time-budgeted like Redis's fast cycle (at most ~1 ms by default), so a burst
of expirations never stalls the event loop: what is left waits for the next tick.

Read next: `eviction.py` (what to drop when full) and `cache.py` (who calls this).

Simpler than the real thing: Redis samples straight from its hash table's buckets, runs a
slow cycle (25% of each 100 ms tick) and a fast one from its before-sleep hook, and tunes
both with `active-expire-effort`; we have one cycle, driven by the server's timer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

# Keys looked at per round (Redis's ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP).
KEYS_PER_LOOP = 20
# Keep sampling only while more than this share of a sample was expired (Redis's 10%):
# below it, what is left is not worth the CPU.
ACCEPTABLE_STALE_PERCENT = 10
# Default time budget of one sweep, in seconds (Redis's fast cycle is 1 ms).
DEFAULT_BUDGET = 0.001
# A bag may hold this many stale slots beyond twice its live keys before it is rebuilt;
# the slack keeps tiny caches from rebuilding on every write.
BAG_SLACK = 1024


class KeyBag:
    """A list of keys that gives a random live key in O(1), tolerating stale entries."""

    __slots__ = ("keys", "limit")

    def __init__(self) -> None:
        self.keys: list[Any] = []
        self.limit = BAG_SLACK

    def add(self, key: Any, live: Collection[Any]) -> None:
        """Remember `key`; rebuild from `live` when stale slots have piled up."""
        self.keys.append(key)
        if len(self.keys) > self.limit:
            self.rebuild(live)

    def rebuild(self, live: Iterable[Any]) -> None:
        """Forget every stale slot (and duplicate): the bag becomes exactly `live`."""
        self.keys = list(live)
        self.limit = 2 * len(self.keys) + BAG_SLACK

    def sample(self, rng: random.Random, live: Collection[Any], count: int) -> list[Any]:
        """Up to `count` random keys that are in `live` (with replacement).

        Stale slots found on the way are dropped, so each costs O(1) once.
        """
        keys = self.keys
        picked: list[Any] = []
        while keys and len(picked) < count:
            i = int(rng.random() * len(keys))
            key = keys[i]
            if key in live:
                picked.append(key)
            else:
                keys[i] = keys[-1]
                keys.pop()
        return picked


def active_expire_cycle(
    bag: KeyBag,
    deadlines: Mapping[Any, float],
    expire: Callable[[Any], None],
    *,
    now: Callable[[], float],
    timer: Callable[[], float],
    rng: random.Random,
    budget: float = DEFAULT_BUDGET,
) -> int:
    """Sample keys with a TTL and `expire` the ones past their deadline; return how many.

    `now` is the cache's clock (deadlines are on it); `timer` measures the budget and is a
    separate monotonic clock so that tests can freeze `now` and still end the loop.
    """
    stop_at = timer() + budget
    total = 0
    while True:
        sample = bag.sample(rng, deadlines, KEYS_PER_LOOP)
        if not sample:
            return total
        t = now()
        expired = 0
        for key in sample:
            deadline = deadlines.get(key)
            # Redis's rule: a key is expired once the clock is strictly past its deadline.
            if deadline is not None and t > deadline:
                expire(key)
                expired += 1
        total += expired
        if expired * 100 <= len(sample) * ACCEPTABLE_STALE_PERCENT or timer() >= stop_at:
            return total
