"""Replay: from the journal's bytes back to a live queue, after a restart or a crash.

On the request's journey: the email jobs the appserver put before mq stopped come back
here. `read_journal` reads the records (`records.py`) until the end or the first damaged
one; `restore` puts the jobs they describe back into the `Queue` in their journaled states.
Everything here is pure (bytes in, jobs out), so tests can tear and flip records at every
offset.

Simpler than the real thing: beanstalkd reads each binlog file and re-applies its records
one by one; a record here states a job's whole state, so replay is "last record wins" and
restoring a million jobs is one pass plus one heap build per tube.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from mq.job import BURIED, DELAYED, READY, Job
from mq.queue import Queue
from mq.records import (
    _DELETE,
    _HEAD,
    _META,
    _PUT,
    _STATE,
    DELETE,
    MAX_RECORD,
    META,
    PUT,
    STATE,
    STATE_NAMES,
    put_size,
)


class Replay:
    """What reading a journal found: live jobs, next id, and where good data ends."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.next_id = 1
        self.generation = 0
        self.good_bytes = 0
        self.records = 0
        self.torn = False
        self.live_bytes = 0  # bytes of the live jobs' PUT records (what compaction keeps)


def read_journal(data: bytes) -> Replay:
    """Replay records until the end or the first damaged one (point-in-time recovery)."""
    out = Replay()
    jobs = out.jobs
    view = memoryview(data)  # slices of a memoryview copy nothing
    crc32, head, put_size_, names = zlib.crc32, _HEAD.unpack_from, _PUT.size, STATE_NAMES
    # One str per tube name, shared by all its jobs (a million "default"s would cost ~50 MB).
    tube_names: dict[bytes, str] = {}
    next_id = 1
    records = live_bytes = 0
    pos, end = 0, len(data)
    while pos + 8 <= end:
        crc, length = head(data, pos)
        body = pos + 8
        if length < 1 or length > MAX_RECORD or body + length > end:
            break
        if crc32(view[pos + 4 : body + length]) != crc:
            break
        kind = data[body]
        try:
            if kind == PUT:
                f = _PUT.unpack_from(data, body)
                tube_at = body + put_size_
                body_at = tube_at + f[13]
                raw_tube = data[tube_at:body_at]
                tube = tube_names.get(raw_tube)
                if tube is None:
                    tube = tube_names[raw_tube] = raw_tube.decode()
                job_id = f[1]
                job = Job(job_id, tube, f[2], f[3], f[4], data[body_at : body_at + f[14]], f[5])
                job.deadline = f[6]
                job.state = names[f[7]]
                job.reserves, job.timeouts, job.releases, job.buries, job.kicks = f[8:13]
                old = jobs.get(job_id)
                if old is not None:
                    live_bytes -= put_size(old)
                jobs[job_id] = job
                live_bytes += 8 + length
                if job_id >= next_id:
                    next_id = job_id + 1
            elif kind == STATE:
                f = _STATE.unpack_from(data, body)
                job = jobs.get(f[1])
                if job is not None:
                    job.pri, job.delay, job.deadline = f[2], f[3], f[4]
                    job.state = names[f[5]]
                    job.set_counters(f[6:11])
            elif kind == DELETE:
                (_, job_id) = _DELETE.unpack_from(data, body)
                old = jobs.pop(job_id, None)
                if old is not None:
                    live_bytes -= put_size(old)
                next_id = max(next_id, job_id + 1)
            elif kind == META:
                _, out.generation, meta_next = _META.unpack_from(data, body)
                next_id = max(next_id, meta_next)
            else:
                break
        except (struct.error, KeyError, UnicodeDecodeError):
            break
        pos = body + length
        records += 1
    out.records = records
    out.live_bytes = live_bytes
    out.next_id = next_id
    out.good_bytes = pos
    # Zeros from here to the end are space the journal allocated ahead, not damage: no
    # record starts with a zero length.
    out.torn = pos != end and data.count(0, pos) != end - pos
    return out


def restore(queue: Queue, jobs: Iterable[Job], now: float) -> None:
    """Put back jobs read from the journal, in their journaled states (replay).

    Reserved jobs come back ready (at-least-once: they are handed out again); a delayed
    job whose time passed while mq was down is ready too. Jobs are grouped by tube and
    state first, and each group joins its tube in one step (heaps built once, O(n)):
    a million-job replay does a few cheap operations per job, not a dozen.
    """
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        queue.jobs[job.id] = job
        key = (job.tube, job.state)
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
        group.append(job)
    if queue.jobs:
        queue.next_id = max(queue.next_id, max(queue.jobs) + 1)
    for (name, state), group in groups.items():
        tube = queue.tube(name)
        tube.jobs += len(group)
        tube.total_jobs += len(group)
        queue.total_jobs += len(group)
        if state == BURIED:
            tube.add_buried(group)
            continue
        if state == DELAYED:
            waiting = [job for job in group if job.deadline > now]
            tube.add_delayed(waiting)
            for job in waiting:
                queue.timers.push(job.deadline, "d", job, job.gen)
            group = [job for job in group if job.deadline <= now]
        if state != READY:
            for job in group:
                job.state = READY
        tube.add_ready(group)
