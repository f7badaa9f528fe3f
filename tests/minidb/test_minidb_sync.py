"""Durability: group commit shares fsyncs; a failed fsync is sticky; everysec catches up."""

from __future__ import annotations

import threading

import pytest

from minidb import DatabaseClosed, Faults, SyncFailed
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
