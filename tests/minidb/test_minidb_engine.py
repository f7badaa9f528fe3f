"""Engine edge cases: locking, hint fallback, rotation, big values, stats, closed db."""

from __future__ import annotations

import pytest

from minidb import CorruptionError, DatabaseClosed, DatabaseLocked, open_db
from minidb.datafile import hint_path
from minidb.record import MAX_KEY_SIZE, RecordTooLarge

from .conftest import contents


def test_one_process_at_a_time(db_dir, opener):
    opener()
    with pytest.raises(DatabaseLocked, match="open in another process"):
        open_db(db_dir)


def test_a_damaged_hint_file_falls_back_to_scanning(db_dir, opener):
    db = opener(max_file_size=200)
    expected = {b"k%d" % i: b"v%d" % i for i in range(30)}
    for key, value in expected.items():
        db.put(key, value)
    db.merge()
    hints = sorted(db_dir.glob("*.hint"))
    assert hints
    db.close()
    data = bytearray(hints[0].read_bytes())
    data[12] ^= 0xFF
    hints[0].write_bytes(bytes(data))
    db = opener(max_file_size=200)
    assert contents(db) == expected
    assert db.stats().files_from_hints == len(hints) - 1


def test_hints_that_do_not_match_their_data_file_are_not_trusted(db_dir, opener):
    db = opener()
    db.put(b"a", b"1")
    db.merge()
    merged = next(db_dir.glob("*.hint")).with_suffix(".data")
    db.close()
    db = opener()
    assert db.stats().files_from_hints == 1
    db.close()
    with open(merged, "ab") as f:
        f.write(b"\0")  # the data file changed behind the hint's back
    with pytest.raises(CorruptionError):  # the scan then finds the garbage byte
        opener()
    merged.write_bytes(merged.read_bytes()[:-1])
    hint_path(db_dir, 999).write_bytes(b"orphan")  # no data file: deleted on open
    db = opener()
    assert not hint_path(db_dir, 999).exists()
    assert contents(db) == {b"a": b"1"}


def test_rotation_and_a_value_bigger_than_a_file(db_dir, opener):
    db = opener(max_file_size=1000)
    big = b"x" * 5000
    db.put(b"big", big)
    for i in range(50):
        db.put(b"k%d" % i, b"y" * 40)
    assert db.stats().files > 3
    assert db.get(b"big") == big
    db.close()
    db = opener(max_file_size=1000)
    assert db.get(b"big") == big and len(db) == 51


def test_limits_and_closed_db(db_dir, opener):
    db = opener()
    with pytest.raises(RecordTooLarge):
        db.put(b"k" * (MAX_KEY_SIZE + 1), b"v")
    assert len(db) == 0 and db.stats().writes == 0
    db.close()
    with pytest.raises(DatabaseClosed):
        db.put(b"a", b"1")
    with pytest.raises(DatabaseClosed):
        db.get(b"a")


def test_stats_track_live_and_dead_bytes(db_dir, opener):
    db = opener()
    db.put(b"a", b"1")
    db.put(b"a", b"2")
    db.delete(b"a")
    assert not db.delete(b"a")
    s = db.stats()
    assert s.keys == 0 and s.live_bytes == 0
    assert s.dead_bytes == s.data_bytes == 3 * 21 + 3 + 2  # 3 headers, 3 keys, 2 values
    assert s.writes == 3


def test_stats_report_files_the_last_merge_and_recovery(db_dir, opener):
    db = opener(max_file_size=100, clock=lambda: 1_700_000_000.0)
    assert db.stats().merges == 0 and db.stats().last_merge_at is None
    for i in range(10):
        db.put(b"k%d" % i, b"x" * 20)
        db.put(b"k%d" % i, b"y" * 20)
    assert db.stats().files == len(list(db_dir.glob("*.data"))) > 1
    assert db.merge()
    s = db.stats()
    assert s.merges == 1 and s.last_merge_at == 1_700_000_000.0
    assert s.last_merge_seconds is not None and s.last_merge_reclaimed_bytes == 10 * (21 + 2 + 20)
    assert s.files == len(list(db_dir.glob("*.data")))
    db.close()
    reopened = opener(max_file_size=100).stats()
    assert reopened.recovery_seconds > 0 and reopened.files_from_hints >= 1
    assert reopened.keys == 10 and reopened.dead_bytes == 0


def test_scan_on_the_engine_returns_every_key_once_without_writes(db_dir, opener):
    db = opener()
    for i in range(100):
        db.put(b"k%d" % i, b"v")
    seen, cursor = [], 0
    while True:
        cursor, keys = db.scan(cursor, 7)
        seen += keys
        if cursor == 0:
            break
    assert sorted(seen) == sorted(b"k%d" % i for i in range(100))


def test_batch_context_manager_is_all_or_nothing(db_dir, opener):
    db = opener()
    with db.batch() as b:
        b.put(b"a", b"1")
        b.put(b"b", b"2")
        b.delete(b"a")
    assert contents(db) == {b"b": b"2"}
    with pytest.raises(RuntimeError), db.batch() as b:
        b.put(b"c", b"3")
        raise RuntimeError("abandon the batch")
    assert contents(db) == {b"b": b"2"}
    assert db.stats().writes == 1


def test_a_get_racing_a_merge_finds_the_merged_copy(db_dir, opener):
    """get reads the keydir, then the file table, without a lock; a merge may retire the
    file in between. Run a whole merge exactly there and check the get still answers."""
    db = opener(max_file_size=200)
    for i in range(20):
        db.put(b"k%d" % i, b"v%d" % i)

    class MergeOnFirstLookup(dict):
        merged = False

        def __getitem__(self, file_id):  # get's lookup of the file (a KeyError once retired)
            if not self.merged:
                self.merged = True
                assert db.merge()
            return super().__getitem__(file_id)

    old_file = db.keydir.get(b"k3")[0]
    db.files = db._files = MergeOnFirstLookup(db.files)
    assert db.get(b"k3") == b"v3"
    assert db.files.merged and old_file not in db.files
    assert contents(db) == {b"k%d" % i: b"v%d" % i for i in range(20)}
