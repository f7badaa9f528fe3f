"""The journal: records, replay, torn tails, group commit, compaction while running.

In-process tests drive a `Queue` with a `Journal` attached on a real event loop and a
temporary directory, then replay the file into a fresh queue, as a restart would.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mq.job import BURIED, DELAYED, READY, RESERVED, Job
from mq.journal import COMPACT, JOURNAL, PREALLOCATE, Journal
from mq.queue import Queue
from mq.records import STATE_CODES, encode_delete, encode_meta, encode_put, encode_state
from mq.replay import read_journal

NOW = 1_000_000.0


def make_job(job_id: int, state: str = READY, body: bytes = b"body") -> Job:
    job = Job(job_id, "emails", 7, 0, 60, body, NOW)
    job.state = state
    return job


def test_records_round_trip():
    a, b = make_job(1), make_job(2, body=b"\x00\r\n" * 10)
    b.state, b.buries, b.pri = BURIED, 3, 9
    data = encode_meta(4, 10) + encode_put(a) + encode_put(make_job(2)) + encode_state(b)
    data += encode_delete(1)
    replay = read_journal(data)
    assert not replay.torn and replay.records == 5 and replay.generation == 4
    assert list(replay.jobs) == [2]
    job = replay.jobs[2]
    assert (job.state, job.pri, job.buries, job.body) == (BURIED, 9, 3, b"body")
    assert replay.next_id == 10


@settings(max_examples=200)
@given(
    job_id=st.integers(1, 2**64 - 1),
    pri=st.integers(0, 2**32 - 1),
    tube=st.sampled_from(["default", "emails", "t" * 200]),
    body=st.binary(max_size=300),
    state=st.sampled_from([READY, RESERVED, DELAYED, BURIED]),
    counters=st.tuples(*[st.integers(0, 2**32 - 1)] * 5),
)
def test_records_are_laid_out_as_documented(job_id, pri, tube, body, state, counters):
    """crc32:u32 | length:u32 | type:u8 | payload, the CRC over length+type+payload
    (records.py's table), however the encoders build it."""
    job = Job(job_id, tube, pri, 3, 60, body, NOW)
    job.state, job.deadline = state, NOW + 5
    job.set_counters(counters)
    code = STATE_CODES[state]

    def framed(payload: bytes) -> bytes:
        length = struct.pack(">I", len(payload))
        return struct.pack(">I", zlib.crc32(length + payload)) + length + payload

    head = struct.pack(
        ">BQIIIddBIIIIIHI", 2, job_id, pri, 3, 60, NOW, NOW + 5, code, *counters,
        len(tube), len(body),
    )  # fmt: skip
    assert encode_put(job) == framed(head + tube.encode() + body)
    state_payload = struct.pack(">BQIIdBIIIII", 3, job_id, pri, 3, NOW + 5, code, *counters)
    assert encode_state(job) == framed(state_payload)
    assert encode_delete(job_id) == framed(struct.pack(">BQ", 4, job_id))


def test_torn_tail_at_every_offset_keeps_the_records_before_it():
    good = encode_meta(1, 1) + encode_put(make_job(1)) + encode_put(make_job(2))
    last = encode_put(make_job(3))
    for cut in range(len(last)):
        replay = read_journal(good + last[:cut])
        assert sorted(replay.jobs) == [1, 2]
        assert replay.good_bytes == len(good)
        assert replay.torn == (cut > 0)


def test_allocated_zeros_after_the_records_are_the_clean_end():
    good = encode_meta(1, 1) + encode_put(make_job(1)) + encode_put(make_job(2))
    last = encode_put(make_job(3))
    for cut in range(len(last)):
        replay = read_journal(good + last[:cut] + bytes(4096))
        assert sorted(replay.jobs) == [1, 2]
        assert replay.good_bytes == len(good)
        assert replay.torn == any(last[:cut])  # a record cut short is damage, zeros are not


def test_flipped_bit_stops_replay_at_the_damaged_record():
    good = encode_meta(1, 1) + encode_put(make_job(1))
    bad = bytearray(encode_put(make_job(2)))
    for i in range(len(bad)):
        damaged = bytearray(bad)
        damaged[i] ^= 0x10
        replay = read_journal(good + bytes(damaged) + encode_put(make_job(3)))
        assert sorted(replay.jobs) == [1], i


async def settle(journal: Journal) -> None:
    """Wait (polling, no fixed sleep) until every record needing an fsync has had one."""
    while journal.durable_seq < journal.need_seq or journal._inflight:
        await asyncio.sleep(0.001)


async def _session(directory: str, fn, **kwargs) -> tuple[Queue, Journal]:
    queue = Queue()
    journal = Journal(directory, **kwargs)
    journal.open(queue, NOW)
    queue.on_change = journal.record
    await fn(queue, journal)
    await journal.close()
    return queue, journal


def restart(directory: str, now: float = NOW) -> Queue:
    queue = Queue()
    journal = Journal(directory)
    journal.open(queue, now)
    os.close(journal._fd)
    os.close(journal._lock_fd)
    return queue


def test_replay_restores_states_counters_and_ids(tmp_path):
    async def work(queue: Queue, journal: Journal) -> None:
        c = queue.connect()
        for i in range(6):
            queue.put(c, 5, 0, 60, b"job%d" % i, NOW)
        queue.put(c, 5, 30, 60, b"delayed", NOW)
        queue.reserve(c, NOW)  # 1 -> buried
        queue.bury(c, 1, 3)
        queue.reserve(c, NOW)  # 2 stays reserved
        queue.delete(c, 3)
        queue.reserve(c, NOW)  # 4 released with delay
        queue.release(c, 4, 8, 20, NOW)
        queue.reserve(c, NOW)  # 5 buried too; kick takes the oldest buried (1)
        queue.bury(c, 5, 1)
        queue.kick(c, 1, NOW)

    asyncio.run(_session(str(tmp_path), work))
    queue = restart(str(tmp_path), NOW + 1)
    jobs = queue.jobs
    assert sorted(jobs) == [1, 2, 4, 5, 6, 7]
    assert (jobs[1].state, jobs[1].pri, jobs[1].buries, jobs[1].kicks) == (READY, 3, 1, 1)
    # Reserved at the crash: ready again, and its reserve still counted (no drift).
    assert (jobs[2].state, jobs[2].reserves) == (READY, 1)
    assert (jobs[4].state, jobs[4].pri, jobs[4].releases) == (DELAYED, 8, 1)
    assert jobs[4].deadline == NOW + 20
    assert (jobs[5].state, jobs[5].pri, jobs[5].buries, jobs[5].kicks) == (BURIED, 1, 1, 0)
    assert jobs[7].state == DELAYED and jobs[7].deadline == NOW + 30
    assert queue.next_id == 8
    # Waiting long enough: the delayed job comes due after a restart too.
    queue.tick(NOW + 31)
    assert jobs[7].state == READY


def test_ids_keep_increasing_after_everything_is_deleted_and_compacted(tmp_path):
    async def work(queue: Queue, journal: Journal) -> None:
        c = queue.connect()
        for _ in range(50):
            job = queue.put(c, 1, 0, 60, b"x" * 100, NOW)
            queue.delete(c, job.id)
        await asyncio.sleep(0)
        await journal.compact()

    asyncio.run(_session(str(tmp_path), work))
    queue = restart(str(tmp_path))
    assert not queue.jobs and queue.next_id == 51


def test_group_commit_shares_one_fsync_among_many_puts(tmp_path):
    async def work(queue: Queue, journal: Journal) -> None:
        clients = [queue.connect() for _ in range(10)]
        for i in range(100):
            queue.put(clients[i % 10], 1, 0, 60, b"x", NOW)
        assert journal.need_seq == 100 and journal.durable_seq == 0
        await settle(journal)
        assert journal.syncs == 1

    asyncio.run(_session(str(tmp_path), work, fsync="always"))


def test_compaction_while_changes_keep_coming(tmp_path):
    async def work(queue: Queue, journal: Journal) -> None:
        c = queue.connect()
        keep = [queue.put(c, 1, 0, 60, b"keep%d" % i, NOW).id for i in range(20)]
        for _ in range(400):
            job = queue.put(c, 1, 0, 60, b"y" * 200, NOW)
            queue.delete(c, job.id)
        await settle(journal)
        before = os.path.getsize(tmp_path / JOURNAL)
        compaction = asyncio.ensure_future(journal.compact())
        await asyncio.sleep(0)
        # Changes made while the snapshot is written must survive the switch.
        queue.delete(c, keep[0])
        late = queue.put(c, 2, 0, 60, b"late", NOW)
        queue.reserve(c, NOW)
        queue.bury(c, keep[1], 5)
        await compaction
        await settle(journal)
        assert os.path.getsize(tmp_path / JOURNAL) < before / 4
        assert journal.generation == 2
        assert late.id == 421

    asyncio.run(_session(str(tmp_path), work, fsync="always"))
    queue = restart(str(tmp_path))
    assert len(queue.jobs) == 20 and 1 not in queue.jobs and 421 in queue.jobs
    assert queue.jobs[2].state == BURIED and queue.jobs[2].pri == 5
    assert queue.next_id == 422


def test_compaction_starts_by_itself_past_the_threshold(tmp_path):
    async def work(queue: Queue, journal: Journal) -> None:
        c = queue.connect()
        queue.put(c, 1, 0, 60, b"long-lived", NOW)
        queue.reserve(c, NOW)
        queue.bury(c, 1, 1)
        for _ in range(300):
            job = queue.put(c, 1, 0, 60, b"z" * 300, NOW)
            queue.delete(c, job.id)
            await asyncio.sleep(0)
        while journal._compactor is not None:
            await asyncio.sleep(0.001)
        assert journal.generation > 1
        assert journal.file_bytes < 40_000  # the records; the file has room allocated ahead

    _, journal = asyncio.run(_session(str(tmp_path), work, fsync="no", compact_min=20_000))
    assert os.path.getsize(tmp_path / JOURNAL) == journal.file_bytes  # close trims the zeros
    queue = restart(str(tmp_path))
    assert list(queue.jobs) == [1] and queue.jobs[1].state == BURIED


def test_torn_file_is_truncated_and_appending_continues(tmp_path):
    async def work(queue: Queue, journal: Journal) -> None:
        c = queue.connect()
        for _ in range(3):
            queue.put(c, 1, 0, 60, b"abc", NOW)

    asyncio.run(_session(str(tmp_path), work))
    path = tmp_path / JOURNAL
    with open(path, "ab") as f:
        f.write(encode_put(make_job(4))[:-3])  # a write cut short by the crash
    queue = restart(str(tmp_path))
    assert sorted(queue.jobs) == [1, 2, 3]

    async def more(queue: Queue, journal: Journal) -> None:
        queue.put(queue.connect(), 1, 0, 60, b"after", NOW)

    asyncio.run(_session(str(tmp_path), more))
    assert sorted(restart(str(tmp_path)).jobs) == [1, 2, 3, 4]


def test_a_crash_leaves_allocated_zeros_that_replay_reads_as_the_end(tmp_path):
    async def run_and_crash(first: int, count: int) -> None:
        queue = Queue()
        journal = Journal(str(tmp_path), fsync="always")
        assert not journal.open(queue, NOW).torn
        queue.on_change = journal.record
        c = queue.connect()
        for i in range(first, first + count):
            queue.put(c, 1, 0, 60, b"job%d" % i, NOW)
        await settle(journal)
        os.close(journal._fd)  # kill -9: no close(), the allocated zeros stay
        os.close(journal._lock_fd)

    asyncio.run(run_and_crash(0, 5))
    assert os.path.getsize(tmp_path / JOURNAL) == PREALLOCATE
    asyncio.run(run_and_crash(5, 5))  # appends after the records, not after the zeros
    queue = restart(str(tmp_path))
    assert [queue.jobs[i].body for i in sorted(queue.jobs)] == [b"job%d" % i for i in range(10)]


def test_second_server_on_the_same_directory_is_refused(tmp_path):
    first = Journal(str(tmp_path))
    first.open(Queue(), NOW)
    with pytest.raises(SystemExit):
        Journal(str(tmp_path)).open(Queue(), NOW)
    os.close(first._fd)
    os.close(first._lock_fd)


def test_two_compactions_asked_at_once_run_as_one(tmp_path):
    """The size threshold and an explicit call may ask together: one rewrite, no lost fd."""

    async def work(queue: Queue, journal: Journal) -> None:
        c = queue.connect()
        keep = [queue.put(c, 1, 0, 60, b"keep%d" % i, NOW).id for i in range(5)]
        for _ in range(100):
            queue.delete(c, queue.put(c, 1, 0, 60, b"x" * 100, NOW).id)
        await settle(journal)
        generation = journal.generation
        await asyncio.gather(journal.compact(), journal.compact(), journal.compact())
        assert journal.generation == generation + 1
        queue.delete(c, keep[0])
        await settle(journal)

    asyncio.run(_session(str(tmp_path), work, fsync="always"))
    queue = restart(str(tmp_path))
    assert sorted(queue.jobs) == [2, 3, 4, 5]


def test_crash_during_compaction_leaves_the_old_journal(tmp_path):
    """A compaction cut off before its rename: the half-written file is ignored and removed."""

    async def work(queue: Queue, journal: Journal) -> None:
        c = queue.connect()
        for body in (b"a", b"b"):
            queue.put(c, 1, 0, 60, body, NOW)

    asyncio.run(_session(str(tmp_path), work))
    half = encode_meta(9, 100) + encode_put(make_job(50))[:-5]
    (tmp_path / COMPACT).write_bytes(half)
    queue = restart(str(tmp_path))
    assert sorted(queue.jobs) == [1, 2] and queue.next_id == 3
    assert not (tmp_path / COMPACT).exists()


def test_inserted_is_sent_only_after_the_fsync(tmp_path, monkeypatch):
    """fsync=always: the reply to a put waits for the write + fdatasync of its record."""
    from mq.server import BeanstalkConnection, MqApp

    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    synced: list[bool] = []
    real_fdatasync = os.fdatasync

    def unsent() -> bool:
        try:
            peer.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        return False

    def fdatasync(fd: int) -> None:
        assert unsent(), "a reply left before its record was on disk"
        real_fdatasync(fd)
        synced.append(True)

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    class FakeServer:
        draining = False

    async def run() -> None:
        queue = Queue()
        journal = Journal(str(tmp_path), fsync="always")
        journal.open(queue, NOW)
        synced.clear()  # open() syncs the new file's header
        app = MqApp(journal=journal, queue=queue)
        conn = BeanstalkConnection(app)
        conn.server = FakeServer()
        conn.sock, conn.fd = ours, ours.fileno()
        conn.on_connect()
        conn.on_data(b"put 1 0 60 5\r\nhello\r\n")
        assert unsent() and conn.busy  # held
        await settle(journal)
        assert synced and peer.recv(100) == b"INSERTED 1\r\n" and not conn.busy
        await journal.close()

    try:
        asyncio.run(run())
    finally:
        ours.close()
        peer.close()


def test_a_short_journal_write_is_completed(tmp_path, monkeypatch):
    """pwrite may take fewer bytes than given (a signal, a nearly full disk): the rest
    follows at the right offsets."""
    from minisys import files

    real_pwrite = os.pwrite
    monkeypatch.setattr(
        files.os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[:3], offset)
    )
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        files.pwrite_all(fd, b"0123456789", 5)
        assert os.pread(fd, 15, 0) == b"\0" * 5 + b"0123456789"
    finally:
        os.close(fd)
