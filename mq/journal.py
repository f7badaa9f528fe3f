"""The journal: every job change appended to one file of CRC-checked records.

On the request's journey: when the appserver puts an email job, `Queue.put` tells the
journal (`record`), the journal appends a PUT record, and the server holds the INSERTED
reply until the record is as durable as `--fsync` asks. On restart the file is replayed,
so jobs outlive a crash; a reserved job comes back ready (at-least-once delivery).

Records (`records.py`) state a job's whole state, so replay is "last record wins" and
counters never drift (beanstalkd re-counts buries on replay, #668).

Group commit (`fsync="always"`): the flush runs once per epoll wake-up (the poller's
`call_after`; `call_soon` on other loops), after every connection's requests of that
wake-up were handled, so their records share one `write + fdatasync`; then every reply
waiting on them is released together. The fsync runs in the loop, as Redis does for
`appendfsync always`: requests arriving meanwhile wait in the kernel and share the *next*
fsync, so more concurrent clients means more records per fsync (`sync_in_thread=True`
moves it to a worker thread instead). Records nobody waits for (a reserve, a TTR
timeout) ride along with the next flush.
`"interval"` fsyncs at most every `interval` seconds (beanstalkd's `-f MS`, with a timer so
the tail of a burst is synced too); `"no"` leaves it to the OS (`-F`).

Compaction while running: once the file is at least `compact_min` bytes and more than
twice the size of the live jobs' records, a task writes META + one PUT per live job (in
chunks, yielding to the event loop) to `journal.compact`; records made meanwhile are kept
aside and appended after the snapshot; then one fsync, an atomic rename over `journal`,
and an fsync of the directory. A crash before the rename leaves the old file; after it,
the new one. Leftover `journal.compact` files are deleted on start.

The file is allocated ahead in PREALLOCATE steps and written in place (see PREALLOCATE);
replay (`replay.py`) reads the zeros after the last record as the end.

Simpler than the real thing: beanstalkd writes raw C structs into 10 MiB segments,
reserves disk space for future deletes, and migrates old jobs a few at a time; we keep one
file and rewrite it whole, which also means one long-lived buried job cannot pin old data
forever.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from minisys.files import fsync_dir, pwrite_all, write_all
from minisys.logs import get_logger
from minisys.poller import Callback, LoopPoller, make_poller
from mq.job import Job
from mq.queue import Queue
from mq.records import (
    DEFAULT_COMPACT_MIN,
    encode_delete,
    encode_meta,
    encode_put,
    encode_state,
    put_size,
)
from mq.replay import Replay, read_journal, restore

if TYPE_CHECKING:
    from minisys.poller import DirectSelector

log = get_logger("mq.journal")

JOURNAL = "journal"
COMPACT = "journal.compact"
LOCK = "lock"
# Compaction encodes this many jobs per event-loop turn, so clients keep being served.
COMPACT_CHUNK = 5000
# Records that need no fsync before a reply wait in memory for at most this many records
# (or until the next record that does): a crash loses at most their counter updates.
LAZY_RECORDS = 256
# Written-but-unsynced records (deletes, releases… under fsync=always) reach the disk at
# most this many seconds later, even if no put comes along to sync them.
LAZY_SYNC_DELAY = 1.0
# The journal file grows in steps of this many bytes, allocated ahead (posix_fallocate) and
# written in place: an fdatasync that need not also record a new file size is cheaper
# (microbench here, 180-byte records: 74-83 -> 47-55 µs per write+fdatasync, 25-32 -> 15-20
# µs of CPU). Replay reads the zeros after the last record as the end of the journal.
PREALLOCATE = 4 << 20
# Replays of at least this many jobs `gc.freeze()` them afterwards (below, it is not worth
# taking every other object of the process out of the collector's reach too).
FREEZE_AFTER_JOBS = 10_000


class Journal:
    """The append-only file behind one mq server, with group commit and compaction."""

    def __init__(
        self,
        directory: str,
        fsync: str = "always",
        interval: float = 1.0,
        compact_min: int = DEFAULT_COMPACT_MIN,
        sync_in_thread: bool = False,
    ) -> None:
        if fsync not in ("always", "interval", "no"):
            raise ValueError(f"fsync must be always, interval or no, not {fsync!r}")
        self.directory = directory
        self.fsync = fsync
        self.interval = interval
        self.compact_min = compact_min
        # fsync in a worker thread (the loop keeps serving reads meanwhile) or in the loop.
        self.sync_in_thread = sync_in_thread
        self.generation = 1
        self.seq = 0  # records appended
        self.need_seq = 0  # replies must wait until this record is durable
        self._fsync_due = False  # a put is among the records not yet synced
        self.durable_seq = 0
        self.on_durable: Callable[[int], None] | None = None
        self.records_written = 0
        self.syncs = 0  # fsyncs done: with group commit, far fewer than records
        self.records_migrated = 0
        self.file_bytes = 0
        self.live_bytes = 0
        self.queue: Queue | None = None
        self._fd = -1
        self._lock_fd = -1
        self._allocated = 0  # file size, zeros past file_bytes included
        self._buf: list[bytes] = []
        self._buf_seq = 0
        self._scheduled = False
        self._inflight = False
        self._idle: asyncio.Event | None = None
        self._side: list[bytes] | None = None  # records made while compacting
        self._switching = False
        self._compactor: asyncio.Task | None = None
        self._last_sync = 0.0
        # The flush is a call_after of the poller of the loop the journal runs on, looked
        # up once (see _after) and forgotten by open() and close().
        self._call_after: Callable[[Callback], None] | None = None
        # The poller holding the lazy-sync alarm while one is set (see _arm_sync).
        self._sync_timer: DirectSelector | LoopPoller | None = None
        # Set by the server: under `always`, a record that needs a write but no fsync
        # before its reply (a delete, release, bury, kick) is written by the server's
        # `write_now()` at the end of the connection's batch, not by a flush scheduled for
        # the next loop turn. Same promise (written before the reply); measured in
        # mq/README.md.
        self.caller_writes = False

    # --- start: lock, replay, open ----------------------------------------------------

    def open(self, queue: Queue, now: float) -> Replay:
        """Lock the directory, replay the journal into `queue`, open it for appending."""
        self._call_after = None
        os.makedirs(self.directory, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.directory, LOCK), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit(f"mq: {self.directory} is in use by another mq") from None
        leftover = os.path.join(self.directory, COMPACT)
        if os.path.exists(leftover):
            os.unlink(leftover)  # a compaction that crashed before its rename
        path = os.path.join(self.directory, JOURNAL)
        data = b""
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
        # Replay allocates an object or three per job and frees almost nothing, which is the
        # worst case for the cyclic garbage collector (it would rescan the growing heap
        # again and again): switch it off meanwhile, and afterwards `freeze` the replayed
        # objects so later collections do not walk them at all. Measured: 300k jobs replay
        # in 1.7 s of CPU this way, 2.4 s with the collector left on (-30%).
        gc.disable()
        try:
            replay = read_journal(data)
            restore(queue, replay.jobs.values(), now)
        finally:
            gc.enable()
        if len(replay.jobs) >= FREEZE_AFTER_JOBS:
            gc.freeze()
        if replay.torn:
            log.warning(
                "journal: damaged or torn record at byte %d of %d; keeping the %d records "
                "before it",
                replay.good_bytes,
                len(data),
                replay.records,
            )
            os.truncate(path, replay.good_bytes)
        self.queue = queue
        queue.next_id = max(queue.next_id, replay.next_id)
        self.live_bytes = replay.live_bytes
        self.generation = max(replay.generation, 1)
        # Not O_APPEND: records are written in place at file_bytes, into allocated space.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self._allocated = os.fstat(self._fd).st_size
        self.file_bytes = replay.good_bytes
        if self.file_bytes == 0:
            meta = encode_meta(self.generation, queue.next_id)
            pwrite_all(self._fd, meta, self._claim(meta))
            os.fsync(self._fd)
        return replay

    def _claim(self, data: bytes) -> int:
        """The offset where `data` goes (the end of the records), with room made for it."""
        offset = self.file_bytes
        self.file_bytes = end = offset + len(data)
        if end > self._allocated:
            size = (end // PREALLOCATE + 1) * PREALLOCATE
            try:
                os.posix_fallocate(self._fd, self._allocated, size - self._allocated)
            except OSError:  # a filesystem without it: the writes extend the file
                size = end
            self._allocated = size
        return offset

    # --- append -----------------------------------------------------------------------

    def record(self, job: Job, kind: str, must_sync: bool) -> None:
        """Queue.on_change: append the record describing `job` after a change."""
        if kind == "put":
            data = encode_put(job)
            self.live_bytes += len(data)
        elif kind == "delete":
            data = encode_delete(job.id)
            self.live_bytes -= put_size(job)
        else:
            data = encode_state(job)
        buf = self._buf
        buf.append(data)
        self.seq = seq = self.seq + 1
        if self._side is not None:
            self._side.append(data)
        # A record nobody waits for (a reserve, a TTR timeout) rides along with the next
        # one somebody does wait for, or goes out once LAZY_RECORDS have piled up.
        if must_sync:
            if self.fsync == "always":
                self.need_seq = seq
                # Only a put must reach the disk before its reply: losing it would lose a
                # job. A delete, release, bury or kick is written before its reply (an mq
                # crash cannot undo it) and synced with the next put; a power loss could
                # undo it, which at worst hands a job out again: at-least-once, never a
                # lost job.
                if kind == "put":
                    self._fsync_due = True
                elif self.caller_writes and not self._fsync_due and len(buf) < LAZY_RECORDS:
                    return  # the server writes it at the end of its batch (write_now)
        elif len(buf) < LAZY_RECORDS:
            return
        if not self._scheduled:
            self._scheduled = True
            self._after(self._flush)

    def write_now(self) -> bool:
        """Write the buffered records at once unless one of them is owed an fsync (or a
        write or compaction switch is in progress); True when every record is durable as
        far as `--fsync` asks."""
        if self._fsync_due or self._inflight or self._switching:
            return False
        if self._buf:
            data = b"".join(self._buf)
            self.records_written += len(self._buf)
            self._buf = []
            self._write_unsynced(data, self._claim(data), self.seq)
        return True

    def _write_unsynced(self, data: bytes, offset: int, upto: int) -> None:
        """Write records none of which needs an fsync before its reply (see `record`)."""
        pwrite_all(self._fd, data, offset)
        if self._sync_timer is None:  # synced within a second even if no put comes
            self._arm_sync(LAZY_SYNC_DELAY)
        self.durable_seq = upto
        if self.on_durable is not None:
            self.on_durable(upto)
        if self.file_bytes >= self.compact_min:  # _maybe_compact's first test, inline
            self._maybe_compact()

    def kick(self) -> None:
        """Make sure the records a held reply waits for are on their way to disk."""
        if not self._scheduled and self._buf:
            self._scheduled = True
            self._after(self._flush)

    def _after(self, callback: Callback) -> None:
        """Run `callback` once the current epoll wake-up's callbacks are done: on mq's
        loop, minisys/poller.py's `call_after`, i.e. right after every connection read
        in this wake-up made its records (so they still share one fsync), without the
        asyncio loop turn that `loop.call_soon` costs (the selector returning to
        `_run_once`, a Handle, and the selector entered again). The poller is looked up
        once: `asyncio.get_running_loop()` costs a getpid() system call each time here
        (strace: one per put)."""
        if self._call_after is None:
            self._call_after = make_poller(asyncio.get_running_loop()).call_after
        self._call_after(callback)

    def _flush(self) -> None:
        self._scheduled = False
        if self._inflight or self._switching or not self._buf:
            return
        data = b"".join(self._buf)
        count = len(self._buf)
        self._buf = []
        upto = self.seq
        self.records_written += count
        offset = self._claim(data)
        if self.fsync == "always" and self.need_seq > self.durable_seq:
            if not self._fsync_due:
                self._write_unsynced(data, offset, upto)
                return
            self._fsync_due = False
            if self.sync_in_thread:
                self._inflight = True
                loop = asyncio.get_running_loop()
                fut = loop.run_in_executor(None, _write_and_sync, self._fd, data, offset)
                fut.add_done_callback(lambda f: self._written(f.exception(), upto))
                return
            # Redis's way (appendfsync always): sync right here, in the loop. Requests that
            # arrive meanwhile wait in the kernel and are all handled in the next turn, so
            # they share the next fsync: group commit without a thread hop per batch.
            try:
                pwrite_all(self._fd, data, offset)
                os.fdatasync(self._fd)
            except OSError as exc:
                self._written(exc, upto)
            else:
                self._written(None, upto)
            return
        # Nothing here needs an fsync before a reply (a reserve, a TTR timeout): write it
        # now; the next fsync, whoever triggers it, covers it too.
        pwrite_all(self._fd, data, offset)
        if self.fsync != "always":
            self.durable_seq = upto
        if self.fsync == "interval":
            self._maybe_sync()
        self._maybe_compact()

    def _written(self, exc: BaseException | None, upto: int) -> None:
        self._inflight = False
        if exc is not None:
            # Like Redis with appendfsync always: a journal we cannot write is fatal,
            # because acknowledging jobs we may lose would be a lie.
            log.critical("journal write failed: %s; exiting", exc)
            os._exit(1)
        self.durable_seq = upto
        self.syncs += 1
        if self.on_durable is not None:
            self.on_durable(upto)
        if self._idle is not None:
            self._idle.set()
        if self._buf:
            self._flush()
        if self.file_bytes >= self.compact_min:  # _maybe_compact's first test, inline
            self._maybe_compact()

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        if now - self._last_sync >= self.interval:
            os.fdatasync(self._fd)
            self._last_sync = now
        elif self._sync_timer is None:
            # beanstalkd has no timer here, so the tail of a burst waits for the next
            # write; we sync it `interval` later at the latest.
            self._arm_sync(self.interval)

    def _arm_sync(self, delay: float) -> None:
        """Call _timed_sync `delay` seconds from now: a poller alarm, not an asyncio
        timer, since an armed asyncio timer makes every loop turn dearer and under
        `always` this one was armed nearly all the time (each delete's unsynced write
        arms it; mq's group-commit flush is an asyncio turn per put): 212.2k -> 207.4k
        instructions per greenstalk job with --fsync always."""
        loop = asyncio.get_running_loop()
        poller = make_poller(loop)
        poller.set_alarm(self._timed_sync, loop.time() + delay)
        self._sync_timer = poller

    def _timed_sync(self) -> None:
        self._sync_timer = None
        if self._fd >= 0:
            os.fdatasync(self._fd)
            self._last_sync = time.monotonic()

    # --- compaction -------------------------------------------------------------------

    def _maybe_compact(self) -> None:
        if (
            self._compactor is None
            and self.file_bytes >= self.compact_min
            and self.file_bytes > 2 * self.live_bytes
        ):
            self._compactor = asyncio.get_running_loop().create_task(self._compact())

    async def compact(self) -> None:
        """Rewrite the journal as one PUT per live job, while the server keeps running.

        At most one compaction runs at a time: a second caller (the size threshold, or an
        explicit call) waits for the running one instead of writing the same file beside it.
        """
        if self._compactor is None:
            self._compactor = asyncio.get_running_loop().create_task(self._compact())
        await asyncio.shield(self._compactor)

    async def _compact(self) -> None:
        queue = self.queue
        assert queue is not None
        fd = -1
        try:
            self._side = []
            ids = list(queue.jobs)
            path = os.path.join(self.directory, COMPACT)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            written = len(ids)
            write_all(fd, encode_meta(self.generation + 1, queue.next_id))
            for start in range(0, len(ids), COMPACT_CHUNK):
                parts = []
                for job_id in ids[start : start + COMPACT_CHUNK]:
                    job = queue.jobs.get(job_id)
                    if job is not None:
                        parts.append(encode_put(job))
                write_all(fd, b"".join(parts))
                await asyncio.sleep(0)
            while self._inflight:
                self._idle = asyncio.Event()
                await self._idle.wait()
            # From here until the switch, new records wait in _buf (they go to the new file).
            self._switching = True
            side = b"".join(self._side)
            self._side = None
            unflushed, self._buf = self._buf, []  # all of it is in `side` too
            upto = self.seq
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, _finish_compaction, fd, side, self.directory)
            except OSError:
                # The old file stays the journal: it still needs what it had not got yet.
                self._buf = unflushed + self._buf
                raise
            os.close(self._fd)
            self._fd, fd = fd, -1
            self.generation += 1
            self.file_bytes = self._allocated = os.fstat(self._fd).st_size
            self.records_migrated += written
            self.durable_seq = max(self.durable_seq, upto)
            log.info("journal compacted: %d live jobs, %d bytes", written, self.file_bytes)
            if self.on_durable is not None:
                self.on_durable(self.durable_seq)
        except OSError as exc:
            log.error("journal compaction failed (%s); still appending to the old file", exc)
            if fd >= 0:
                os.close(fd)
        finally:
            self._switching = False
            self._side = None
            self._compactor = None
            self.kick()

    # --- shutdown and stats -----------------------------------------------------------

    async def close(self) -> None:
        """Write and sync what is buffered, then close the file and the lock."""
        if self._compactor is not None:
            await self._compactor
        while self._inflight:
            self._idle = asyncio.Event()
            await self._idle.wait()
        if self._buf:
            data = b"".join(self._buf)
            pwrite_all(self._fd, data, self._claim(data))
            self._buf = []
        os.ftruncate(self._fd, self.file_bytes)  # a clean file: no allocated zeros left
        if self.fsync != "no":
            os.fdatasync(self._fd)
        if self._sync_timer is not None:
            self._sync_timer.clear_alarm(self._timed_sync)
            self._sync_timer = None
        os.close(self._fd)
        os.close(self._lock_fd)
        self._fd = self._lock_fd = -1
        self._call_after = None

    def stats(self) -> dict[str, int]:
        return {
            "oldest-index": self.generation,
            "current-index": self.generation,
            "records-migrated": self.records_migrated,
            "records-written": self.records_written,
            "max-size": self.compact_min,
        }


def _write_and_sync(fd: int, data: bytes, offset: int) -> None:
    pwrite_all(fd, data, offset)
    os.fdatasync(fd)


def _finish_compaction(fd: int, side: bytes, directory: str) -> None:
    """In a worker thread: append what changed meanwhile, sync, switch atomically."""
    write_all(fd, side)
    os.fsync(fd)
    os.replace(os.path.join(directory, COMPACT), os.path.join(directory, JOURNAL))
    fsync_dir(directory)  # make the rename itself durable
