"""Order ids without a database write per order: hi/lo allocation.

The obvious way to number orders is `INCR seq:order` for each one. On a durable database
that is one more fsync'd write on every order's critical path. Instead each appserver
reserves a block of ids at a time:

    INCRBY seq:order 100  → 300     this process now owns 201…300
    orders 201, 202, … 300 use no round trip at all; the 101st order reserves 301…400

Ids stay unique across any number of appservers (INCRBY is atomic), but they are no longer
dense or in time order across processes: two appservers hand out 201… and 301… side by
side, and a restart abandons the rest of a block. Hibernate calls this "hilo"; Twitter's
Snowflake and UUIDv7 avoid the database entirely at the price of much longer ids.

Read next: `orders.py`, the only user.

Simpler than the real thing: a fixed block size; no time component in the id.
"""

from __future__ import annotations

import asyncio

from appserver.stores import Db

# Ids reserved per INCRBY: one db write per this many orders, and at most this many ids
# lost when a process stops.
ID_BLOCK = 100


class IdAllocator:
    """Unique, increasing-per-process ids from a db counter, a block at a time."""

    def __init__(self, db: Db, key: str, block: int = ID_BLOCK) -> None:
        self.db = db
        self.key = key
        self.block = block
        self._next = 0
        self._limit = 0  # first id not ours
        # The INCRBY in flight, shared by every order that runs out of ids meanwhile, so a
        # burst reserves one block, not one block per waiting order.
        self._refill: asyncio.Future[None] | None = None

    async def next_id(self) -> int:
        while self._next >= self._limit:
            refill = self._refill
            if refill is None or refill.done():
                refill = self._refill = asyncio.ensure_future(self._reserve())
            await asyncio.shield(refill)
        order_id = self._next
        self._next += 1
        return order_id

    async def _reserve(self) -> None:
        high = await self.db.incr(self.key, self.block)
        self._next, self._limit = high - self.block + 1, high + 1
