"""The circuit breaker's state table, edge by edge, with a fake clock."""

from __future__ import annotations

from gateway.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    TRANSITIONS,
    BreakerSettings,
    CircuitBreaker,
)


def breaker(threshold=3, cooldown=10.0, probes=1):
    return CircuitBreaker(BreakerSettings(threshold, cooldown, probes))


def test_table_covers_every_state_and_event():
    states = {CLOSED, OPEN, HALF_OPEN}
    assert {s for s, _ in TRANSITIONS} == states
    assert set(TRANSITIONS.values()) <= states


def test_closed_stays_closed_below_threshold_and_success_resets_streak():
    b = breaker()
    for _ in range(2):
        assert b.allow(0)
        b.record(False, 0)
    b.record(True, 0)
    for _ in range(2):
        b.record(False, 0)
    assert b.state == CLOSED


def test_trips_after_threshold_and_refuses_until_cooldown():
    b = breaker()
    for _ in range(3):
        b.record(False, 100.0)
    assert b.state == OPEN
    assert not b.allow(100.0)
    assert not b.allow(109.9)
    assert b.retry_after(105.0) == 5.0


def test_late_results_while_open_change_nothing():
    b = breaker()
    for _ in range(3):
        b.record(False, 0.0)
    b.record(True, 1.0)
    b.record(False, 2.0)
    assert b.state == OPEN
    assert not b.allow(9.0)


def test_half_open_probe_success_closes():
    b = breaker()
    for _ in range(3):
        b.record(False, 0.0)
    assert b.allow(10.0)
    assert b.state == HALF_OPEN
    assert not b.allow(10.0)  # one probe at a time
    b.record(True, 10.5)
    assert b.state == CLOSED
    assert b.allow(10.5)


def test_half_open_probe_failure_reopens_for_another_cooldown():
    b = breaker()
    for _ in range(3):
        b.record(False, 0.0)
    assert b.allow(10.0)
    b.record(False, 11.0)
    assert b.state == OPEN
    assert not b.allow(20.0)
    assert b.allow(21.0)
    assert b.state == HALF_OPEN


def test_several_probes_allowed_when_configured():
    b = breaker(threshold=1, probes=2)
    b.record(False, 0.0)
    assert b.allow(10.0) and b.allow(10.0)
    assert not b.allow(10.0)
    assert b.transitions == 2
