"""The storage engine: open a directory, recover it, then put/get/delete/batch/merge.

Journey: the RESP server (`server.py` -> `commands.py`) and embedded users
(`from minidb import open_db`) both land here. A write encodes records (`record.py`),
appends them to the active data file (`datafile.py`) under one lock, points the keydir
(`keydir.py`) at them and gets an lsn; durability is `sync.py`'s business. A read is one
keydir lookup, one record read (a slice of a memory map) and a CRC check. `merge.py`
reclaims dead bytes.

Opening takes an exclusive `flock` on `LOCK` (Bitcask: one writer process per directory)
and then rebuilds the keydir from the files (`recovery.py`).

Files stop being active at a size limit (`max_file_size`): the old one is fsynced first,
so every file but the active one is always fully durable and never has a torn tail.

Simpler than the real thing: one process, one lock around the keydir and appends (Bitcask
uses a lock-free keydir shared between Erlang processes); no expiry, no per-key
timestamps-based conflict resolution, and the whole keydir lives in RAM as Python tuples.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from minisys.files import fsync_dir

from . import record
from .datafile import DataFile
from .faults import NO_FAULTS, Faults
from .keydir import KeyDir
from .merge import MergeState
from .recovery import CorruptionError, recover
from .sync import FSYNC_POLICIES, EverySec, GroupCommit

# Bitcask's default is 2 GiB; smaller files make merges finer-grained and rotation visible.
DEFAULT_MAX_FILE_SIZE = 64 * 1024 * 1024
# Start a background merge when at least half the bytes on disk are dead...
DEFAULT_MERGE_DEAD_RATIO = 0.5
# ...and there are enough of them to be worth rewriting the live rest.
DEFAULT_MERGE_MIN_DEAD_BYTES = 16 * 1024 * 1024
LOCK_NAME = "LOCK"
# Whether a merge is due is checked after this many appended bytes, not on every write
# (summing file sizes per write would cost more than the write).
MERGE_CHECK_BYTES = 1024 * 1024

_unpack_crc = record.CRC.unpack_from
_crc32 = zlib.crc32
_pread = os.pread
_HEADER_SIZE = record.HEADER_SIZE
_KEY_IN_BODY = _HEADER_SIZE - record.CRC.size  # where the key starts after the CRC field
_COPY_LIMIT = 4096

Op = record.Op  # (key, value) puts, (key, None) deletes, (None, None) forgets every key
FLUSH: Op = (None, None)


class DatabaseLocked(Exception):
    """Another process has this data directory open."""


class DatabaseClosed(Exception):
    """The db was closed (or an fsync failed and it refuses further writes)."""


@dataclass(frozen=True)
class Stats:
    """A snapshot of the engine's counters (INFO persistence/keyspace come from here)."""

    keys: int
    files: int
    active_file: int
    data_bytes: int
    live_bytes: int
    dead_bytes: int
    writes: int
    fsyncs: int
    fsync_policy: str
    merges: int
    merging: bool
    last_merge_at: float | None
    last_merge_seconds: float | None
    last_merge_reclaimed_bytes: int
    recovery_seconds: float
    files_from_hints: int
    truncated_bytes: int
    corrupt_files: tuple[str, ...]


class Batch:
    """Operations collected by `DB.batch()`, written as one atomic unit at the end."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None))


class DB:
    """A Bitcask-style key/value store in one directory. Thread-safe. Use `open_db`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: str = "always",
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        clock: Callable[[], float] = time.time,
        auto_merge: bool = True,
        merge_dead_ratio: float = DEFAULT_MERGE_DEAD_RATIO,
        merge_min_dead_bytes: int = DEFAULT_MERGE_MIN_DEAD_BYTES,
        on_corruption: str = "raise",
        faults: Faults = NO_FAULTS,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {fsync!r}")
        if on_corruption not in ("raise", "skip"):
            raise ValueError("on_corruption must be 'raise' or 'skip'")
        self.dir = Path(path)
        self.fsync = fsync
        self.max_file_size = max_file_size
        self.clock = clock
        self.auto_merge = auto_merge
        self.merge_dead_ratio = merge_dead_ratio
        self.merge_min_dead_bytes = merge_min_dead_bytes
        self.on_corruption = on_corruption
        self.faults = faults
        self._lock = threading.Lock()
        self.keydir = KeyDir()
        # get's hot path reads this dict directly; close() swaps in an empty one, so a get
        # after close misses, looks at `closed` and raises instead of reading a closed fd.
        self._entries = self.keydir.entries
        self.files: dict[int, DataFile] = {}
        self._files = self.files  # the same dict for the db's life (get's hot path)
        self.live_bytes = 0
        self.appended_bytes = 0  # since the last "is a merge due?" check
        self._merge_check_bytes = min(MERGE_CHECK_BYTES, max(1, merge_min_dead_bytes // 8))
        self.closed = False
        self.commit = GroupCommit(self._sync_active)
        self.merge_state = MergeState()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_dir_lock()
        started = time.perf_counter()
        try:
            self.recovered = recover(self.dir, self.keydir, self.files, on_corruption)
        except BaseException:
            self._release_files()
            raise
        self.recovery_seconds = time.perf_counter() - started
        self.live_bytes = self.recovered.live_bytes
        for datafile in self.files.values():  # only now: recovery may have cut a torn tail
            datafile.map_file()
        self.active = self.files[max(self.files)]
        self._everysec = EverySec(self.commit) if fsync == "everysec" else None

    # ----------------------------------------------------------------- recovery

    def _take_dir_lock(self) -> int:
        fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatabaseLocked(f"{self.dir} is open in another process") from None
        return fd

    # ----------------------------------------------------------------- writes

    def apply(self, ops: Sequence[Op]) -> int:
        """Append `ops` as one atomic unit and update the keydir; return its lsn.

        Does not wait for durability: call `wait_durable(lsn)` (or use put/delete/write_batch,
        which do). One op is one self-committing record; several become a BATCH...COMMIT run
        written with a single `write`, so a crash keeps all of them or none.
        """
        if not ops:
            return self.commit.written
        with self._lock:
            return self._apply_locked(ops)

    def apply_put(self, key: bytes, value: bytes) -> int:
        """`apply(((key, value),))`, the most common write, without building the tuples.

        The record is encoded before the lock is taken (it needs nothing the lock guards;
        its timestamp is informational, so two writers may append theirs out of clock
        order), and the lock is taken with acquire/release, not `with`: callgrind, one
        put of a 16-byte key and a 3-byte value, 17.4k -> 14.9k instructions together
        with `_put_locked`'s inlined steps.
        """
        ts = int(self.clock() * 1000)
        rec = record.encode(key, value, 0, ts)
        lock = self._lock
        lock.acquire()
        try:
            return self._put_locked(key, rec, ts)
        finally:
            lock.release()

    def _check_writable(self) -> None:
        if self.closed:
            raise DatabaseClosed("the database is closed")
        if self.commit.error is not None:
            raise DatabaseClosed(f"an fsync failed, refusing writes: {self.commit.error}")

    def _put_locked(self, key: bytes, rec: bytes, ts: int) -> int:
        """A plain put's record appended and indexed: `_append` and `_after_append`
        spelled out (a call each less on the hottest write)."""
        if self.closed or self.commit.error is not None:
            self._check_writable()
        size = len(rec)
        active = self.active
        if active.size and active.size + size > self.max_file_size:
            active = self._rotate(active.id + 1)
        self.appended_bytes += size
        offset = active.append(rec)
        old = self.keydir.put(key, (active.id, offset, size, ts))
        self.live_bytes += size - (old[2] if old is not None else 0)
        commit = self.commit
        commit.written += 1  # commit.note_write(), inline
        if self.auto_merge and self.appended_bytes >= self._merge_check_bytes:
            self._maybe_merge()
        return commit.written

    def _apply_locked(self, ops: Sequence[Op]) -> int:
        if len(ops) == 1 and ops[0][0] is not None and ops[0][1] is not None:
            key, value = ops[0]
            ts = int(self.clock() * 1000)
            return self._put_locked(key, record.encode(key, value, 0, ts), ts)
        self._check_writable()
        ts = int(self.clock() * 1000)
        payload, sizes = record.encode_run(ops, ts)
        offset = self._append(payload)
        self.live_bytes = self.keydir.apply_run(
            ops, self.active.id, offset, sizes, ts, self.live_bytes
        )
        return self._after_append()

    def _append(self, payload: bytes) -> int:
        """Append to the active file (rotating first if it would grow past the limit)."""
        active = self.active
        if active.size and active.size + len(payload) > self.max_file_size:
            active = self._rotate(active.id + 1)
        self.appended_bytes += len(payload)
        return active.append(payload)

    def _after_append(self) -> int:
        """Number the write, and now and then check whether a merge is due."""
        lsn = self.commit.note_write()
        if self.auto_merge and self.appended_bytes >= self._merge_check_bytes:
            self._maybe_merge()
        return lsn

    def _maybe_merge(self) -> None:
        """Enough bytes were appended since the last look: start a merge if one is due."""
        if not self.merge_state.running:
            self.appended_bytes = 0
            if self._merge_due():
                self.merge_state.start_background(self)

    def _rotate(self, new_id: int) -> DataFile:
        """Seal the active file (fsync it: older files must never have a torn tail)."""
        self.active.sync()
        self.active.map_file()  # sealed: map it whole
        datafile = DataFile(self.dir, new_id, writable=True)
        fsync_dir(self.dir)
        self.files[new_id] = datafile
        self.active = datafile
        return datafile

    def _merge_due(self) -> bool:
        data = self.data_bytes()
        dead = data - self.live_bytes
        return dead >= self.merge_min_dead_bytes and dead >= data * self.merge_dead_ratio

    def wait_durable(self, lsn: int) -> None:
        """Block until write `lsn` satisfies the fsync policy (only `always` waits)."""
        if self.fsync == "always" and self.commit.synced < lsn:
            self.commit.wait(lsn)

    def _sync_active(self) -> int:
        with self._lock:
            covered = self.commit.written
            active = self.active
        self.faults.before_fsync()
        active.sync()
        return covered

    def put(self, key: bytes, value: bytes) -> None:
        self.wait_durable(self.apply_put(key, value))

    def delete(self, key: bytes) -> bool:
        """Delete `key`; False (and nothing written) if it did not exist."""
        with self._lock:
            if key not in self.keydir:
                return False
            lsn = self._apply_locked(((key, None),))
        self.wait_durable(lsn)
        return True

    def write_batch(self, ops: Iterable[Op]) -> None:
        """Apply puts `(k, v)`, deletes `(k, None)` and FLUSH atomically."""
        self.wait_durable(self.apply(list(ops)))

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """`with db.batch() as b: b.put(k, v); b.delete(j)` - applied atomically on exit.

        Nothing is written if the block raises.
        """
        batch = Batch()
        yield batch
        if batch.ops:
            self.write_batch(batch.ops)

    def flush_all(self) -> None:
        self.wait_durable(self.apply((FLUSH,)))

    def sync(self) -> None:
        """Make every write so far durable, whatever the policy (SAVE)."""
        self.commit.sync_now()

    # ----------------------------------------------------------------- reads

    def get(self, key: bytes) -> bytes | None:
        """The value of `key` or None: one keydir lookup, one record read, one CRC check.

        The record is a slice of its file's memory map, or one `pread` when it lies past
        the map (the newest bytes of the active file; datafile.py, "Why a map"). No lock:
        dict reads are atomic, and the `DataFile` we hold keeps its map and descriptor
        alive for as long as this read needs them (datafile.py, "Lifetime"). The CRC
        covers the whole record, so a record damaged on disk raises instead of being
        returned.
        """
        while True:
            entry = self._entries.get(key)
            if entry is None:
                if self.closed:
                    raise DatabaseClosed("the database is closed")
                return None
            file_id, offset, size, _ts = entry
            try:
                datafile = self._files[file_id]  # (a subscript is cheaper than .get)
            except KeyError:
                # A merge retired the file after we read the entry; it re-pointed the key
                # to the merged copy first (merge.py steps 4-5), so looking again finds it.
                continue
            break
        mapped = datafile.map
        end = offset + size
        if end <= len(mapped) and size < _COPY_LIMIT:
            # The usual record: its CRC field read in place, the rest copied out once
            # (callgrind, a get of a 100-byte value: 6.5k -> 6.05k instructions).
            body = mapped[offset + 4 : end]
            if _crc32(body) != _unpack_crc(mapped, offset)[0]:
                ok = record.check(mapped[offset:end], 0)
                raise CorruptionError(f"record of {key!r} at {file_id}:{offset} is bad: {ok}")
            return body[_KEY_IN_BODY + len(key) :]
        if end <= len(mapped):
            data = mapped[offset:end]  # exactly `size` bytes
        else:
            data = _pread(datafile.fd, size, offset)
            if len(data) != size:
                raise CorruptionError(f"record of {key!r} at {file_id}:{offset}: short read")
        # Small records: copying the bytes is cheaper than making a memoryview of them.
        body = data[4:] if size < _COPY_LIMIT else memoryview(data)[4:]
        if _crc32(body) != _unpack_crc(data)[0]:
            ok = record.check(data, 0)
            raise CorruptionError(f"record of {key!r} at {file_id}:{offset} is bad: {ok}")
        # The value follows the 21-byte header and the key (whose length we know).
        return data[_HEADER_SIZE + len(key) :]

    def __contains__(self, key: bytes) -> bool:
        return key in self.keydir.entries

    def __len__(self) -> int:
        return len(self.keydir)

    def keys(self) -> list[bytes]:
        """A snapshot of every live key (in no particular order)."""
        with self._lock:
            return self.keydir.keys()

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.keys())

    def scan(
        self, cursor: int, count: int = 10, match: Callable[[bytes], bool] | None = None
    ) -> tuple[int, list[bytes]]:
        """One SCAN step: (next cursor, keys); cursor 0 starts and ends an iteration."""
        with self._lock:
            return self.keydir.scan(cursor, count, match)

    # ----------------------------------------------------------------- merge, stats, close

    def merge(self, wait: bool = True) -> bool:
        """Compact the immutable files; False if a merge is already running."""
        if wait:
            return self.merge_state.run(self)
        return self.merge_state.start_background(self)

    def data_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def stats(self) -> Stats:
        with self._lock:
            data = self.data_bytes()
            ms = self.merge_state
            return Stats(
                keys=len(self.keydir),
                files=len(self.files),
                active_file=self.active.id,
                data_bytes=data,
                live_bytes=self.live_bytes,
                dead_bytes=data - self.live_bytes,
                writes=self.commit.written,
                fsyncs=self.commit.fsyncs,
                fsync_policy=self.fsync,
                merges=ms.count,
                merging=ms.running,
                last_merge_at=ms.last_at,
                last_merge_seconds=ms.last_seconds,
                last_merge_reclaimed_bytes=ms.last_reclaimed,
                recovery_seconds=self.recovery_seconds,
                files_from_hints=self.recovered.files_from_hints,
                truncated_bytes=self.recovered.truncated_bytes,
                corrupt_files=tuple(self.recovered.corrupt_files),
            )

    def close(self) -> None:
        """Wait for a running merge, make everything durable, release the directory."""
        if self.closed:
            return
        self.auto_merge = False  # no new background merge may start while we wait
        self.merge_state.join()
        if self._everysec is not None:
            self._everysec.stop()
        if self.commit.error is None and self.fsync != "no":
            self.commit.sync_now()
        with self._lock:
            self.closed = True
            self._entries = {}
        self._release_files()

    def abandon(self) -> None:
        """Drop everything without syncing, as if the process had died (crash tests).

        A background merge is let finish first: a real crash would kill its thread, but a
        thread of this process would otherwise race the db that the test opens next.
        """
        self.closed = True
        self._entries = {}
        self.merge_state.join()
        if self._everysec is not None:
            self._everysec.stop()
        self._release_files()

    def _release_files(self) -> None:
        for datafile in self.files.values():
            datafile.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> DB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_db(path: str | os.PathLike[str], **options: object) -> DB:
    """Open (creating if needed) the minidb database in directory `path`.

    Options: fsync="always"|"everysec"|"no", max_file_size, clock, auto_merge,
    merge_dead_ratio, merge_min_dead_bytes, on_corruption="raise"|"skip", faults.
    """
    return DB(path, **options)  # type: ignore[arg-type]
