"""Rate limiting: may this caller make one more request right now, and what do we tell them?

On the request's journey this runs after auth (auth.py, which names the consumer) and
before proxying (proxy.py). A request can be subject to up to three limits, each a
`Limit` (quota per window, burst, policy):

* `consumer` — the consumer's own limit, across every route they use;
* `route`    — the whole route, all callers together (protects the upstream);
* `client`   — per client address on an anonymous route (no consumer to key on).

Two policies:

* `local` — a token bucket in this process (token_bucket.py): exact and free, but two
  gateways behind the lb each allow the full quota, so a consumer gets 2× the limit.
* `shared` — a *sliding-window counter* kept in kvcache, so every gateway enforces one
  limit. Each request pipelines `SET k:cur 0 PX 2w NX`, `INCR k:cur`, `GET k:prev` in one
  round trip: INCR is atomic in the store, so two gateways can never both read "4" and
  both write "5" (the read-then-write race that lets bursts through), and no Lua script is
  needed. The estimate is `prev × (1 − elapsed/w) + cur` (Cloudflare's approximation;
  exact when traffic is even across windows). Trade-offs: one extra round trip per request;
  a denied request still counts (a caller hammering a closed door stays limited); and when
  the store is slow or down we must guess — `on_store_error = "open"` lets traffic through
  (availability over strictness; the default, as in Kong and Envoy), `"closed"` answers 429.

Every response on a limited route carries the IETF draft's fields and the familiar trio:

    RateLimit-Policy: "consumer";q=5;w=10
    RateLimit: "consumer";r=4;t=2
    X-RateLimit-Limit: 5
    X-RateLimit-Remaining: 4
    X-RateLimit-Reset: 2            (delta seconds until the bucket is full again)

and a refusal adds `Retry-After: <whole seconds, rounded up, at least 1>`. With several
limits the X- trio describes the tightest one (fewest remaining).

Local checks are two-phase: first every bucket is asked whether it has a token, and only if
all do is one taken from each — so a request refused by the route limit does not also
spend the consumer's token.

Simpler than the real thing: no cost per request other than 1, no quota units other than
requests, no per-second+per-minute+per-hour stacking (Kong's rate-limiting plugin).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .token_bucket import NS_PER_S, BucketTable, Rate, ceil_div

# The most distinct (scope, limit) tables we keep; config reloads create new ones, and a
# reload loop must not leak memory.
MAX_TABLES = 1_000


@dataclass(frozen=True, slots=True)
class Limit:
    quota: int
    window: float
    burst: int
    policy: str = "local"  # "local" or "shared"
    # RateLimit-Policy values by policy name, formatted once: they never change for a
    # limit, and keeping them here spares hashing the Limit per request.
    _policy_fields: dict[str, str] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    @property
    def rate(self) -> Rate:
        return Rate(self.quota, self.window, self.burst)

    def policy_field(self, name: str) -> str:
        text = self._policy_fields.get(name)
        if text is None:
            text = f'"{name}";q={self.quota};w={_seconds(self.window)}'
            if len(self._policy_fields) < MAX_TABLES:
                self._policy_fields[name] = text
        return text


def _seconds(window: float) -> str:
    return str(int(window)) if float(window).is_integer() else f"{window:g}"


@dataclass(slots=True)
class Check:
    """One limit to apply: policy name (for headers), the limit, and whose bucket."""

    name: str
    limit: Limit
    key: str
    # The local bucket table, when the check was planned ahead (see Gateway._plan):
    # looking it up by (scope, Limit) per request means hashing the Limit each time.
    table: BucketTable | None = None
    # The hot path's rate-limit fields for an allowed request, with %d for remaining and
    # reset (`lines_template`), made on first use.
    template: bytes = b""

    def lines_template(self) -> bytes:
        """What `headers` writes for this check alone when it allows, as a bytes template
        of (remaining, reset, remaining, reset)."""
        if not self.template:
            policy = self.limit.policy_field(self.name)
            self.template = (
                f'RateLimit-Policy: {policy}\r\nRateLimit: "{self.name}";r=%d;t=%d\r\n'
                f"X-RateLimit-Limit: {self.limit.quota}\r\n"
                "X-RateLimit-Remaining: %d\r\nX-RateLimit-Reset: %d\r\n"
            ).encode("latin-1")
        return self.template


@dataclass(slots=True)
class Outcome:
    name: str
    limit: Limit
    allowed: bool
    remaining: int
    reset_s: int
    retry_after_s: int


class SharedStore(Protocol):
    """What the shared policy needs from kvcache (see store.py for the RESP version)."""

    async def window_counts(self, cur: str, prev: str, ttl_ms: int) -> tuple[int, int]: ...


def whole_seconds(ns: int) -> int:
    """Round a duration up to whole seconds; never 0 (Traefik once sent Retry-After: 0)."""
    return max(1, ceil_div(ns, NS_PER_S))


class RateLimiter:
    """Owns the local bucket tables and talks to the shared store."""

    def __init__(
        self,
        store: SharedStore | None = None,
        *,
        fail_open: bool = True,
        store_timeout: float = 0.05,
        clock_ns: Any = time.monotonic_ns,
        wall_ms: Any = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.store = store
        self.fail_open = fail_open
        self.store_timeout = store_timeout
        self.clock_ns = clock_ns
        self.wall_ms = wall_ms
        self.tables: dict[tuple[str, Limit], BucketTable] = {}
        self.store_errors = 0

    def table(self, scope: str, limit: Limit) -> BucketTable:
        table = self.tables.get((scope, limit))
        if table is None:
            if len(self.tables) >= MAX_TABLES:
                self.tables.pop(next(iter(self.tables)))
            table = self.tables[(scope, limit)] = BucketTable(limit.rate)
        return table

    def check_local(self, checks: list[Check], now_ns: int | None = None) -> list[Outcome]:
        """Apply local limits, two-phase: all must have a token before any is taken."""
        now = self.clock_ns() if now_ns is None else now_ns
        if len(checks) == 1:  # the common case; one bucket refuses without spending
            check = checks[0]
            table = check.table
            if table is None:
                table = self.table(check.name, check.limit)
            return [self._outcome(check, table, now)]
        tables = [c.table if c.table is not None else self.table(c.name, c.limit) for c in checks]
        for table, check in zip(tables, checks, strict=True):
            if table.level(check.key, now) < 1:
                return [self._outcome(check, table, now)]
        return [self._outcome(c, t, now) for t, c in zip(tables, checks, strict=True)]

    @staticmethod
    def _outcome(check: Check, table: BucketTable, now: int) -> Outcome:
        d = table.take(check.key, now)
        if d.allowed:
            return Outcome(
                check.name, check.limit, True, d.remaining, ceil_div(d.full_in_ns, NS_PER_S), 0
            )
        reset = max(d.full_in_ns, d.retry_after_ns)
        return Outcome(
            check.name, check.limit, False, d.remaining, ceil_div(reset, NS_PER_S),
            whole_seconds(d.retry_after_ns),
        )  # fmt: skip

    async def check_shared(self, check: Check) -> Outcome:
        """Apply one shared limit through the store (sliding-window counter)."""
        limit = check.limit
        window_ms = max(1, round(limit.window * 1000))
        now_ms = self.wall_ms()
        index, into = divmod(now_ms, window_ms)
        base = f"rl:{check.name}:{check.key}:"
        try:
            if self.store is None:
                raise ConnectionError("no shared store configured")
            cur, prev = await self.store.window_counts(
                f"{base}{index}", f"{base}{index - 1}", 2 * window_ms
            )
        except Exception:  # any store failure: timeout, refused, protocol error
            self.store_errors += 1
            retry = 0 if self.fail_open else 1
            return Outcome(check.name, limit, self.fail_open, 0, 1, retry)
        left_ms = window_ms - into
        estimate = prev * left_ms / window_ms + cur
        remaining = max(0, int(limit.quota - estimate))
        reset_s = whole_seconds(left_ms * 1_000_000)
        if estimate <= limit.quota:
            return Outcome(check.name, limit, True, remaining, reset_s, 0)
        # When will the estimate fall back to the quota? The previous window's weight
        # shrinks linearly; if this window alone is over the quota, only its end helps.
        excess = estimate - limit.quota
        if prev > 0 and cur <= limit.quota:
            wait_ms = min(left_ms, excess * window_ms / prev)
        else:
            wait_ms = left_ms
        return Outcome(check.name, limit, False, 0, reset_s, whole_seconds(int(wait_ms * 1e6)))

    def sweep(self, now_ns: int | None = None) -> int:
        """Reclaim idle buckets in every table (called periodically by the gateway)."""
        now = self.clock_ns() if now_ns is None else now_ns
        return sum(table.sweep(now) for table in self.tables.values())

    def levels(self, now_ns: int | None = None) -> dict[str, dict[str, int]]:
        """Bucket levels for the admin API, per table."""
        now = self.clock_ns() if now_ns is None else now_ns
        out = {}
        for (scope, limit), table in self.tables.items():
            out[f"{scope} {limit.quota}/{_seconds(limit.window)}s burst {limit.burst}"] = (
                table.snapshot(now)
            )
        return out


def headers(outcomes: list[Outcome]) -> list[tuple[str, str]]:
    """RateLimit-Policy, RateLimit, the X-RateLimit-* trio and (if refused) Retry-After."""
    if not outcomes:
        return []
    if len(outcomes) == 1:
        tightest = outcomes[0]
        policy = tightest.limit.policy_field(tightest.name)
        state = f'"{tightest.name}";r={tightest.remaining};t={tightest.reset_s}'
    else:
        policy = ", ".join(o.limit.policy_field(o.name) for o in outcomes)
        state = ", ".join(f'"{o.name}";r={o.remaining};t={o.reset_s}' for o in outcomes)
        tightest = min(outcomes, key=lambda o: (o.allowed, o.remaining))
    out = [
        ("RateLimit-Policy", policy),
        ("RateLimit", state),
        ("X-RateLimit-Limit", str(tightest.limit.quota)),
        ("X-RateLimit-Remaining", str(tightest.remaining)),
        ("X-RateLimit-Reset", str(tightest.reset_s)),
    ]
    refused = [o.retry_after_s for o in outcomes if not o.allowed]
    if refused:
        out.append(("Retry-After", str(max(refused))))
    return out
