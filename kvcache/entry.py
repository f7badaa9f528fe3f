"""One cache entry: what a key carries, what it is charged, and the clock that stamps it.

On the request's journey: every `SET stock:<sku> 42` from the appserver becomes one entry
in `LRUCache`'s `data` table (cache.py), and every `GET` reads one. This module says
what that entry is, in one place, so cache.py, eviction.py and expiry.py agree on it:

    data[key] = (value, size, atime)

- `value`: the stored object (the server stores `bytes`).
- `size`: the bytes this entry is charged against `max_bytes` (`entry_size`), kept so
  that removing the entry gives back exactly what storing it took. (For bytes, two
  `len()` could recompute it and save the 32-byte int; measured, that cost ~700
  instructions per overwriting SET, +12%, so the int stays.)
- `atime`: the LRU clock at the entry's last use, in whole seconds: Redis's `robj.lru`.
  `OBJECT IDLETIME` answers `lru_clock - atime`.

The LRU clock is coarse on purpose, as Redis's is: `LRUCache.lru_clock` holds whole
seconds of the cache clock, refreshed by `tick()` (the server's 100 ms timer calls it
through `active_expire`, as Redis's serverCron refreshes `server.lruclock` at hz 10).
A read then stamps an entry with an attribute it already has, instead of calling the
clock. And because a tuple cannot be changed in place, a read rebuilds the entry only
when its stamp is older than the clock: a key read many times in one second is restamped
once. What the stamp costs (callgrind, instructions per operation, before it → with it):
a cache hit 2,656 → 2,807 (+6%; a whole engine GET 5,666 → 5,817, +3%), the first read
of a key in a new second, which rebuilds the tuple, 2,678 → 3,998 (engine: +23%), an
overwriting SET 5,678 → 6,038 (+6%). Why a tuple and not a mutable list: a list stamped
in place costs ~120 per read, first in a second or not; but a 3-list takes 32 bytes more
per key than a 3-tuple (a 64-byte block, as the 2-tuple before it), and lists stay
tracked by the garbage collector while tuples of bytes and ints are untracked: a full
collection over 1M list entries took 4x as long (930 ms vs 210 ms).

Recency itself does not need the stamp: `data` is an OrderedDict kept in use order, so
the least recently used key is its first one, exactly (eviction.py).

Simpler than the real thing: Redis packs type, encoding, a 24-bit LRU clock and a
refcount into a 16-byte header per value; a Python tuple of three references is what we
can afford, and the charged size is an estimate measured with tracemalloc, not malloc's.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

# Bytes charged per entry on top of the key's and value's own sizes: measured with
# tracemalloc on CPython 3.11 (200k entries) as ~200 for the data slot (OrderedDict entry
# and node, the (value, size, atime) tuple, the size int) plus ~60 for a deadlines slot
# (dict entry, float, a bag slot; ~115 as an OrderedDict under volatile-lru), and 8-16
# for a slot in the all-keys bag once one exists (cache.py's `_key_bag`). Every entry is
# charged for a deadline slot, used or not, so that EXPIRE never makes an entry bigger:
# the bounds then hold without evicting on EXPIRE.
ENTRY_OVERHEAD = 260

_sizeof = sys.getsizeof
# What a bytes key plus a bytes value are charged beyond their lengths: getsizeof(b"")
# is the bytes header, and getsizeof(b) == getsizeof(b"") + len(b) for any bytes b.
# The server stores only bytes, and sys.getsizeof (argument parsing, a method lookup)
# costs more than the rest of a SET: two len() give the same figure.
BYTES_ENTRY = 2 * _sizeof(b"") + ENTRY_OVERHEAD


def entry_size(key: Hashable, value: Any) -> int:
    """The bytes a cache entry is charged: an honest estimate, not an exact count."""
    if key.__class__ is bytes and value.__class__ is bytes:
        return len(key) + len(value) + BYTES_ENTRY  # type: ignore[arg-type]
    return _sizeof(key) + _sizeof(value) + ENTRY_OVERHEAD


def idle_seconds(lru_clock: int, atime: int) -> int:
    """Whole seconds since the entry was last used; never negative (a clock set back)."""
    return lru_clock - atime if lru_clock > atime else 0


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of the cache's counters and sizes at one moment (`LRUCache.stats`)."""

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
