"""A tube: one named queue of jobs (its ready heap, its delayed heap, its buried list).

On the request's journey: the appserver `use`s the `emails` tube and puts jobs in it; the
worker `watch`es it. A tube holds the jobs that live in it, ordered the way beanstalkd
orders them: ready jobs by (priority, id) — most urgent first, FIFO within a priority —
delayed jobs by the time they become ready, buried jobs in the order they were buried.

Heaps cannot remove an item from the middle cheaply, so removal is lazy: a heap entry is
`(key, id, gen, job)` and counts only while `job.gen == gen` and the job is still in the
state the heap is for. `Job.gen` is bumped whenever a job enters a heap, so an entry left
behind by `delete`, `reserve-job` or a kick becomes stale and is skipped on the way out.
Stale entries are swept when they outnumber live ones (a named bound, below).

Simpler than the real thing: beanstalkd's heaps store each job's index so it can delete
from the middle in O(log n); lazy deletion is shorter to read and as fast on average.
"""

from __future__ import annotations

import heapq

from mq.job import BURIED, DELAYED, READY, URGENT_THRESHOLD, Job

# Rebuild a heap once it holds this many more stale entries than live ones: bounds the
# memory that lazy deletion can waste to a constant factor.
STALE_SLACK = 1024


class Tube:
    """One tube's jobs and the counts `stats-tube` reports."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready: list[tuple[int, int, int, Job]] = []
        self.delayed: list[tuple[float, int, int, Job]] = []
        self.buried: dict[int, Job] = {}  # insertion order = bury order (FIFO)
        self.ready_count = 0
        self.urgent_count = 0
        self.delayed_count = 0
        self.reserved_count = 0
        self.jobs = 0  # every job that lives here, in any state
        self.total_jobs = 0
        self.using = 0
        self.watching = 0
        self.waiting: dict[object, None] = {}  # reserve waiters, arrival order
        self.cmd_delete = 0
        self.cmd_pause = 0
        self.pause = 0  # seconds, as last set by pause-tube
        self.unpause_at = 0.0  # 0 = not paused

    # --- ready heap -------------------------------------------------------------------

    def push_ready(self, job: Job) -> None:
        job.gen += 1
        heapq.heappush(self.ready, (job.pri, job.id, job.gen, job))
        self.ready_count += 1
        if job.pri < URGENT_THRESHOLD:
            self.urgent_count += 1

    def peek_ready(self) -> Job | None:
        heap = self.ready
        while heap:
            _, _, gen, job = heap[0]
            if job.gen == gen and job.state == READY:
                return job
            heapq.heappop(heap)
        return None

    def forget_ready(self, job: Job) -> None:
        """`job` leaves the ready state (its heap entry goes stale)."""
        job.gen += 1
        self.ready_count -= 1
        if job.pri < URGENT_THRESHOLD:
            self.urgent_count -= 1
        if len(self.ready) > 2 * self.ready_count + STALE_SLACK:
            self.ready = [e for e in self.ready if e[3].gen == e[2] and e[3].state == READY]
            heapq.heapify(self.ready)

    def add_ready(self, jobs: list[Job]) -> None:
        """Replay: many jobs become ready at once; the heap is rebuilt once (O(n)).

        Their `gen` stays as it is: a job fresh from the journal has no older heap entry
        that a new gen would have to outdate.
        """
        self.ready.extend([(job.pri, job.id, job.gen, job) for job in jobs])
        heapq.heapify(self.ready)
        self.ready_count += len(jobs)
        self.urgent_count += sum(1 for job in jobs if job.pri < URGENT_THRESHOLD)

    def add_delayed(self, jobs: list[Job]) -> None:
        """Replay: many delayed jobs at once (see add_ready)."""
        self.delayed.extend([(job.deadline, job.id, job.gen, job) for job in jobs])
        heapq.heapify(self.delayed)
        self.delayed_count += len(jobs)

    # --- delayed heap -----------------------------------------------------------------

    def push_delayed(self, job: Job) -> None:
        job.gen += 1
        heapq.heappush(self.delayed, (job.deadline, job.id, job.gen, job))
        self.delayed_count += 1

    def peek_delayed(self) -> Job | None:
        heap = self.delayed
        while heap:
            _, _, gen, job = heap[0]
            if job.gen == gen and job.state == DELAYED:
                return job
            heapq.heappop(heap)
        return None

    def forget_delayed(self, job: Job) -> None:
        job.gen += 1
        self.delayed_count -= 1
        if len(self.delayed) > 2 * self.delayed_count + STALE_SLACK:
            self.delayed = [e for e in self.delayed if e[3].gen == e[2] and e[3].state == DELAYED]
            heapq.heapify(self.delayed)

    # --- buried list ------------------------------------------------------------------

    def push_buried(self, job: Job) -> None:
        self.buried[job.id] = job

    def add_buried(self, jobs: list[Job]) -> None:
        """Replay: many buried jobs at once, in the order given (their bury order)."""
        self.buried.update([(job.id, job) for job in jobs])

    def peek_buried(self) -> Job | None:
        for job in self.buried.values():
            assert job.state == BURIED
            return job
        return None

    # --- life of the tube -------------------------------------------------------------

    def paused(self, now: float) -> bool:
        return self.unpause_at > now

    def unused(self) -> bool:
        """No job lives here and no connection refers to it: the tube may be dropped."""
        return self.jobs == 0 and self.using == 0 and self.watching == 0 and not self.waiting
