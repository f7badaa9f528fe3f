"""Optimistic transactions: read under WATCH, write in MULTI/EXEC, retry on conflict.

Redis-style databases (minidb, Redis) have no locks a client can hold. Instead:

    WATCH stock:sku-1 stock:sku-2        ─ "tell me if anyone writes these"
    MGET  stock:sku-1 stock:sku-2        ─ read (same round trip), decide in the application
    MULTI                                ─ start queueing writes
    DECRBY stock:sku-1 2
    DECRBY stock:sku-2 1
    SET order:17 {…}
    EXEC                                 ─ all of them, atomically … or nil if a watched
                                           key changed since WATCH: nothing was written

On nil we simply start again from WATCH with fresh values. Under contention (fifty buyers
for the last item) every round lets at least one transaction through, so progress is
guaranteed; a small random back-off (`BACKOFF_BASE` doubling up to `BACKOFF_CAP`, "full
jitter") keeps the losers from colliding again in lock-step. After `MAX_ATTEMPTS` rounds
we give up with 503 rather than spin forever.

`run_optimistic` owns that loop; the caller passes one attempt as a function that returns
`CONFLICT` when EXEC said nil.

Read next: `orders.py`, the transaction this exists for.

Simpler than the real thing: a SQL database would take row locks (SELECT … FOR UPDATE) or
run at SERIALIZABLE isolation and retry for you; here the retry is explicit and visible.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from appserver.problems import ProblemError
from appserver.stores import Db, Transaction

# Rounds before we give up. With N concurrent writers on one key the last one needs up to
# N rounds; 64 covers a burst far larger than our connection pool lets through at once.
MAX_ATTEMPTS = 64
# First back-off ceiling and its cap, in seconds ("full jitter": sleep uniform(0, ceiling)).
BACKOFF_BASE = 0.001
BACKOFF_CAP = 0.05


class _Conflict:
    def __repr__(self) -> str:
        return "CONFLICT"


CONFLICT = _Conflict()

T = TypeVar("T")


async def run_optimistic(
    db: Db,
    attempt: Callable[[Transaction], Awaitable[T | _Conflict]],
    *,
    max_attempts: int = MAX_ATTEMPTS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
    on_conflict: Callable[[], None] | None = None,
) -> T:
    """Run `attempt` in a fresh transaction until it does not return CONFLICT."""
    for n in range(max_attempts):
        async with db.transaction() as tx:
            result = await attempt(tx)
        if not isinstance(result, _Conflict):
            return result
        if on_conflict is not None:
            on_conflict()
        await sleep(rng() * min(BACKOFF_CAP, BACKOFF_BASE * 2**n))
    raise ProblemError(
        503,
        "Too much contention",
        f"gave up after {max_attempts} conflicting attempts; retry later",
        type="contention",
        headers={"Retry-After": "1"},
    )
