"""`LRUCache`: the embedded cache — O(1) get/set/delete, per-key TTL, bounded, counted.

This is the heart of kvcache. The RESP server (`server.py`, `commands_*.py`) is a thin
shell that turns Redis commands into calls on one `LRUCache`; an application can also use
it directly in-process (`from kvcache import LRUCache`).

Three tables, Redis's layout in Python clothes:

    data       OrderedDict key -> (value, charged_bytes)   least recently used first
    deadlines  dict key -> deadline (clock seconds)         only keys with a TTL; an
               OrderedDict in recency order under volatile-lru, which needs that order
    bags       KeyBag of all keys, KeyBag of keys with a TTL (random sampling, expiry.py)

- A read (`get`) checks the deadline (lazy expiry), then moves the key to the end of
  `data` (and of an ordered `deadlines`): "most recently used" is "last". `peek` reads
  without that.
- A write (`set`/`store`) charges `sizeof(key) + sizeof(value) + ENTRY_OVERHEAD` bytes
  and, when that would pass `max_keys` or `max_bytes`, evicts victims chosen by the policy
  (`eviction.py`) until it fits, or raises `OutOfMemory` under `noeviction`.
- `active_expire()` is the periodic sweep (`expiry.py`); the server calls it every tick.
- Counters (hits, misses, evictions, expirations) are plain attributes, snapshotted by
  `stats()`.

The clock is a parameter (`clock=time.time` by default: deadlines are absolute Unix
seconds, so `EXPIREAT` and `PEXPIRETIME` mean what they mean in Redis); tests pass a fake.

Simpler than the real thing: one database, values are opaque Python objects (the server
stores only strings, so `WRONGTYPE` never arises), the memory figure is an estimate rather
than the allocator's count, and a write that cannot fit is refused up front instead of
Redis's "evict before each command, overshoot a little".
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from kvcache.eviction import ALLKEYS_LRU, NOEVICTION, VOLATILE_LRU, check_policy, pick_victim
from kvcache.expiry import DEFAULT_BUDGET, KeyBag, active_expire_cycle

# Bytes charged per entry on top of the key's and value's own sizes: measured with
# tracemalloc on CPython 3.11 as ~200 for the data slot (OrderedDict entry and node, the
# (value, size) tuple, the size int, the bag slot) plus ~80 for a deadlines slot (dict
# entry, float; ~130 as an OrderedDict under volatile-lru). Every entry is charged for a
# deadline slot, used or not, so that EXPIRE never makes an entry bigger: the bounds then
# hold without evicting on EXPIRE.
ENTRY_OVERHEAD = 280
# Defaults for the embedded cache; 0 means "no bound" (Redis's `maxmemory 0`).
DEFAULT_MAX_KEYS = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_MISSING = object()
_sizeof = sys.getsizeof
# What a bytes key plus a bytes value are charged beyond their lengths: getsizeof(b"")
# is the bytes header, and getsizeof(b) == getsizeof(b"") + len(b) for any bytes b.
_BYTES_ENTRY = 2 * _sizeof(b"") + ENTRY_OVERHEAD


class OutOfMemory(Exception):
    """A write would pass a bound and the policy may not (or cannot) evict anything."""


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of the counters and sizes at one moment."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    keys: int
    volatile_keys: int
    used_bytes: int
    max_keys: int
    max_bytes: int
    policy: str


def entry_size(key: Hashable, value: Any) -> int:
    """The bytes a cache entry is charged: an honest estimate, not an exact count."""
    return _sizeof(key) + _sizeof(value) + ENTRY_OVERHEAD


class LRUCache:
    """A bounded key-value cache with per-key TTL and Redis's eviction policies."""

    def __init__(
        self,
        max_keys: int = DEFAULT_MAX_KEYS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        policy: str = ALLKEYS_LRU,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
        on_evict: Callable[[Any, Any], None] | None = None,
    ) -> None:
        if max_keys < 0 or max_bytes < 0:
            raise ValueError("max_keys and max_bytes must be >= 0 (0 = unbounded)")
        self._max_keys = max_keys
        self._max_bytes = max_bytes
        self._set_limits()
        self._policy = check_policy(policy)
        self.noeviction = self._policy == NOEVICTION  # writes may be refused (read-only)
        self._clock = clock
        self._timer = timer
        self._rng = rng or random.Random()
        self._on_evict = on_evict
        self._data: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._deadlines: dict[Any, float] = {}
        self._volatile_order = False  # is `_deadlines` an OrderedDict kept in LRU order?
        self._order_deadlines()
        self._all_keys = KeyBag()
        self._volatile_keys = KeyBag()
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    # --- reading ------------------------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value (refreshing its recency, counting a hit), or `default` (a miss)."""
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return default
        deadlines = self._deadlines
        if deadlines:
            deadline = deadlines.get(key)
            if deadline is not None:
                if self._clock() > deadline:
                    self._expire(key)
                    self.misses += 1
                    return default
                if self._volatile_order:
                    deadlines.move_to_end(key)
        self._data.move_to_end(key)
        self.hits += 1
        return entry[0]

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """The value without touching recency or counters; expired keys are still dropped."""
        entry = self._data.get(key)
        if entry is None or self._expired(key):
            return default
        return entry[0]

    def probe(self, key: Hashable, default: Any = None) -> Any:
        """Like `peek`, but counts a hit or a miss (Redis's lookups that do not touch)."""
        value = self.peek(key, _MISSING)
        if value is _MISSING:
            self.misses += 1
            return default
        self.hits += 1
        return value

    def __contains__(self, key: Hashable) -> bool:
        return self.peek(key, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[Any]:
        """Live keys, least recently used first, over a copy (see `keys`)."""
        return iter(self.keys())

    def __len__(self) -> int:
        """Keys held, including expired ones not reclaimed yet (as Redis's DBSIZE)."""
        return len(self._data)

    def deadline(self, key: Hashable) -> float | None:
        """The key's deadline on the cache clock, None if it has no TTL; KeyError if absent."""
        if self.peek(key, _MISSING) is _MISSING:
            raise KeyError(key)
        return self._deadlines.get(key)

    def keys(self) -> list[Any]:
        """Every live key, least recently used first (a copy: safe to mutate the cache)."""
        if not self._deadlines:
            return list(self._data)
        now = self._clock()
        deadlines = self._deadlines
        return [k for k in self._data if not (k in deadlines and now > deadlines[k])]

    def key_snapshot(self) -> list[Any]:
        """A fast (C-speed) copy of every stored key, expired ones not reclaimed included;
        for iterations that re-check each key later (SCAN)."""
        return list(self._data)

    def random_key(self) -> Any:
        """A random live key, or None when the cache is empty."""
        while self._data:
            for key in self._all_keys.sample(self._rng, self._data, 1):
                if not self._expired(key):
                    return key
            if not self._all_keys.keys:
                self._all_keys.rebuild(self._data)
        return None

    # --- writing ------------------------------------------------------------------------

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store `value`; `ttl` seconds from now (> 0) or no expiry. Raises OutOfMemory."""
        if ttl is None:
            self.store(key, value)
            return
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        self.store(key, value, self._clock() + ttl)

    def store(
        self, key: Hashable, value: Any, deadline: float | None = None, *, keep_ttl: bool = False
    ) -> None:
        """Store `value` until the absolute `deadline` (None: never), or keep the old one.

        Like Redis's SET, a write without a deadline clears any TTL the key had unless
        `keep_ttl`. Raises OutOfMemory when it cannot fit (see `_make_room` for what
        may have been evicted by then).
        """
        data = self._data
        # The server stores only bytes, and sys.getsizeof (argument parsing, a method
        # lookup) costs more than the rest of a SET: two len() give the same figure.
        if key.__class__ is bytes and value.__class__ is bytes:
            size = len(key) + len(value) + _BYTES_ENTRY
        else:
            size = _sizeof(key) + _sizeof(value) + ENTRY_OVERHEAD
        old = data.get(key)
        if old is not None and self._deadlines and self._expired(key):
            old = None
        if old is None:
            if len(data) >= self._key_limit or self.used_bytes + size > self._byte_limit:
                self._make_room(key, size, new_key=True)
            data[key] = (value, size)
            # KeyBag.add, inlined: this line runs for every new key.
            bag = self._all_keys
            bag.keys.append(key)
            if len(bag.keys) > bag.limit:
                bag.rebuild(data)
            self.used_bytes += size
        else:
            grow = size - old[1]
            if self.used_bytes + grow > self._byte_limit:
                self._make_room(key, size, new_key=False)
            data[key] = (value, size)
            data.move_to_end(key)
            self.used_bytes += grow
        deadlines = self._deadlines
        if keep_ttl and old is not None:
            if self._volatile_order and key in deadlines:
                deadlines.move_to_end(key)
        elif deadline is None:
            if deadlines:
                deadlines.pop(key, None)
        elif key in deadlines:
            deadlines[key] = deadline
            if self._volatile_order:
                deadlines.move_to_end(key)
        else:
            deadlines[key] = deadline
            self._volatile_keys.add(key, deadlines)

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

    def delete(self, key: Hashable) -> bool:
        """Remove `key`; True if it was there (and not expired)."""
        if key not in self._data:
            return False
        if self._expired(key):
            return False
        self._remove(key)
        return True

    def expire_at(self, key: Hashable, deadline: float | None) -> bool:
        """Give a live key a new deadline (None: persist); False if the key is absent.

        A deadline already reached deletes the key at once, as Redis's EXPIRE does.
        """
        if self.peek(key, _MISSING) is _MISSING:
            return False
        deadlines = self._deadlines
        if deadline is None:
            deadlines.pop(key, None)
        elif deadline <= self._clock():
            self._remove(key)
            return True
        else:
            fresh = key not in deadlines
            deadlines[key] = deadline
            if self._volatile_order:
                deadlines.move_to_end(key)
            if fresh:
                self._volatile_keys.add(key, deadlines)
        # Redis's EXPIRE looks the key up for writing, which counts as a use.
        self._data.move_to_end(key)
        return True

    def clear(self) -> None:
        """Drop every key (FLUSHDB); counters are kept."""
        self._data.clear()
        self._deadlines.clear()
        self._all_keys.rebuild(())
        self._volatile_keys.rebuild(())
        self.used_bytes = 0

    # --- bounds, policy and the sweep ---------------------------------------------------

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
        even one that would fit. A plain attribute read, for the SET path."""
        return self.noeviction and (
            len(self._data) > self._key_limit or self.used_bytes > self._byte_limit
        )

    def active_expire(self, budget: float = DEFAULT_BUDGET) -> int:
        """One time-budgeted sweep of random keys with a TTL; returns how many expired."""
        if not self._deadlines:
            return 0
        return active_expire_cycle(
            self._volatile_keys,
            self._deadlines,
            self._expire,
            now=self._clock,
            timer=self._timer,
            rng=self._rng,
            budget=budget,
        )

    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            expirations=self.expirations,
            keys=len(self._data),
            volatile_keys=len(self._deadlines),
            used_bytes=self.used_bytes,
            max_keys=self._max_keys,
            max_bytes=self._max_bytes,
            policy=self._policy,
        )

    # --- internals ----------------------------------------------------------------------

    def _expired(self, key: Any) -> bool:
        """Lazy expiry: True (and the key is gone) if its deadline has passed."""
        deadline = self._deadlines.get(key)
        if deadline is not None and self._clock() > deadline:
            self._expire(key)
            return True
        return False

    def _expire(self, key: Any) -> None:
        self._remove(key)
        self.expirations += 1

    def _remove(self, key: Any) -> Any:
        value, size = self._data.pop(key)
        self.used_bytes -= size
        if self._deadlines:
            self._deadlines.pop(key, None)
        return value

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
        # The hot path compares against these: "0 = unbounded" becomes infinity once here.
        self._key_limit = self._max_keys or math.inf
        self._byte_limit = self._max_bytes or math.inf

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
            self._all_keys,
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
