"""Merge (compaction): rewrite the live records of the sealed files, then drop the old files.

Journey: `engine.py` starts a merge when dead bytes pass a ratio (or on `COMPACT` /
`BGREWRITEAOF` from `commands.py`). It runs in its own thread; readers and writers only
ever wait for the short lock holds marked [lock] below, never for the copying.

    step                                                       crash here leaves
    ---------------------------------------------------------  -------------------------------
    1 [lock] seal the active file; inputs = every file so far;  old files; an empty new active
      the new active gets id  max+1+R, keeping R ids free
    2 copy each input record that the keydir still points at    + *.tmp files (deleted on open)
      into NNNNNN.data.tmp (ids from the free range), fsync it,
      write its hint file NNNNNN.hint.tmp, fsync it
    3 rename every .tmp to its real name, then fsync the dir    old files + some merged files
    4 [lock, in chunks] re-point keydir entries that still      (memory only)
      point at the old spot (compare-and-set: newer writes win)
    5 [lock] forget the inputs; unlink them OLDEST FIRST, fsync the newest inputs + merged files

Why this is safe at every step: recovery replays files in id order, and the merged files'
ids sit between the inputs and the active file. A merged file only restates the latest
value an input file already had, so replaying it after any surviving inputs changes
nothing, and the active file (newer writes) still comes last. Tombstones are dropped,
which is only safe if no older copy of the key can come back: deleting inputs oldest
first means that whenever an input holding a tombstone is gone, every older input that
could hold the deleted value is gone too (the resurrection bug of basho/bitcask #82).

Why re-point by compare-and-set: while we copied, a client may have overwritten or deleted
the key; the keydir then points into the active file and must keep doing so. The stale copy
in the merged file is harmless: the active file is replayed after it.

Simpler than the real thing: Bitcask merges a chosen subset of files and can run in a
separate OS process; we always merge every sealed file, in a thread of the server.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from minisys.files import fdatasync, fsync_dir, write_all
from minisys.logs import get_logger

from . import record
from .datafile import TMP_SUFFIX, DataFile, data_path, hint_path
from .faults import Faults, SimulatedCrash
from .hint import encode_hint

if TYPE_CHECKING:
    from .engine import DB

log = get_logger("minidb.merge")

# Keys re-pointed per lock hold: bounds how long a reader or writer can wait on a merge.
SWAP_CHUNK = 10_000
# Merged bytes buffered before a write() (few syscalls, bounded memory).
WRITE_CHUNK = 1024 * 1024


class MergeState:
    """Is a merge running, and what did the last one do? At most one merge at a time."""

    def __init__(self) -> None:
        self.running = False
        self.count = 0
        self.last_at: float | None = None
        self.last_seconds: float | None = None
        self.last_reclaimed = 0
        self.last_error: BaseException | None = None
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def _claim(self) -> bool:
        with self._guard:
            if self.running:
                return False
            self.running = True
            return True

    def run(self, db: DB) -> bool:
        """Merge now in this thread; False if another merge holds the claim."""
        if not self._claim():
            return False
        try:
            _merge(db, self)
        finally:
            self.running = False
        return True

    def start_background(self, db: DB) -> bool:
        if not self._claim():
            return False
        self._thread = threading.Thread(
            target=self._background, args=(db,), name="minidb-merge", daemon=True
        )
        self._thread.start()
        return True

    def _background(self, db: DB) -> None:
        try:
            _merge(db, self)
        except (Exception, SimulatedCrash) as exc:
            self.last_error = exc
            log.error("merge failed: %s", exc)
        finally:
            self.running = False

    def join(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join()


class _OutputWriter:
    """Writes merged records into `NNNNNN.data.tmp` files, each followed by its hint."""

    def __init__(self, directory: Path, ids: list[int], max_size: int, faults: Faults) -> None:
        self.directory = directory
        self.ids = ids
        self.max_size = max_size
        self.faults = faults
        self.done: list[int] = []
        self._fd: int | None = None
        self._id = 0
        self._size = 0
        self._buffer: list[bytes | memoryview] = []
        self._buffered = 0
        self._hints: list[tuple[bytes, int, int, int]] = []

    def add(self, key: bytes, rec: bytes | memoryview, ts: int) -> tuple[int, int]:
        """Append one record; return (file id, offset) where it will live."""
        full = self._size and self._size + len(rec) > self.max_size
        # Out of reserved ids: the last merged file simply grows past the limit.
        if self._fd is None or (full and len(self.done) + 1 < len(self.ids)):
            self._roll()
        offset = self._size
        self._buffer.append(rec)
        self._buffered += len(rec)
        self._size += len(rec)
        self._hints.append((key, offset, len(rec), ts))
        if self._buffered >= WRITE_CHUNK:
            self._flush()
        return self._id, offset

    def _roll(self) -> None:
        if self._fd is not None:
            self._seal()
        self._id = self.ids[len(self.done)]
        tmp = Path(str(data_path(self.directory, self._id)) + TMP_SUFFIX)
        self._fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._size = 0

    def _flush(self) -> None:
        write_all(self._fd, b"".join(self._buffer))
        self._buffer.clear()
        self._buffered = 0

    def _seal(self) -> None:
        self._flush()
        self.faults.point("merge.write_data")
        fdatasync(self._fd)
        os.close(self._fd)
        self._fd = None
        self.faults.point("merge.fsync_data")
        hint_tmp = str(hint_path(self.directory, self._id)) + TMP_SUFFIX
        fd = os.open(hint_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, encode_hint(self._hints, self._size))
            fdatasync(fd)
        finally:
            os.close(fd)
        self._hints = []
        self.faults.point("merge.write_hint")
        self.done.append(self._id)

    def finish(self) -> list[int]:
        if self._fd is not None:
            self._seal()
        return self.done


def _merge(db: DB, state: MergeState) -> None:
    started = time.monotonic()
    faults = db.faults
    with db._lock:  # step 1
        if db.closed:
            return
        inputs = sorted(db.files)
        before = sum(db.files[i].size for i in inputs)
        if before == 0:
            return
        reserved = list(range(db.active.id + 1, db.active.id + 2 + len(inputs)))
        db._rotate(reserved[-1] + 1)
        sources = {i: db.files[i] for i in inputs}
    faults.point("merge.start")

    writer = _OutputWriter(db.dir, reserved, db.max_file_size, faults)  # step 2
    moves: list[tuple[bytes, int, int, tuple[int, int, int, int]]] = []
    entries = db.keydir.entries
    skip = record.FLAG_TOMBSTONE | record.FLAG_FLUSH
    in_batch = record.FLAG_BATCH | record.FLAG_COMMIT
    for file_id in inputs:
        buf = sources[file_id].read_all()
        view = memoryview(buf)
        scanner = record.RecordScanner(buf)
        for offset, flags, ts, key, size in scanner:
            if flags & skip:
                continue
            entry = entries.get(key)  # a dict read is atomic under the GIL: no lock needed
            if entry is None or entry[0] != file_id or entry[1] != offset:
                continue  # overwritten or deleted later: dead
            if flags & in_batch:  # committed long ago: store it as a plain record
                value_at = offset + record.HEADER_SIZE + len(key)
                rec = record.encode(key, buf[value_at : offset + size], 0, ts)
            else:
                rec = view[offset : offset + size]
            new_id, new_offset = writer.add(key, rec, ts)
            moves.append((key, file_id, offset, (new_id, new_offset, size, ts)))
        if scanner.error is not None:
            raise RuntimeError(
                f"merge stopped: {sources[file_id].path.name} has {scanner.error}"
                f" at offset {scanner.valid_end}"
            )
        faults.point("merge.read_file")
    merged = writer.finish()

    for file_id in merged:  # step 3
        os.rename(f"{data_path(db.dir, file_id)}{TMP_SUFFIX}", data_path(db.dir, file_id))
        faults.point("merge.rename_data")
        os.rename(f"{hint_path(db.dir, file_id)}{TMP_SUFFIX}", hint_path(db.dir, file_id))
        faults.point("merge.rename_hint")
    fsync_dir(db.dir)
    faults.point("merge.fsync_dir")

    new_files = {i: DataFile(db.dir, i, writable=False) for i in merged}  # step 4
    for datafile in new_files.values():
        datafile.map_file()
    with db._lock:
        db.files.update(new_files)
    for start in range(0, len(moves), SWAP_CHUNK):
        with db._lock:
            replace_if = db.keydir.replace_if
            for key, old_id, old_offset, entry in moves[start : start + SWAP_CHUNK]:
                replace_if(key, old_id, old_offset, entry)
    faults.point("merge.swap")

    with db._lock:  # step 5
        for file_id in inputs:
            # Not closed here: a get may be mid-pread on it. Its descriptor closes when the
            # last reference goes (datafile.py, "Lifetime").
            del db.files[file_id]
    for file_id in inputs:  # oldest first: see the module docstring
        os.unlink(data_path(db.dir, file_id))
        faults.point("merge.unlink_data")
        hint_path(db.dir, file_id).unlink(missing_ok=True)
    fsync_dir(db.dir)
    faults.point("merge.done")

    after = sum(f.size for f in new_files.values())
    state.count += 1
    state.last_at = db.clock()
    state.last_seconds = time.monotonic() - started
    state.last_reclaimed = before - after
    log.info(
        "merged %d files (%d bytes) into %d (%d bytes) in %.3fs",
        len(inputs), before, len(merged), after, state.last_seconds,
    )  # fmt: skip
