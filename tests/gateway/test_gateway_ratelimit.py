"""Rate-limit policies and the exact header strings clients see."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ratelimit import Check, Limit, Outcome, RateLimiter, headers
from gateway.token_bucket import NS_PER_S

DEMO = Limit(5, 10.0, 5)


def test_headers_for_an_allowed_request():
    limiter = RateLimiter()
    out = limiter.check_local([Check("consumer", DEMO, "demo")], now_ns=0)
    assert headers(out) == [
        ("RateLimit-Policy", '"consumer";q=5;w=10'),
        ("RateLimit", '"consumer";r=4;t=2'),
        ("X-RateLimit-Limit", "5"),
        ("X-RateLimit-Remaining", "4"),
        ("X-RateLimit-Reset", "2"),
    ]


def test_sixth_request_is_refused_with_retry_after():
    limiter = RateLimiter()
    for _ in range(5):
        assert limiter.check_local([Check("consumer", DEMO, "demo")], now_ns=0)[0].allowed
    out = limiter.check_local([Check("consumer", DEMO, "demo")], now_ns=NS_PER_S // 2)
    assert not out[0].allowed
    assert dict(headers(out))["Retry-After"] == "2"  # 1.5 s rounded up
    assert dict(headers(out))["RateLimit"] == '"consumer";r=0;t=10'  # full again in 9.5 s


def test_retry_after_is_never_zero():
    limiter = RateLimiter()
    fast = Limit(1000, 1.0, 1)
    limiter.check_local([Check("route", fast, "r")], now_ns=0)
    out = limiter.check_local([Check("route", fast, "r")], now_ns=1)
    assert not out[0].allowed and out[0].retry_after_s == 1


def test_two_phase_refusal_spends_no_other_token():
    limiter = RateLimiter()
    route = Limit(1, 60.0, 1)
    checks = [Check("consumer", DEMO, "demo"), Check("route", route, "shop")]
    assert all(o.allowed for o in limiter.check_local(checks, now_ns=0))
    out = limiter.check_local(checks, now_ns=0)
    assert [(o.name, o.allowed) for o in out] == [("route", False)]
    assert limiter.table("consumer", DEMO).level("demo", 0) == 4


def test_several_policies_in_one_header_and_tightest_trio():
    outcomes = [
        Outcome("consumer", Limit(100, 60.0, 100), True, 99, 1, 0),
        Outcome("route", Limit(10, 1.0, 10), True, 3, 1, 0),
    ]
    h = dict(headers(outcomes))
    assert h["RateLimit-Policy"] == '"consumer";q=100;w=60, "route";q=10;w=1'
    assert h["RateLimit"] == '"consumer";r=99;t=1, "route";r=3;t=1'
    assert h["X-RateLimit-Remaining"] == "3" and h["X-RateLimit-Limit"] == "10"
    assert "Retry-After" not in h
    assert Limit(3, 0.5, 3).policy_field("x") == '"x";q=3;w=0.5'


class FakeStore:
    """kvcache stand-in with INCR semantics (the real one is tested end to end)."""

    def __init__(self):
        self.data = {}
        self.down = False

    async def window_counts(self, cur, prev, ttl_ms):
        if self.down:
            raise ConnectionError("kvcache down")
        self.data[cur] = self.data.get(cur, 0) + 1
        return self.data[cur], self.data.get(prev, 0)


def run(coro):
    return asyncio.run(coro)


def test_shared_sliding_window_counts_across_limiters():
    store = FakeStore()
    clock = {"ms": 100_000}
    a = RateLimiter(store, wall_ms=lambda: clock["ms"])
    b = RateLimiter(store, wall_ms=lambda: clock["ms"])
    limit = Limit(4, 10.0, 4, "shared")
    results = [
        run((a if i % 2 else b).check_shared(Check("consumer", limit, "demo"))) for i in range(6)
    ]
    assert [r.allowed for r in results] == [True] * 4 + [False] * 2
    assert results[3].remaining == 0
    assert results[4].retry_after_s == 10  # the whole window is still ahead
    # Half-way through the next window the previous window counts half: 6 × 0.5 = 3 < 4.
    clock["ms"] += 15_000
    assert run(a.check_shared(Check("consumer", limit, "demo"))).allowed
    assert not run(b.check_shared(Check("consumer", limit, "demo"))).allowed


@pytest.mark.parametrize("fail_open", [True, False])
def test_store_down_fails_open_or_closed(fail_open):
    store = FakeStore()
    store.down = True
    limiter = RateLimiter(store, fail_open=fail_open)
    out = run(limiter.check_shared(Check("consumer", Limit(1, 1.0, 1, "shared"), "x")))
    assert out.allowed is fail_open
    assert limiter.store_errors == 1
    if not fail_open:
        assert dict(headers([out]))["Retry-After"] == "1"


def test_sweep_and_levels():
    limiter = RateLimiter()
    limiter.check_local([Check("client:health", Limit(2, 1.0, 2), "10.0.0.1")], now_ns=0)
    assert limiter.levels(0) == {"client:health 2/1s burst 2": {"10.0.0.1": 1}}
    assert limiter.sweep(NS_PER_S) == 1
