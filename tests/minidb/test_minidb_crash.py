"""Crash tests: torn tails, flipped bits, corrupt old files, and a merge killed at every step.

The promise under test: reopening yields exactly the writes whose bytes fully reached the
file (the acknowledged prefix), and a corrupt record is never handed out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from minidb import CorruptionError, Faults, SimulatedCrash, open_db
from minidb.datafile import data_path

from .conftest import contents, copy_dir


def _history(db_dir: Path):
    """Write a mix of puts, deletes, a batch and a flush; return (active path, snapshots).

    Each snapshot is (end offset in the active file, model after that write).
    """
    db = open_db(db_dir, fsync="no", auto_merge=False)
    model: dict[bytes, bytes] = {}
    snapshots = [(0, {})]

    def note():
        snapshots.append((db.active.size, dict(model)))

    for i in range(4):
        db.put(b"k%d" % i, b"value-%d" % i)
        model[b"k%d" % i] = b"value-%d" % i
        note()
    db.delete(b"k1")
    del model[b"k1"]
    note()
    db.flush_all()
    model.clear()
    note()
    db.put(b"k2", b"after flush")
    model[b"k2"] = b"after flush"
    note()
    db.write_batch([(b"x", b"1"), (b"k2", None), (b"y", b"22"), (b"z", b"333")])
    model.update({b"x": b"1", b"y": b"22", b"z": b"333"})
    del model[b"k2"]
    note()
    db.put(b"last", b"L" * 10)
    model[b"last"] = b"L" * 10
    note()
    path = db.active.path
    db.close()
    return path, snapshots


def _expected_at(snapshots, cut: int) -> dict[bytes, bytes]:
    return max((s for s in snapshots if s[0] <= cut), key=lambda s: s[0])[1]


def test_truncating_the_active_file_at_every_offset_keeps_the_acknowledged_prefix(tmp_path):
    path, snapshots = _history(tmp_path / "db")
    original = path.read_bytes()
    first = snapshots[3][0]  # cut anywhere in the last several writes, byte by byte
    for cut in range(first, len(original) + 1):
        path.write_bytes(original[:cut])
        db = open_db(tmp_path / "db", fsync="no", auto_merge=False)
        try:
            expected = _expected_at(snapshots, cut)
            assert contents(db) == expected, cut
            good_end = max(s[0] for s in snapshots if s[0] <= cut)
            assert db.active.size == good_end  # the torn tail was cut off...
            assert db.stats().truncated_bytes == cut - good_end
            db.put(b"new", b"write after recovery")  # ...and appends continue cleanly
        finally:
            db.close()
        db = open_db(tmp_path / "db", fsync="no", auto_merge=False)
        assert contents(db) == {**expected, b"new": b"write after recovery"}
        db.close()


def test_a_flipped_bit_drops_its_write_and_everything_after(tmp_path):
    path, snapshots = _history(tmp_path / "db")
    original = path.read_bytes()
    ends = [s[0] for s in snapshots]
    for pos in range(len(original)):
        damaged = bytearray(original)
        damaged[pos] ^= 1 << (pos % 8)
        path.write_bytes(bytes(damaged))
        # The write containing `pos` starts at the largest end <= pos.
        start = max(e for e in ends if e <= pos)
        expected = next(m for e, m in snapshots if e == start)
        db = open_db(tmp_path / "db", fsync="no", auto_merge=False)
        try:
            assert contents(db) == expected, pos
        finally:
            db.close()


def _two_files(db_dir: Path) -> tuple[Path, dict[bytes, bytes]]:
    db = open_db(db_dir, fsync="no", auto_merge=False, max_file_size=120)
    model = {}
    for i in range(6):
        db.put(b"key%d" % i, b"v" * 20)
        model[b"key%d" % i] = b"v" * 20
    assert db.stats().files >= 3
    db.close()
    return data_path(db_dir, 1), model


def test_corruption_in_an_older_file_is_reported_not_truncated(tmp_path):
    old, _ = _two_files(tmp_path / "db")
    data = bytearray(old.read_bytes())
    data[30] ^= 0x10
    old.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match=r"000001\.data.*bad crc at offset"):
        open_db(tmp_path / "db", fsync="no")
    assert old.read_bytes() == bytes(data)  # never truncated
    db = open_db(tmp_path / "db", fsync="no", on_corruption="skip", max_file_size=120)
    assert db.stats().corrupt_files == ("000001.data@0",)
    assert b"key0" not in db and db.get(b"key5") == b"v" * 20
    db.close()


def test_get_never_returns_a_record_that_went_bad_on_disk(tmp_path, opener):
    db = opener(tmp_path / "db")
    db.put(b"k", b"hello")
    with open(db.active.path, "r+b") as f:
        f.seek(25)
        f.write(b"J")
    with pytest.raises(CorruptionError, match="bad crc"):
        db.get(b"k")


def _merge_fixture(src: Path) -> dict[bytes, bytes]:
    """A db whose merge has live keys, dead versions, tombstones, a batch and a flush."""
    db = open_db(src, fsync="no", auto_merge=False, max_file_size=150)
    model: dict[bytes, bytes] = {}
    for i in range(12):
        db.put(b"gone%d" % i, b"old")
    db.flush_all()
    for round_ in range(3):
        for i in range(8):
            db.put(b"k%d" % i, b"r%d-%d" % (round_, i))
            model[b"k%d" % i] = b"r%d-%d" % (round_, i)
    for i in range(0, 8, 3):
        db.delete(b"k%d" % i)
        del model[b"k%d" % i]
    db.write_batch([(b"b1", b"batch"), (b"b2", b"batch"), (b"k1", None)])
    model.update({b"b1": b"batch", b"b2": b"batch"})
    del model[b"k1"]
    assert contents(db) == model
    db.close()
    return model


def _merge_points(tmp_path: Path, src: Path) -> list[tuple[str, int]]:
    faults = Faults(record=True)
    db = open_db(copy_dir(src, tmp_path / "probe"), fsync="no", max_file_size=150, faults=faults)
    db.merge()
    db.close()
    points, seen = [], {}
    for name in faults.seen:
        seen[name] = seen.get(name, 0) + 1
        points.append((name, seen[name]))
    return points


def test_a_merge_killed_at_any_step_reopens_with_all_data(tmp_path):
    src = tmp_path / "src"
    model = _merge_fixture(src)
    points = _merge_points(tmp_path, src)
    names = {name for name, _ in points}
    assert {"merge.rename_data", "merge.fsync_dir", "merge.unlink_data", "merge.done"} <= names
    for i, (name, occurrence) in enumerate(points):
        work = copy_dir(src, tmp_path / f"crash{i}")
        faults = Faults(crash_at=name, occurrence=occurrence)
        db = open_db(work, fsync="no", auto_merge=False, max_file_size=150, faults=faults)
        with pytest.raises(SimulatedCrash):
            db.merge()
        db.abandon()
        db = open_db(work, fsync="no", auto_merge=False, max_file_size=150)
        assert contents(db) == model, (name, occurrence)
        assert not list(work.glob("*.tmp"))
        db.put(b"after", b"crash")
        assert db.merge()
        db.close()
        db = open_db(work, fsync="no", auto_merge=False, max_file_size=150)
        assert contents(db) == {**model, b"after": b"crash"}, (name, occurrence)
        db.close()
        shutil.rmtree(work)


class _WriteDuringMerge(Faults):
    """Faults that also write to the db in the middle of the merge's copying phase."""

    def __init__(self, model: dict[bytes, bytes], **kw) -> None:
        super().__init__(**kw)
        self.db = None
        self.model = model
        self.wrote = False

    def point(self, name: str) -> None:
        if name == "merge.read_file" and not self.wrote:
            self.wrote = True
            self.db.put(b"k2", b"during merge")  # live in an input file: CAS must keep this
            self.db.delete(b"k4")
            self.db.write_batch([(b"b1", None), (b"new", b"during")])
            self.model[b"k2"] = b"during merge"
            del self.model[b"k4"]
            del self.model[b"b1"]
            self.model[b"new"] = b"during"
        super().point(name)


def test_writes_during_a_merge_survive_a_crash_at_any_later_step(tmp_path):
    src = tmp_path / "src"
    base = _merge_fixture(src)
    points = _merge_points(tmp_path, src)
    crashes = 0
    for i, (name, occurrence) in enumerate(points):
        model = dict(base)
        work = copy_dir(src, tmp_path / f"w{i}")
        faults = _WriteDuringMerge(model, crash_at=name, occurrence=occurrence)
        db = open_db(work, fsync="no", auto_merge=False, max_file_size=150, faults=faults)
        faults.db = db
        try:
            db.merge()  # the writes may shrink the merge so that this point never comes
        except SimulatedCrash:
            crashes += 1
        if faults.wrote:
            assert contents(db) == model, (name, occurrence)
        db.abandon()
        db = open_db(work, fsync="no", auto_merge=False, max_file_size=150)
        assert contents(db) == model, (name, occurrence)
        db.close()
        shutil.rmtree(work)
    assert crashes >= len(points) // 2  # the writes leave fewer merged files to crash in
