"""Token buckets: the arithmetic behind every local rate limit of the gateway.

On the request's journey this sits in the middle of the gateway: after the consumer is known
(auth.py) and before the request is forwarded (proxy.py), ratelimit.py asks a `BucketTable`
here whether this consumer (or client address, or route) may spend one more token.

A bucket holds at most `burst` tokens and gains `quota` tokens every `window` seconds. A request
costs one token; with none left it is refused, and we can say exactly when the next token
arrives (that becomes `Retry-After`).

Why integers: floats drift. `0.1 + 0.2 != 0.3`, and a bucket refilled by float steps
sometimes grants one request too many or refuses a client who waited exactly long enough.
So time is integer nanoseconds (`time.monotonic_ns()`), and tokens are counted in
*units*: one token = `window_ns` units, and every nanosecond adds `quota` units. Refill is
then `elapsed_ns * quota` — exact integer arithmetic, no rounding anywhere.

Memory stays bounded under a flood of distinct client addresses two ways: a bucket that has
refilled to the brim is indistinguishable from a brand-new one, so idle buckets are dropped
by `sweep()`; and the table never holds more than `max_buckets`, evicting the least recently
used (which can only make the limiter more lenient for that one key, never stricter).

This module is pure: no asyncio, no clock of its own — `now_ns` is always a parameter, so
tests drive it with a fake clock.

Simpler than the real thing: Envoy and Kong keep token buckets per worker thread or in
shared memory with atomic updates; we have one event loop, so a dict is enough. nginx's
`limit_req` is a leaky bucket that can *delay* requests; we only admit or refuse.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

NS_PER_S = 1_000_000_000

# A flood of distinct client addresses must not grow memory without limit; 100k buckets is
# ~20 MB of Python objects and far more clients than one gateway process serves at once.
MAX_BUCKETS = 100_000

# How many idle buckets one `sweep()` call inspects at most, so a sweep never stalls the loop.
SWEEP_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class Rate:
    """`quota` tokens per `window` seconds, holding at most `burst` tokens."""

    quota: int
    window: float
    burst: int
    # Derived once (every request needs them): the window in ns, and the bucket's size in
    # units (one token = window_ns units).
    window_ns: int = field(init=False, compare=False, repr=False)
    capacity_units: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.quota <= 0 or self.burst <= 0 or self.window <= 0:
            raise ValueError("quota, burst and window must be positive")
        window_ns = max(1, round(self.window * NS_PER_S))
        object.__setattr__(self, "window_ns", window_ns)
        object.__setattr__(self, "capacity_units", self.burst * window_ns)


class Decision(NamedTuple):
    """What one `take()` answered, in the terms the rate-limit headers need."""

    allowed: bool
    remaining: int  # whole tokens left after this request
    retry_after_ns: int  # 0 when allowed; else time until a token is available
    full_in_ns: int  # time until the bucket is full again (the "reset")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def take(rate: Rate, level: int, last_ns: int, now_ns: int, cost: int = 1) -> tuple[Decision, int]:
    """Refill a bucket holding `level` units at `last_ns`, then try to spend `cost` tokens.

    Returns the decision and the new level (in units, as of `now_ns`). A clock that goes
    backwards (it should not: we use monotonic time) refills nothing.
    """
    window_ns = rate.window_ns
    capacity = rate.capacity_units
    elapsed = now_ns - last_ns
    if elapsed > 0:
        level = min(capacity, level + elapsed * rate.quota)
    need = cost * window_ns
    if level >= need:
        level -= need
        missing = capacity - level
        return Decision(True, level // window_ns, 0, ceil_div(missing, rate.quota)), level
    retry = ceil_div(need - level, rate.quota)
    full_in = ceil_div(capacity - level, rate.quota)
    return Decision(False, level // window_ns, retry, full_in), level


class BucketTable:
    """Buckets by key (consumer id, client address, route name), bounded and self-cleaning.

    Every key shares one `Rate`. Each entry is `[level_units, last_ns]`, kept in
    least-recently-used order so both eviction and idle sweeping look at the front only.
    """

    def __init__(self, rate: Rate, max_buckets: int = MAX_BUCKETS) -> None:
        self.rate = rate
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, list[int]] = OrderedDict()
        self.evicted = 0  # buckets dropped by the size bound while not yet full

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now_ns: int, cost: int = 1) -> Decision:
        """Spend `cost` tokens from `key`'s bucket (created full on first use)."""
        entry = self._buckets.get(key)
        if entry is None:
            entry = [self.rate.capacity_units, now_ns]
            self._buckets[key] = entry
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
                self.evicted += 1
        else:
            self._buckets.move_to_end(key)
        decision, level = take(self.rate, entry[0], entry[1], now_ns, cost)
        if now_ns > entry[1]:
            entry[1] = now_ns
        entry[0] = level
        return decision

    def take_if_allowed(self, key: str, now_ns: int) -> Decision | None:
        """`take` one token if `key` has a whole one; else None, and nothing changes
        (the gateway's hot path then leaves the refusal to the general path)."""
        entry = self._buckets.get(key)
        if entry is not None:
            rate = self.rate
            level = entry[0] + max(0, now_ns - entry[1]) * rate.quota
            if min(rate.capacity_units, level) < rate.window_ns:
                return None
        return self.take(key, now_ns)

    def level(self, key: str, now_ns: int) -> int:
        """Whole tokens `key` could spend at `now_ns` (a full bucket if never seen)."""
        entry = self._buckets.get(key)
        if entry is None:
            return self.rate.burst
        level = entry[0] + max(0, now_ns - entry[1]) * self.rate.quota
        return min(self.rate.capacity_units, level) // self.rate.window_ns

    def sweep(self, now_ns: int, batch: int = SWEEP_BATCH) -> int:
        """Drop buckets that have refilled to the brim; returns how many were dropped.

        The table is in least-recently-used order, so the first bucket that is not yet full
        again ends the sweep: buckets behind it were used more recently and are most likely
        not full either. A slowly refilling bucket at the front may hold back a few full ones
        for one refill period; `max_buckets` still bounds memory meanwhile.
        """
        rate = self.rate
        capacity = rate.capacity_units
        dropped = 0
        while self._buckets and dropped < batch:
            key, (level, last_ns) = next(iter(self._buckets.items()))
            if level + max(0, now_ns - last_ns) * rate.quota < capacity:
                break
            del self._buckets[key]
            dropped += 1
        return dropped

    def snapshot(self, now_ns: int, limit: int = 100) -> dict[str, int]:
        """Up to `limit` most recently used keys and their whole-token levels (admin API)."""
        keys = list(reversed(self._buckets.keys()))[:limit]
        return {key: self.level(key, now_ns) for key in keys}
