"""The health state machine with a fake clock: every edge, thresholds, ejection, slow start."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lb.health import (
    FAIL,
    MAX_EJECTION_MULTIPLIER,
    OK,
    SLOW_START_MIN,
    TAKES_TRAFFIC,
    TRANSITIONS,
    Health,
    HealthSettings,
    HealthState,
)


def in_state(state: Health, settings: HealthSettings) -> HealthState:
    h = HealthState(settings)
    if state in (Health.DOWN, Health.RECOVERING):
        for _ in range(settings.fall):
            h.record_check(FAIL, 0)
    if state == Health.FAILING:
        h.record_check(FAIL, 0)
    if state == Health.RECOVERING:
        h.record_check(OK, 0)
    assert h.state == state
    return h


@pytest.mark.parametrize(("state", "ok"), sorted(TRANSITIONS, key=str))
def test_every_edge_of_the_table(state, ok):
    # rise/fall 3 so that no transitional state is promoted on the edge itself.
    h = in_state(state, HealthSettings(rise=3, fall=3))
    h.record_check(ok, 1)
    assert h.state == TRANSITIONS[(state, ok)]


@given(st.integers(1, 6), st.integers(1, 6))
def test_fall_failures_take_it_down_and_rise_successes_bring_it_back(rise, fall):
    h = HealthState(HealthSettings(rise=rise, fall=fall))
    for i in range(fall):
        assert h.takes_traffic(i)
        h.record_check(FAIL, i)
    assert h.state == Health.DOWN and not h.takes_traffic(fall)
    for i in range(rise):
        assert not h.takes_traffic(10 + i)
        h.record_check(OK, 10 + i)
    assert h.state == Health.UP and h.down_transitions == 1


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 4), st.integers(1, 4))
def test_state_matches_a_plain_model(results, rise, fall):
    """UP/DOWN only changes after `fall` failures / `rise` successes in a row."""
    h = HealthState(HealthSettings(rise=rise, fall=fall))
    up, streak_ok, streak_fail = True, 0, 0
    for i, ok in enumerate(results):
        streak_ok, streak_fail = (streak_ok + 1, 0) if ok else (0, streak_fail + 1)
        if up and streak_fail >= fall:
            up = False
        elif not up and streak_ok >= rise:
            up = True
        h.record_check(ok, i)
        assert (h.state in TAKES_TRAFFIC) == up


def test_labels_follow_haproxy():
    h = HealthState(HealthSettings(rise=2, fall=3))
    assert h.label() == "UP"
    h.record_check(FAIL, 0)
    assert h.label() == "UP 1/3"
    h.record_check(FAIL, 1)
    h.record_check(FAIL, 2)
    assert h.label() == "DOWN"
    h.record_check(OK, 3)
    assert h.label() == "DOWN 1/2"


def test_passive_ejection_with_growing_cooldown():
    h = HealthState(HealthSettings(eject_after=2, eject_cooldown=10.0))
    assert not h.record_connect_failure(0.0)
    assert h.record_connect_failure(0.0)
    assert not h.takes_traffic(9.9) and h.takes_traffic(10.0)
    # Ejected again right after coming back: the cool-down doubles.
    h.record_connect_failure(10.0)
    assert h.record_connect_failure(10.0)
    assert not h.takes_traffic(29.9) and h.takes_traffic(30.0)
    # A success after the cool-down resets the multiplier.
    h.record_connect_success(30.0)
    h.record_connect_failure(30.0)
    h.record_connect_failure(30.0)
    assert h.takes_traffic(40.0)


def test_ejection_multiplier_is_capped():
    h = HealthState(HealthSettings(eject_after=1, eject_cooldown=1.0))
    now = 0.0
    for _ in range(MAX_EJECTION_MULTIPLIER + 5):
        h.record_connect_failure(now)
        now = h.ejected_until
    assert h.ejected_until - h.transitions[-1][0] == MAX_EJECTION_MULTIPLIER


def test_success_breaks_the_failure_streak():
    h = HealthState(HealthSettings(eject_after=2))
    h.record_connect_failure(0)
    h.record_connect_success(0)
    assert not h.record_connect_failure(0)


def test_slow_start_only_after_recovery():
    h = HealthState(HealthSettings(rise=1, fall=1, slow_start=10.0))
    assert h.weight_factor(0) == 1.0  # never at lb start
    h.record_check(FAIL, 0)
    h.record_check(OK, 100)
    assert h.weight_factor(100) == SLOW_START_MIN
    assert h.weight_factor(105) == pytest.approx(0.5)
    assert h.weight_factor(110) == 1.0
    assert h.weight_factor(105) == 1.0  # the ramp is over for good


def test_slow_start_after_ejection_starts_when_cooldown_ends():
    h = HealthState(HealthSettings(eject_after=1, eject_cooldown=10.0, slow_start=4.0))
    h.record_connect_failure(0)
    assert h.weight_factor(12.0) == pytest.approx(0.5)


def test_check_delay_has_bounded_jitter():
    s = HealthSettings(interval=2.0, jitter=0.1, down_interval=5.0, fall=1)
    h = HealthState(s)
    rng = random.Random(7)
    delays = [h.next_check_in(rng) for _ in range(200)]
    assert all(1.8 <= d <= 2.2 for d in delays) and len(set(delays)) > 100
    h.record_check(FAIL, 0)
    assert 4.5 <= h.next_check_in(rng) <= 5.5


def test_history_is_bounded():
    h = HealthState()
    for i in range(1000):
        h.record_check(i % 2 == 0, i)
    assert len(h.checks) == h.checks.maxlen


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        HealthSettings(rise=0)
    with pytest.raises(ValueError):
        HealthSettings(interval=0)
