"""Cache-aside reads, and a cache that may fail without failing the request.

The seed's read path ("check the cache, fall back to the db and fill the cache") is the
cache-aside pattern: the application, not the cache, knows where data comes from.

    read:    GET key from the cache ─ hit ─▶ done
                  │ miss
                  ▼
             read the db ─▶ SET key value EX ttl in the cache ─▶ done
    write:   write the db ─▶ DEL key in the cache   (invalidate; the next read refills)

Two lessons live here.

1. The cache is an optimisation, never the source of truth. `GuardedCache` turns every
   cache failure into a miss, logs it, and then leaves the cache alone for a short
   cool-down (`CACHE_COOLDOWN`), so a dead kvcache costs each request nothing instead of
   a connect timeout. Reads go to the db ("degraded"), orders still succeed.
2. Cache-aside has a known race. A reader misses, reads the db (stock 5); meanwhile an
   order commits (stock 3) and invalidates; then the slow reader fills the cache with its
   stale 5. The TTL (`ttl` argument, short for stock) is what bounds how long such a stale
   value lives. That is why the order flow uses the cached stock only as a quick pre-check
   and decides in the database, under WATCH.

Read next: `products.py` and `orders.py`, the two users of this module.

Simpler than the real thing: no request coalescing (many misses for one key all go to the
db), no probabilistic early refresh, no leases (Facebook's memcache paper fixes the race
above with them).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from appserver.stores import Cache, StoreError, StoreUnavailable
from minisys.logs import get_logger
from minisys.metrics import Registry

# After a cache failure we skip the cache for this long: long enough that a dead cache
# costs one timeout per second rather than one per request, short enough to notice it back.
CACHE_COOLDOWN = 1.0

log = get_logger("appserver.cache")


class CacheRead(NamedTuple):
    """Values (None where neither cache nor db has the key) and where they came from:
    "HIT" all from the cache, "MISS" some from the db, "BYPASS" the cache is skipped
    (degraded). The routes send it as the `X-Cache` header, as CDNs and proxies do."""

    values: list[bytes | None]
    status: str


class GuardedCache:
    """A `Cache` whose failures become misses; `degraded` tells whether it is failing."""

    def __init__(
        self,
        cache: Cache,
        *,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.monotonic,
        cooldown: float = CACHE_COOLDOWN,
    ) -> None:
        self.cache = cache
        self.clock = clock
        self.cooldown = cooldown
        self._skip_until = -math.inf
        registry = registry or Registry()
        requests = registry.counter(
            "appserver_cache_requests_total", "Cache lookups by result.", ["result"]
        )
        # One handle per result, kept: counting is then an addition, not a label lookup.
        self._hits = requests.labels(result="hit")
        self._misses = requests.labels(result="miss")
        self._skipped = requests.labels(result="skipped")
        self._errors = requests.labels(result="error")

    @property
    def degraded(self) -> bool:
        """True while we are skipping the cache after a failure."""
        # No clock call until a first failure: every cache call asks this.
        return self._skip_until != -math.inf and self.clock() < self._skip_until

    def _failed(self, what: str, exc: Exception) -> None:
        if not self.degraded:
            log.warning(
                "cache %s failed (%s); reading from the db for %.1fs", what, exc, self.cooldown
            )
        self._skip_until = self.clock() + self.cooldown
        self._errors.inc()

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Cached values, None for each miss (every key is a miss while degraded)."""
        if self.degraded:
            self._skipped.inc(len(keys))
            return [None] * len(keys)
        try:
            values = await self.cache.mget(keys)
        except (StoreUnavailable, StoreError) as exc:
            self._failed("read", exc)
            return [None] * len(keys)
        misses = values.count(None)
        self._hits.inc(len(keys) - misses)
        if misses:
            self._misses.inc(misses)
        return values

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if self.degraded:
            return
        try:
            await self.cache.set(key, value, ttl)
        except (StoreUnavailable, StoreError) as exc:
            self._failed("fill", exc)

    async def invalidate(self, *keys: str) -> None:
        """DEL after a db write. If the cache is unreachable the TTL bounds the staleness."""
        if self.degraded or not keys:
            return
        try:
            await self.cache.delete(*keys)
        except (StoreUnavailable, StoreError) as exc:
            self._failed("invalidate", exc)

    async def read_through_many(
        self,
        keys: Sequence[str],
        ttls: Sequence[float],
        load: Callable[[Sequence[str]], Awaitable[list[bytes | None]]],
        *,
        deferred: int = 0,
    ) -> CacheRead:
        """The cache-aside read, for several keys in one round trip each way: MGET the
        cache, load only the misses from the db (one MGET), fill the cache with them.

        The last `deferred` keys are only looked up in the cache; their misses stay None
        for a caller that reads them from the db its own way and fills them itself (the
        order flow reads stock under WATCH anyway, so a second db read would be waste)."""
        status = "BYPASS" if self.degraded else "HIT"
        values = await self.mget(keys)
        loadable = len(keys) - deferred
        missing = [n for n, value in enumerate(values[:loadable]) if value is None]
        if missing:
            loaded = await load([keys[n] for n in missing])
            fills = []
            for n, value in zip(missing, loaded, strict=True):
                values[n] = value
                if value is not None:
                    fills.append(self.set(keys[n], value, ttls[n]))
            await asyncio.gather(*fills)  # sent together: pipelined on one connection
            if status == "HIT":
                status = "MISS"
        return CacheRead(values, status)

    async def reachable(self) -> bool:
        """Ping the cache now (readiness), ignoring the cool-down."""
        try:
            await self.cache.ping()
        except (StoreUnavailable, StoreError):
            return False
        self._skip_until = -math.inf
        return True
