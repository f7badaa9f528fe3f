"""Gets through memory maps: one record read per get, from the map or past it, and safe maps."""

from __future__ import annotations

import gc
import os

import pytest

from minidb import CorruptionError
from minidb import datafile as datafile_module
from minidb import engine as engine_module

from .conftest import contents


class RecordingMap(bytes):
    """Stands in for a DataFile's map (its bytes) and notes every slice a get takes of it.

    Reads through the buffer protocol (the CRC field, unpacked in place) are not slices.
    """

    def __new__(cls, real) -> RecordingMap:
        self = super().__new__(cls, real)
        self.slices: list[tuple[int, int]] = []
        return self

    def __getitem__(self, part: slice) -> bytes:
        self.slices.append((part.start, part.stop))
        return super().__getitem__(part)


@pytest.fixture
def counted_preads(monkeypatch):
    calls: list[tuple[int, int]] = []
    real_pread = os.pread

    def counting_pread(fd: int, size: int, offset: int) -> bytes:
        calls.append((size, offset))
        return real_pread(fd, size, offset)

    monkeypatch.setattr(engine_module, "_pread", counting_pread)
    return calls


def test_a_get_is_one_read_of_exactly_its_record(db_dir, opener, counted_preads):
    db = opener(max_file_size=300)
    for i in range(30):
        db.put(b"k%d" % i, b"v%d" % i)
    file_id, offset, size, _ts = db.keydir.get(b"k7")
    assert file_id != db.active.id  # a sealed file: mapped whole
    recording = db.files[file_id].map = RecordingMap(db.files[file_id].map)
    assert db.get(b"k7") == b"v7"
    # One slice, of exactly the record after its CRC field (read in place), no pread.
    assert recording.slices == [(offset + 4, offset + size)] and counted_preads == []
    assert size == 21 + len(b"k7") + len(b"v7")
    assert db.get(b"nope") is None and len(recording.slices) == 1  # a miss reads nothing


def test_the_active_files_tail_past_its_map_is_one_pread(db_dir, opener, counted_preads):
    db = opener()
    db.put(b"a", b"1")
    db.close()
    db = opener()  # reopened: the active file is mapped up to its size
    assert len(db.active.map) == db.active.size > 0
    db.put(b"b", b"2")  # appended past the map
    _id, offset, size, _ts = db.keydir.get(b"b")
    assert offset >= len(db.active.map)
    assert db.get(b"a") == b"1" and counted_preads == []
    assert db.get(b"b") == b"2" and counted_preads == [(size, offset)]


def test_the_active_file_is_mapped_again_as_it_grows(db_dir, opener, monkeypatch):
    monkeypatch.setattr(datafile_module, "REMAP_BYTES", 100)
    db = opener()
    mapped_sizes = set()
    for i in range(50):
        db.put(b"k%d" % i, b"x" * 20)
        assert db.active.size - len(db.active.map) < 100
        mapped_sizes.add(len(db.active.map))
    assert len(mapped_sizes) > 5
    assert contents(db) == {b"k%d" % i: b"x" * 20 for i in range(50)}


def test_a_damaged_record_in_a_mapped_file_is_never_returned(db_dir, opener):
    db = opener(max_file_size=40)
    db.put(b"k", b"hello")
    db.put(b"j", b"world")  # rotates: the file holding k is sealed and mapped
    file_id, offset, _size, _ts = db.keydir.get(b"k")
    assert len(db.files[file_id].map) > offset
    with open(db.files[file_id].path, "r+b") as f:  # the map shares these pages
        f.seek(offset + 22)
        f.write(b"J")
    with pytest.raises(CorruptionError, match="bad crc"):
        db.get(b"k")


def test_a_retired_files_map_stays_valid_until_its_reader_lets_go(db_dir, opener):
    db = opener(max_file_size=200)
    for i in range(20):
        db.put(b"k%d" % i, b"v%d" % i)
    file_id, offset, size, _ts = db.keydir.get(b"k0")
    held = db.files[file_id]  # what a get holds during its read
    before = held.map[offset : offset + size]
    assert db.merge() and file_id not in db.files
    assert not (db.dir / f"{file_id:06d}.data").exists()  # unlinked...
    assert held.map[offset : offset + size] == before  # ...but still mapped and readable
    assert db.get(b"k0") == b"v0"
    fd = held.fd
    del held  # the last reference: the descriptor closes and the map goes
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_mapped_file_refuses_to_shrink(db_dir, opener):
    db = opener()
    db.put(b"k", b"v")
    db.active.map_file()
    with pytest.raises(RuntimeError, match="SIGBUS"):
        db.active.truncate(0)


def test_close_drops_every_map(db_dir, opener):
    db = opener(max_file_size=100)
    for i in range(5):
        db.put(b"k%d" % i, b"v" * 30)
    files = list(db.files.values())
    assert any(f.map for f in files)
    db.close()
    assert all(f.map == b"" for f in files)
