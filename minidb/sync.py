"""Durability: when is a write on disk, and group commit so writers share one fsync.

Journey: every append in `engine.py` takes a *log sequence number* (lsn) from
`GroupCommit.note_write()`. A caller that must not return before its write is durable
(`fsync=always`) calls `wait(lsn)`; the server does the same from asyncio through
`server.py`'s adapter, so its reply leaves only after the fsync. `everysec` runs `sync_now`
from a background thread once a second; `no` leaves flushing to the OS.

Group commit, the one idea in this file: an fsync costs milliseconds however many records
it covers. So the first waiter to find no fsync in progress becomes the *leader*: it
notes the highest lsn written so far, fsyncs once, and wakes everyone whose lsn that
covered. Writers that arrive during the fsync wait for the next one, which again covers
all of them. Fifty concurrent clients then share one fsync instead of queueing for fifty.

    waiter state   event                    next
    ------------   -----------------------  -----------------------------------
    waiting        synced >= my lsn         done
    waiting        nobody syncing           leader: fsync, publish, wake all
    waiting        someone syncing          sleep until woken, look again
    any            an fsync failed          raise SyncFailed (the db is unusable)

Why the failure is sticky: after a failed fsync the kernel may have dropped the dirty
pages, so retrying can "succeed" without the data ever reaching the disk (the 2018
PostgreSQL "fsyncgate"). Like Redis under `appendfsync always`, we refuse to go on.

Simpler than the real thing: Redis appends the commands of one event-loop iteration to a
buffer and does one write+fsync before replying; we write each record immediately
(so reads can find it) and batch only the fsync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

FSYNC_POLICIES = ("always", "everysec", "no")
# Redis's everysec: at most about one second of acknowledged writes can be lost.
EVERYSEC_INTERVAL = 1.0


class SyncFailed(OSError):
    """An fsync failed; acknowledged-but-unsynced writes may be lost. Reopen the db."""


class GroupCommit:
    """Sequence numbers for writes and syncs, with leader-based shared fsyncs.

    `sync_fn()` must fsync everything written so far and return the lsn it covered; the
    engine implements it by reading the current lsn *before* fsyncing the active file
    (files are fsynced when they stop being active, so older files are already durable).
    """

    def __init__(self, sync_fn: Callable[[], int]) -> None:
        self._sync_fn = sync_fn
        self._cond = threading.Condition()
        self._syncing = False
        self.written = 0
        self.synced = 0
        self.fsyncs = 0
        self.error: BaseException | None = None

    def note_write(self) -> int:
        """Called by the engine, under its lock, right after an append: the write's lsn."""
        self.written += 1
        return self.written

    def wait(self, lsn: int) -> None:
        """Block until the write numbered `lsn` is durable (becoming the leader if needed)."""
        with self._cond:
            while self.synced < lsn:
                if self.error is not None:
                    raise SyncFailed(f"fsync failed earlier: {self.error}")
                if self._syncing:
                    self._cond.wait()
                    continue
                self._lead()
            if self.error is not None and self.synced < lsn:
                raise SyncFailed(f"fsync failed earlier: {self.error}")

    def sync_now(self) -> None:
        """Make everything written so far durable (everysec's tick, SAVE, close)."""
        self.wait(self.written)

    def _lead(self) -> None:
        # Called with the condition held; the fsync itself runs without it so that
        # other writers can keep registering (they will ride the next fsync).
        self._syncing = True
        self._cond.release()
        covered = 0
        error: BaseException | None = None
        try:
            covered = self._sync_fn()
        except BaseException as exc:
            error = exc
        finally:
            self._cond.acquire()
            self._syncing = False
        if error is not None:
            self.error = error
            self._cond.notify_all()
            raise SyncFailed(f"fsync failed: {error}") from error
        self.fsyncs += 1
        self.synced = max(self.synced, covered)
        self._cond.notify_all()


class EverySec:
    """A daemon thread that makes writes durable about once a second (`fsync=everysec`)."""

    def __init__(self, commit: GroupCommit, interval: float = EVERYSEC_INTERVAL) -> None:
        self._commit = commit
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minidb-everysec", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._commit.written > self._commit.synced:
                try:
                    self._commit.sync_now()
                except SyncFailed:
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
