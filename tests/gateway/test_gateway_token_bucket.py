"""Token bucket properties with a fake clock: exact, bounded, never unfair."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from gateway.token_bucket import NS_PER_S, BucketTable, Rate, take

rates = st.builds(
    Rate,
    quota=st.integers(1, 50),
    window=st.sampled_from([0.5, 1.0, 2.0, 10.0, 60.0]),
    burst=st.integers(1, 20),
)
# Gaps between requests, in nanoseconds: bursts of simultaneous requests and long pauses.
gaps = st.lists(st.integers(0, 3 * NS_PER_S), min_size=1, max_size=120)


def schedule(gap_list: list[int]) -> list[int]:
    times, now = [], 10 * NS_PER_S
    for gap in gap_list:
        now += gap
        times.append(now)
    return times


@given(rates, gaps)
def test_allowed_in_any_window_is_at_most_burst_plus_rate_times_window(rate, gap_list):
    table = BucketTable(rate)
    allowed = [t for t in schedule(gap_list) if table.take("k", t).allowed]
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            span_ns = allowed[j] - start
            bound = rate.burst + Fraction(span_ns * rate.quota, rate.window_ns)
            assert j - i + 1 <= bound


@given(rates, st.lists(st.integers(0, 2 * NS_PER_S), min_size=1, max_size=80))
def test_a_client_under_the_rate_is_never_refused(rate, extra):
    # Spacing of at least one token's refill time (rounded up to whole ns) is "under the rate".
    interval = -(-rate.window_ns // rate.quota)
    table = BucketTable(rate)
    now = 5 * NS_PER_S
    for more in extra:
        assert table.take("k", now).allowed
        now += interval + more


@given(rates, gaps)
def test_matches_an_exact_rational_model(rate, gap_list):
    level, last = Fraction(rate.burst), None
    table = BucketTable(rate)
    for t in schedule(gap_list):
        if last is not None:
            level = min(
                Fraction(rate.burst), level + Fraction((t - last) * rate.quota, rate.window_ns)
            )
        last = t
        expect = level >= 1
        if expect:
            level -= 1
        decision = table.take("k", t)
        assert decision.allowed == expect
        assert decision.remaining == int(level)


@given(rates, gaps)
def test_retry_after_is_exactly_when_the_next_token_arrives(rate, gap_list):
    table = BucketTable(rate)
    for t in schedule(gap_list):
        decision = table.take("k", t)
        if not decision.allowed:
            assert decision.retry_after_ns > 0
            probe = BucketTable(rate)
            probe._buckets["k"] = list(table._buckets["k"])
            assert not probe.take("k", t + decision.retry_after_ns - 1).allowed
            probe._buckets["k"] = list(table._buckets["k"])
            assert probe.take("k", t + decision.retry_after_ns).allowed


def test_first_request_finds_a_full_bucket_and_refusal_after_burst():
    rate = Rate(quota=5, window=10.0, burst=5)
    table = BucketTable(rate)
    results = [table.take("demo", 0) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0]
    assert results[-1].retry_after_ns == 2 * NS_PER_S  # one token per 2 s
    assert results[-1].full_in_ns == 10 * NS_PER_S


def test_pure_take_never_refills_when_the_clock_goes_backwards():
    rate = Rate(1, 1.0, 1)
    decision, level = take(rate, 0, 10 * NS_PER_S, 5 * NS_PER_S)
    assert not decision.allowed and level == 0


def test_keys_are_independent():
    table = BucketTable(Rate(1, 1.0, 1))
    assert table.take("a", 0).allowed
    assert not table.take("a", 0).allowed
    assert table.take("b", 0).allowed


def test_table_is_bounded_under_a_flood_of_distinct_clients():
    table = BucketTable(Rate(1, 60.0, 1), max_buckets=100)
    for i in range(10_000):
        table.take(f"10.0.{i // 256}.{i % 256}", i)
    assert len(table) == 100
    assert table.evicted == 9_900


def test_sweep_reclaims_buckets_that_refilled_and_keeps_busy_ones():
    table = BucketTable(Rate(1, 1.0, 2))
    for i in range(50):
        table.take(f"idle{i}", 0)
    table.take("busy", 2 * NS_PER_S)
    table.take("busy", 2 * NS_PER_S)
    dropped = table.sweep(2 * NS_PER_S)
    assert dropped == 50
    assert len(table) == 1
    assert table.level("busy", 2 * NS_PER_S) == 0
    assert table.sweep(3 * NS_PER_S) == 0
    assert table.sweep(4 * NS_PER_S) == 1
    assert len(table) == 0


def test_level_and_snapshot():
    table = BucketTable(Rate(10, 1.0, 10))
    assert table.level("nobody", 0) == 10
    for _ in range(4):
        table.take("x", 0)
    assert table.snapshot(0) == {"x": 6}
    assert table.snapshot(NS_PER_S // 10) == {"x": 7}


def test_invalid_rates_are_refused():
    import pytest

    for args in [(0, 1.0, 1), (1, 0.0, 1), (1, 1.0, 0)]:
        with pytest.raises(ValueError):
            Rate(*args)
