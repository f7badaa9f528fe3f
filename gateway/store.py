"""The shared rate-limit store: window counters in kvcache (or any Redis) over RESP.

On the request's journey this is the one network hop a `shared` limit adds: ratelimit.py
asks `window_counts(cur, prev, ttl)` and we send one pipeline to kvcache:

    SET  rl:consumer:demo:178…  0  PX 20000  NX     create this window's counter, with expiry
    INCR rl:consumer:demo:178…                       count this request (atomic in the store)
    GET  rl:consumer:demo:177…                       the previous window's total

Why not `INCR` + `PEXPIRE`: if the gateway died between the two, the key would live forever.
`SET … NX PX` creates the key *with* its expiry in one command, and INCR keeps an existing
key's TTL; the key name carries the window number, so a counter is never reused across
windows even if its expiry were late. Why no Lua: kvcache, like many Redis-compatible
stores, does not run scripts, and INCR's atomicity is all the correctness we need.

Every call is bounded by `timeout` (50 ms by default): a slow store must not become slow
requests. ratelimit.py decides what a failure means (fail open or closed).

Simpler than the real thing: Kong's redis policy and Envoy's global rate-limit service also
batch increments, shard keys and cache "over limit" answers locally for a moment.
"""

from __future__ import annotations

import asyncio

from minisys.resp.client import RespPool

# Connections to kvcache kept per gateway; each request holds one for one round trip.
STORE_POOL_SIZE = 8


class StoreError(Exception):
    """The store answered with an error or garbage."""


class RespStore:
    def __init__(self, url: str, timeout: float = 0.05, size: int = STORE_POOL_SIZE) -> None:
        self.url = url
        self.timeout = timeout
        self.pool = RespPool(url, size=size)

    async def window_counts(self, cur: str, prev: str, ttl_ms: int) -> tuple[int, int]:
        """Count one request in window `cur`; return (count in cur, count in prev)."""
        async with asyncio.timeout(self.timeout):
            replies = await self.pool.pipeline(
                [("SET", cur, "0", "PX", str(ttl_ms), "NX"), ("INCR", cur), ("GET", prev)]
            )
        count, previous = replies[1], replies[2]
        if not isinstance(count, int):
            raise StoreError(f"INCR answered {count!r}")
        if previous is None:
            return count, 0
        try:
            return count, int(previous)
        except (TypeError, ValueError):
            raise StoreError(f"previous window holds {previous!r}") from None

    async def close(self) -> None:
        await self.pool.close()
