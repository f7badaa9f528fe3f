"""Durability: group commit shares fsyncs; a failed fsync is sticky; everysec catches up."""

from __future__ import annotations

import asyncio
import threading

import pytest

from minidb import DatabaseClosed, Faults, SyncFailed
from minidb.server import INLINE_FSYNC_SECONDS, Durability
from minidb.sync import GroupCommit
from minisys.testing import wait_until


def test_concurrent_writers_share_fsyncs(db_dir, opener):
    db = opener(fsync="always")
    barrier = threading.Barrier(8)

    def writer(w: int) -> None:
        barrier.wait()
        for i in range(25):
            db.put(b"w%d-%d" % (w, i), b"x")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = db.stats()
    assert stats.writes == 200 and len(db) == 200
    assert db.commit.synced == 200
    assert stats.fsyncs <= 200  # usually far fewer; timing decides how many were shared


def test_group_commit_one_fsync_covers_every_waiter():
    # Deterministic: the leader's fsync is held open while others register.
    entered, release = threading.Event(), threading.Event()
    calls = []

    def sync_fn() -> int:
        covered = commit.written  # like the engine: read the lsn, then fsync
        calls.append(covered)
        entered.set()
        release.wait()
        return covered

    commit = GroupCommit(sync_fn)
    commit.note_write()
    leader = threading.Thread(target=commit.wait, args=(1,))
    leader.start()
    entered.wait()
    lsns = [commit.note_write() for _ in range(5)]
    followers = [threading.Thread(target=commit.wait, args=(n,)) for n in lsns]
    for t in followers:
        t.start()
    release.set()
    for t in [leader, *followers]:
        t.join()
    assert commit.synced == 6
    assert calls == [1, 6]  # the leader's, then one shared by all five followers


def test_a_failed_fsync_is_sticky(db_dir, opener):
    db = opener(fsync="always", faults=Faults(fail_fsync_at=2))
    db.put(b"a", b"1")
    with pytest.raises(SyncFailed):
        db.put(b"b", b"2")
    with pytest.raises(DatabaseClosed, match="fsync failed"):
        db.put(b"c", b"3")
    assert db.get(b"a") == b"1"
    db.abandon()


def test_everysec_syncs_in_the_background(db_dir, opener):
    db = opener(fsync="everysec")
    db.put(b"a", b"1")
    assert db.commit.written == 1
    wait_until(lambda: db.commit.synced == 1, timeout=10)


def test_save_syncs_whatever_the_policy(db_dir, opener):
    db = opener(fsync="no")
    db.put(b"a", b"1")
    assert db.commit.synced == 0
    db.sync()
    assert db.commit.synced == 1


class GatedFsync(Faults):
    """Holds each fsync (after the engine noted which lsn it covers) until `gate` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def before_fsync(self) -> None:
        self.entered.set()
        assert self.gate.wait(10)


def test_the_server_replies_only_after_an_fsync_covers_the_write(db_dir, opener):
    faults = GatedFsync()
    db = opener(fsync="always", faults=faults)
    durability = Durability(db)

    async def scenario() -> None:
        first = durability.after(db.apply([(b"a", b"1")]), "first")
        # The fsync covering `first` is now stuck in its thread; the event loop is not.
        await asyncio.to_thread(faults.entered.wait, 10)
        others = [durability.after(db.apply([(k, b"v")]), k) for k in (b"b", b"c", b"d")]
        await asyncio.sleep(0)
        assert not first.done() and not any(f.done() for f in others)
        fsyncs = db.commit.fsyncs
        faults.gate.set()
        assert await first == "first"
        assert await asyncio.gather(*others) == [b"b", b"c", b"d"]
        # One fsync for `first`, then ONE more shared by the three that waited meanwhile.
        assert db.commit.fsyncs == fsyncs + 2 and db.commit.synced == 4

    asyncio.run(scenario())
    durability.close()


class RecordingFsync(Faults):
    """Notes which thread each fsync ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def before_fsync(self) -> None:
        self.threads.append(threading.current_thread().name)


def test_fast_fsyncs_run_on_the_event_loop_and_still_ack_only_after_them(db_dir, opener):
    faults = RecordingFsync()
    db = opener(fsync="always", faults=faults)
    durability = Durability(db)

    async def scenario() -> None:
        # The first fsync is measured in the thread; then a fast one stays on the loop.
        assert await durability.after(db.apply([(b"a", b"1")]), "a") == "a"
        assert faults.threads[-1].startswith("minidb-fsync")
        durability._disk_seconds = 0.0
        lsn = db.apply([(b"b", b"2")])
        second = durability.after(lsn, "b")
        third = durability.after(db.apply([(b"c", b"3")]), "c")
        assert not second.done() and db.commit.synced < lsn
        fsyncs = db.commit.fsyncs
        assert await asyncio.gather(second, third) == ["b", "c"]
        assert db.commit.fsyncs == fsyncs + 1  # one fsync on the loop covered both
        assert faults.threads[-1] == threading.main_thread().name
        # Slow again: the next fsync is back in the thread.
        durability._disk_seconds = 10.0
        assert await durability.after(db.apply([(b"d", b"4")]), "d") == "d"
        assert faults.threads[-1].startswith("minidb-fsync")

    asyncio.run(scenario())
    durability.close()


def test_a_fast_fsync_stays_on_the_loop_even_with_released_writers_on_their_way(db_dir, opener):
    # With replies released by the gate, overlapping a fast fsync with the writers'
    # return measured worse than running it on the loop (Durability's docstring).
    faults = RecordingFsync()
    db = opener(fsync="always", faults=faults)
    durability = Durability(db)

    async def scenario() -> None:
        first = [durability.after(db.apply([(b"a%d" % i, b"v")]), i) for i in range(3)]
        assert await asyncio.gather(*first) == [0, 1, 2]  # one fsync released three
        durability._disk_seconds = INLINE_FSYNC_SECONDS / 2
        lsn = db.apply([(b"b", b"v")])  # one of three is back, two are on their way
        back = durability.after(lsn, "b")
        assert not back.done() and db.commit.synced < lsn
        assert await back == "b"
        assert faults.threads[-1] == threading.main_thread().name

    asyncio.run(scenario())
    durability.close()


def test_without_fsync_always_the_server_replies_at_once(db_dir, opener):
    for policy in ("everysec", "no"):
        db = opener(db_dir / policy, fsync=policy)
        assert Durability(db).after(db.apply([(b"a", b"1")]), "ok") == "ok"


def test_when_fsyncs_are_slow_the_next_one_gathers_the_released_writers(db_dir, opener):
    db = opener(fsync="always")
    durability = Durability(db)

    async def scenario() -> None:
        first = [durability.after(db.apply([(b"a%d" % i, b"v")]), i) for i in range(3)]
        assert await asyncio.gather(*first) == [0, 1, 2]  # one fsync released all three
        fsyncs = db.commit.fsyncs
        # Slow fsyncs, writers that come back fast: hold the next fsync for all three.
        durability._fsync_seconds, durability._return_seconds = 10.0, 0.0
        durability._disk_seconds = 10.0  # and too slow to run on the event loop
        second = [durability.after(db.apply([(b"b%d" % i, b"v")]), i) for i in range(2)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert db.commit.fsyncs == fsyncs and not any(f.done() for f in second)
        second.append(durability.after(db.apply([(b"b2", b"v")]), 2))
        assert await asyncio.gather(*second) == [0, 1, 2]
        assert db.commit.fsyncs == fsyncs + 1  # the third arrival started it, for all
        # Fast fsyncs, slow writers: no gathering, a lone write is synced at once.
        durability._fsync_seconds, durability._return_seconds = 0.0, 10.0
        assert await durability.after(db.apply([(b"c", b"v")]), "c") == "c"
        assert db.commit.fsyncs == fsyncs + 2

    asyncio.run(scenario())
    durability.close()


def test_an_fsync_finishing_after_the_loop_closed_is_dropped_quietly(db_dir, opener):
    db = opener(fsync="always")
    durability = Durability(db)
    loop = asyncio.new_event_loop()
    loop.close()
    durability._hand_back(loop, None)  # the fsync thread's callback: no RuntimeError
    durability.close()
