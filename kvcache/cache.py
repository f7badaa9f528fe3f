"""`LRUCache`: the embedded cache — O(1) get/set/delete, per-key TTL, bounded, counted.

This is the heart of kvcache. The RESP server (`server.py`, `commands_*.py`) is a thin
shell that turns Redis commands into calls on one `LRUCache`; an application can also use
it directly in-process (`from kvcache import LRUCache`).

Four tables, Redis's layout in Python clothes:

    data       OrderedDict key -> (value, size, atime)      least recently used first
               (the entry: entry.py)
    deadlines  dict key -> deadline (clock seconds)         only keys with a TTL; an
               OrderedDict in recency order under volatile-lru, which needs that order
    bags       KeyBag of keys with a TTL (random sampling, expiry.py); KeyBag of all
               keys, built only once a random key is wanted (`_key_bag`)
    tags       dict key -> tag                              only tagged values (rare)

- A read (`get`) checks the deadline (lazy expiry), then moves the key to the end of
  `data` (and of an ordered `deadlines`) and stamps its access time: "most recently
  used" is "last". `peek` reads without any of that, `probe` counts a hit or a miss
  without touching, `touch` touches without counting (Redis's three kinds of lookup).
- A write (`set`/`store`) charges `entry_size` bytes and, when that would pass
  `max_keys` or `max_bytes`, evicts victims chosen by the policy until it fits, or
  raises `OutOfMemory` (the bounds and the policies: `Eviction`, eviction.py).
- `active_expire()` is the periodic sweep (`expiry.py`); the server calls it every tick,
  and it refreshes the coarse LRU clock that access times are stamped with.
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

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from kvcache.entry import BYTES_ENTRY, CacheStats, entry_size, idle_seconds
from kvcache.eviction import ALLKEYS_LRU, Eviction, OutOfMemory
from kvcache.expiry import DEFAULT_BUDGET, KeyBag, active_expire_cycle

__all__ = ["CacheStats", "LRUCache", "OutOfMemory", "entry_size"]

# Defaults for the embedded cache; 0 means "no bound" (Redis's `maxmemory 0`).
DEFAULT_MAX_KEYS = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_MISSING = object()


class LRUCache(Eviction):
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
        self._clock = clock
        self._timer = timer
        self._rng = rng or random.Random()
        self._on_evict = on_evict
        self._data: OrderedDict[Any, tuple[Any, int, int]] = OrderedDict()
        self._deadlines: dict[Any, float] = {}
        self._tags: dict[Any, Any] = {}
        self._all_keys: KeyBag | None = None  # built on first need: see `_key_bag`
        self._volatile_keys = KeyBag()
        self._init_bounds(max_keys, max_bytes, policy)
        self._order_deadlines()
        self.lru_clock = int(clock())  # whole seconds; access times are stamped with it
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    # --- reading ------------------------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value (refreshing its recency and access time, counting a hit), or
        `default` (a miss)."""
        data = self._data
        entry = data.get(key)
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
        data.move_to_end(key)
        # Restamp only when the stamp is older than the clock (entry.py): one rebuild
        # per key per second at most. `is not` and not `!=`: every stamp of one tick is
        # the very int object `lru_clock` holds, and identity is a pointer compare where
        # `!=` on ints past 2**30 is a full comparison (callgrind: -72 instructions, -2.5%,
        # per cache hit).
        if entry[2] is not self.lru_clock:
            data[key] = (entry[0], entry[1], self.lru_clock)
        self.hits += 1
        return entry[0]

    def touch(self, key: Hashable, default: Any = None) -> Any:
        """Like `get` without counting a hit or miss: how Redis looks a key up for a
        write (SET NX, INCR, EXPIRE …), which refreshes its recency and access time."""
        if self.peek(key, _MISSING) is _MISSING:
            return default
        self._use(key)
        return self._data[key][0]

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

    def idle_time(self, key: Hashable) -> int | None:
        """Whole seconds of the LRU clock since the key was last used (Redis's OBJECT
        IDLETIME), without touching it; None if absent."""
        if self.peek(key, _MISSING) is _MISSING:
            return None
        return idle_seconds(self.lru_clock, self._data[key][2])

    def tag(self, key: Hashable) -> Any:
        """The tag stored with the key's value (see `store`); None if none or absent."""
        if self.peek(key, _MISSING) is _MISSING:
            return None
        return self._tags.get(key)

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
        bag = self._key_bag()
        while self._data:
            for key in bag.sample(self._rng, self._data, 1):
                if not self._expired(key):
                    return key
            if not bag.keys:
                bag.rebuild(self._data)
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
        self,
        key: Hashable,
        value: Any,
        deadline: float | None = None,
        *,
        keep_ttl: bool = False,
        tag: Any = None,
    ) -> None:
        """Store `value` until the absolute `deadline` (None: never), or keep the old one.

        Like Redis's SET, a write without a deadline clears any TTL the key had unless
        `keep_ttl`. `tag` is an opaque label kept with this value until the key is
        written again or removed (the server records how Redis would encode the value).
        Raises OutOfMemory when it cannot fit (see `_make_room` for what may have been
        evicted by then).
        """
        data = self._data
        if key.__class__ is bytes and value.__class__ is bytes:
            size = len(key) + len(value) + BYTES_ENTRY  # entry_size, inlined: every SET
        else:
            size = entry_size(key, value)
        old = data.get(key)
        if old is not None and self._deadlines and self._expired(key):
            old = None
        if old is None:
            if len(data) >= self._key_limit or self.used_bytes + size > self._byte_limit:
                self._make_room(key, size, new_key=True)
            data[key] = (value, size, self.lru_clock)
            bag = self._all_keys
            if bag is not None:  # KeyBag.add, inlined: this runs for every new key
                bag.keys.append(key)
                if len(bag.keys) > bag.limit:
                    bag.rebuild(data)
            self.used_bytes += size
        else:
            grow = size - old[1]
            if self.used_bytes + grow > self._byte_limit:
                self._make_room(key, size, new_key=False)
            data[key] = (value, size, self.lru_clock)
            data.move_to_end(key)
            self.used_bytes += grow
            if self._tags:  # a tag describes the value it came with (a new key has none)
                self._tags.pop(key, None)
        if tag is not None:
            self._tags[key] = tag
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
            if fresh:
                self._volatile_keys.add(key, deadlines)
        # Redis's EXPIRE looks the key up for writing, which counts as a use.
        self._use(key)
        return True

    def clear(self) -> None:
        """Drop every key (FLUSHDB); counters are kept."""
        self._data.clear()
        self._deadlines.clear()
        self._tags.clear()
        self._all_keys = None
        self._volatile_keys.rebuild(())
        self.used_bytes = 0

    # --- the sweep and the counters ---------------------------------------------------

    def tick(self) -> None:
        """Refresh the LRU clock that access times are stamped with (whole seconds).

        Call it periodically; `active_expire` does, and the server runs that every
        100 ms, as Redis's serverCron refreshes its LRU clock 10 times a second.
        """
        now = int(self._clock())
        if now != self.lru_clock:
            self.lru_clock = now

    def active_expire(self, budget: float = DEFAULT_BUDGET) -> int:
        """One time-budgeted sweep of random keys with a TTL; returns how many expired.
        Refreshes the LRU clock first (`tick`)."""
        self.tick()
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

    def _key_bag(self) -> KeyBag:
        """The bag of all keys, for a random one (RANDOMKEY, allkeys-random eviction).

        Only those need it, so it is built the first time one asks (O(n) once) and kept
        up to date from then on; until then a new key costs no bag slot (8-16 bytes)
        and no append (callgrind: ~-6% instructions per new-key SET).
        """
        if self._all_keys is None:
            self._all_keys = KeyBag()
            self._all_keys.rebuild(self._data)
        return self._all_keys

    def _use(self, key: Any) -> None:
        """Make a live key the most recently used one, stamped with the LRU clock."""
        data = self._data
        data.move_to_end(key)
        entry = data[key]
        if entry[2] is not self.lru_clock:
            data[key] = (entry[0], entry[1], self.lru_clock)
        if self._volatile_order and key in self._deadlines:
            self._deadlines.move_to_end(key)  # type: ignore[attr-defined]

    def _remove(self, key: Any) -> Any:
        """Drop the key from every table; returns its value."""
        value, size, _ = self._data.pop(key)
        self.used_bytes -= size
        if self._deadlines:
            self._deadlines.pop(key, None)
        if self._tags:
            self._tags.pop(key, None)
        return value
