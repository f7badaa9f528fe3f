"""Merge: reclaims space, never resurrects deletes, and runs beside readers and writers."""

from __future__ import annotations

import threading

import pytest

from minidb import datafile
from minisys.testing import wait_until

from .conftest import contents


def test_compaction_shrinks_the_directory_talent_plan_style(db_dir, opener):
    # From talent-plan's kvs: overwrite the same keys until the directory shrinks.
    db = opener(max_file_size=4096, auto_merge=True, merge_min_dead_bytes=20_000)
    peak = 0
    for round_ in range(200):
        for i in range(100):
            db.put(b"key%d" % i, b"%d-%d" % (round_, i))
        db.merge_state.join()
        size = db.stats().data_bytes
        if size < peak:
            break
        peak = size
    else:
        raise AssertionError("the directory never shrank")
    assert db.stats().merges >= 1
    db.close()
    db = opener()
    assert contents(db) == {b"key%d" % i: b"%d-%d" % (round_, i) for i in range(100)}


def test_deleted_keys_stay_deleted_after_merge_and_reopen(db_dir, opener):
    db = opener(max_file_size=100)
    for i in range(20):
        db.put(b"k%d" % i, b"x" * 30)
    for i in range(0, 20, 2):
        db.delete(b"k%d" % i)
    db.merge()
    db.put(b"k1", b"newer")
    db.merge()
    db.close()
    db = opener(max_file_size=100)
    expected = {b"k%d" % i: b"x" * 30 for i in range(1, 20, 2)}
    expected[b"k1"] = b"newer"
    assert contents(db) == expected
    stats = db.stats()
    assert stats.files_from_hints >= 1
    assert stats.dead_bytes == 0


# The default, and a tiny one: the active file is mapped again every few appends while
# readers slice the old maps.
@pytest.mark.parametrize("remap_bytes", [datafile.REMAP_BYTES, 64])
def test_merge_beside_concurrent_writers_and_readers(db_dir, opener, monkeypatch, remap_bytes):
    monkeypatch.setattr(datafile, "REMAP_BYTES", remap_bytes)
    db = opener(max_file_size=2048)
    for i in range(300):
        db.put(b"k%d" % i, b"v0")
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        n = 0
        try:
            while not stop.is_set() or n < 200:
                key = b"k%d" % ((n * 7 + worker) % 300)
                if n % 5 == 0:
                    db.delete(key)
                else:
                    db.put(key, b"w%d-%d" % (worker, n))
                n += 1
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                for i in range(0, 300, 13):
                    value = db.get(b"k%d" % i)
                    assert value is None or value.startswith((b"v0", b"w"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for _ in range(3):
        assert db.merge()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    final = contents(db)
    db.close()
    db = opener(max_file_size=2048)
    assert contents(db) == final
    assert not list(db_dir.glob("*.tmp"))


def test_a_second_merge_request_while_one_runs_is_refused(db_dir, opener):
    db = opener()
    db.put(b"a", b"1")
    assert db.merge_state._claim()
    assert not db.merge()
    db.merge_state.running = False
    assert db.merge()


def test_dead_bytes_past_the_ratio_start_a_merge_on_their_own(db_dir, opener):
    quiet = opener(db_dir / "quiet", auto_merge=True, max_file_size=1000,
                   merge_min_dead_bytes=10**9)  # fmt: skip
    busy = opener(db_dir / "busy", auto_merge=True, max_file_size=1000,
                  merge_dead_ratio=0.5, merge_min_dead_bytes=2000)  # fmt: skip
    for round_ in range(10):  # every key overwritten 9 times: ~90% of the bytes are dead
        for db in (quiet, busy):
            for i in range(20):
                db.put(b"k%d" % i, b"v%d-%d" % (i, round_))
    wait_until(lambda: busy.stats().merges >= 1 and not busy.stats().merging)
    assert quiet.stats().merges == 0  # plenty of dead ratio, too few dead bytes
    expected = {b"k%d" % i: b"v%d-9" % i for i in range(20)}
    assert contents(busy) == contents(quiet) == expected
    busy.close()
    assert contents(opener(db_dir / "busy")) == expected
