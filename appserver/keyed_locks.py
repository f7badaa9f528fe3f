"""Queue this process's orders per product, so optimistic transactions stop colliding.

WATCH/MULTI/EXEC (`transactions.py`) is what keeps stock correct across every appserver:
it needs no coordination and cannot oversell. Its cost shows under contention: when
thirty orders for the same product are in flight, each round of WATCH … EXEC lets one
through and makes the other twenty-nine read again — wasted round trips, and on a durable
database the winner's EXEC waits for an fsync while the losers spin.

Inside one process we can do better for free: orders that touch the same stock key wait
their turn on a local lock, so they reach the database one after another and rarely
conflict. Across processes nothing changes — another appserver's order can still change
the stock between our WATCH and EXEC, and then EXEC refuses and we retry as before. The
lock is an optimisation; WATCH stays the guarantee.

    order A (sku-1, sku-3) ─ holds sku-1, sku-3 ─▶ WATCH … EXEC sent ─▶ releases
    order B (sku-3)        ─ waits for sku-3 ─────────────────────────▶ WATCH … EXEC
    order C (sku-2)        ─ holds sku-2 ─▶ WATCH … EXEC   (in parallel with A)

A turn ends when the EXEC is *sent*, not when its reply comes back. The database applies
an EXEC when it reads it and answers only after its fsync (Redis and minidb alike, under
`appendfsync always`), so B's WATCH, written after A's EXEC, reads the stock A left. On a
durable database the wait for the fsync was most of a turn; B now spends it reading.
(Should the database still read B's WATCH first, A's EXEC changes a key B watches, B's
EXEC refuses and B reads again: correctness never rests on the lock.) B may read what A
wrote while A's fsync still runs, as any other client of the database always could (a
`GET /orders/{id}` too): a crash in that window loses A's write and anything B wrote
after it (later in the log), never B's alone. Measured with
`bench/appserver.py --hot` (every order for one product, 32 connections, two runs each):
our stores 233 / 270 → 574 / 703 orders/s, appserver CPU per order 950 → 469–526 µs;
redis + beanstalkd 263 / 274 → 432 / 524.

Keys are always taken in sorted order, so two orders can never wait for each other in a
circle (the classic deadlock rule: one global lock order).

Read next: `orders.py`, the only user.

Simpler than the real thing: a database with row locks (`SELECT … FOR UPDATE`) queues
writers on the server, across all clients; this queue only spans one process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager


class KeyedLocks:
    """One asyncio.Lock per key, created on first use and dropped when nobody holds or
    waits for it (so the table stays as small as the number of keys in flight)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, keys: Iterable[str]) -> AsyncIterator[Callable[[], None]]:
        """Hold every key's lock for the block. Yields `release`: call it to let the next
        waiters in before the block ends (the order flow does once its EXEC is on its
        way); the block's end releases whatever is still held."""
        registered: list[str] = []  # keys whose user count we raised
        acquired: set[str] = set()  # keys whose lock we hold

        def release() -> None:
            while registered:
                key = registered.pop()
                lock, users = self._locks[key]
                if key in acquired:
                    lock.release()
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

        try:
            for key in sorted(set(keys)):
                lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
                self._locks[key] = (lock, users + 1)
                registered.append(key)
                await lock.acquire()
                acquired.add(key)
            yield release
        finally:
            release()

    def __len__(self) -> int:
        return len(self._locks)
