"""kvcache: the cache layer — an LRU + TTL cache, embedded or served over RESP (a small Redis).

On the request's journey the appserver asks kvcache first (`GET stock:<sku>`) and falls back
to minidb on a miss (cache-aside); the gateways may share rate-limit counters through it.
Everything here is volatile: a restart forgets every key, as a Redis without persistence.

Map of the package, in reading order:

- `cache.py`     — `LRUCache`: the tables, reads and writes, lazy expiry, counters.
                   Start here.
- `entry.py`     — one entry `(value, size, atime)`: its charge and the coarse LRU clock.
- `eviction.py`  — the bounds and the eviction policies (`allkeys-lru`, `volatile-lru`,
                   `allkeys-random`, `volatile-ttl`, `noeviction`).
- `expiry.py`    — active expiry: the time-budgeted sweep over random keys with a TTL.
- `keyspace.py`  — the cache as commands see it: Unix ms, `-OOM`, SCAN cursors.
- `commands_strings.py` — GET, SET and the rest of Redis's string family.
- `long_double.py` — INCRBYFLOAT's 80-bit arithmetic, so its digits match Redis's.
- `commands_keys.py`    — DEL, EXISTS, EXPIRE, TTL, SCAN… (the generic-key family).
- `commands_object.py`  — OBJECT ENCODING/REFCOUNT/IDLETIME/FREQ/HELP.
- `commands_server.py`  — INFO, CONFIG GET/SET, DBSIZE, FLUSHDB and the keyspace state.
- `server.py`    — wires the commands onto the shared RESP engine (`minisys.resp`).
- `__main__.py`  — `python -m kvcache --port 6380 --max-memory 64mb --policy allkeys-lru`.

Embedded use:

    from kvcache import LRUCache
    cache = LRUCache(max_keys=10_000, max_bytes=16 * 1024 * 1024)
    cache.set("user:1", b"...", ttl=30)
    cache.get("user:1")
"""

from kvcache.cache import CacheStats, LRUCache, OutOfMemory, entry_size
from kvcache.eviction import POLICIES

__all__ = ["POLICIES", "CacheStats", "LRUCache", "OutOfMemory", "entry_size"]
