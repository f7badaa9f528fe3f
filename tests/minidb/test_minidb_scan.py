"""SCAN's cursor: a full iteration returns every key that existed throughout, despite writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from minidb.keydir import KeyDir, next_cursor, reverse_bits


def test_reverse_bits():
    assert reverse_bits(1) == 1 << 63
    assert reverse_bits(reverse_bits(0xDEADBEEF)) == 0xDEADBEEF


def test_the_cursor_visits_every_bucket_once():
    mask = 15
    seen, cursor = [], 0
    while True:
        seen.append(cursor & mask)
        cursor = next_cursor(cursor, mask)
        if cursor == 0:
            break
    assert sorted(seen) == list(range(16))
    assert seen[:4] == [0, 8, 4, 12]


def _entry(i: int):
    return (1, i, 10, 0)


@settings(max_examples=150)
@given(
    initial=st.sets(st.integers(0, 2000), max_size=300),
    churn=st.lists(st.tuples(st.booleans(), st.integers(0, 5000)), max_size=400),
    count=st.integers(1, 40),
)
def test_scan_never_skips_keys_present_throughout(initial, churn, count):
    kd = KeyDir()
    for i in initial:
        kd.put(b"k%d" % i, _entry(i))
    present_throughout = {b"k%d" % i for i in initial}
    cursor, seen, steps = 0, set(), 0
    churn = list(churn)
    while True:
        cursor, keys = kd.scan(cursor, count)
        seen.update(keys)
        steps += 1
        for _ in range(5):  # writes between SCAN calls: adds grow the table, deletes shrink it
            if not churn:
                break
            add, i = churn.pop()
            key = b"k%d" % i
            if add:
                kd.put(key, _entry(i))
            else:
                kd.remove(key)
                present_throughout.discard(key)
        if cursor == 0:
            break
        assert steps < 100_000
    assert present_throughout <= seen


def test_match_filters_keys():
    kd = KeyDir()
    for key in (b"user:1", b"user:2", b"order:1"):
        kd.put(key, _entry(0))
    cursor, keys = kd.scan(0, 100, lambda k: k.startswith(b"user:"))
    assert cursor == 0 and sorted(keys) == [b"user:1", b"user:2"]
