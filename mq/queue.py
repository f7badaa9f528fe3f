"""The queue itself: every beanstalkd command as a method on plain data, time passed in.

On the request's journey this is the heart of mq: the appserver's `put` lands in
`Queue.put`, the worker's `reserve` in `Queue.reserve`, its `delete` in `Queue.delete`.
The module is sans-I/O: no sockets, no asyncio, no clock. Every method that depends on time
takes `now` (float seconds, wall clock), and `tick(now)` does what time alone does: delayed
jobs become ready, reservations whose TTR ran out come back, paused tubes resume, waiting
reserves time out or get DEADLINE_SOON. `next_wakeup()` tells the server when to call
`tick` next. Replies to *waiting* reserves are queued as deliveries (`take_deliveries()`).

The job lifecycle table lives in `job.py`; the per-tube heaps in `tube.py`; timers
(delays, TTRs, waits, pauses) in `timers.py`. A connection is a `Client` (session.py): the
tube it uses, the tubes it watches, the jobs it holds reserved, whether it waits.

Waiters are served as beanstalkd serves them, but strictly in arrival order: when jobs
become ready, the best one (priority, then id) among the tubes that have waiters goes to
the longest-waiting client of its tube.

Persistence is a listener: `on_change(job, kind, must_sync)` is called after each change
worth journaling (journal.py); the queue never touches a disk. Without a journal it does
nothing, and put, reserve and delete test for that instead of calling it (~50 vs ~400).

Simpler than the real thing: no out-of-memory paths (beanstalkd buries a job when its
heap cannot grow). And one thing better: each client's reservations are kept in a heap,
so a client holding 20k reserved jobs does not pay beanstalkd's linear rescan per delete.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

from mq.job import BURIED, DELAYED, READY, RESERVED, TRANSITIONS, Job
from mq.session import DEFAULT_TUBE, STALE_SLACK, Client
from mq.timers import Timers
from mq.tube import Tube

# The last second of a reservation is a safety margin: a worker that asks for another job
# while one of its jobs is that close to timing out is told DEADLINE_SOON instead.
SAFETY_MARGIN = 1.0
# A pause-tube of 0 seconds still pauses, for the shortest time (beanstalkd: 1 ns).
MIN_PAUSE = 1e-9

# The lifecycle table (job.py). put, reserve and delete look their row up inline instead of
# calling Job.move (a missing row still fails, as KeyError): ~1.8k of ~33k per job.
_TO = TRANSITIONS

# Delivery words for waiting reserves that end without a job.
TIMED_OUT = "TIMED_OUT"
DEADLINE_SOON = "DEADLINE_SOON"


Delivery = tuple[Client, "Job | str"]
ChangeListener = Callable[[Job, str, bool], None]


def _no_journal(job: Job, kind: str, must_sync: bool) -> None:
    """The change listener of a queue kept in memory only."""


class Queue:
    """All tubes and jobs of one server."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.tubes: dict[str, Tube] = {DEFAULT_TUBE: Tube(DEFAULT_TUBE)}
        self.clients: dict[int, Client] = {}
        self.next_id = 1
        self.job_timeouts = 0
        self.total_jobs = 0
        self.on_change: ChangeListener = _no_journal
        self.timers = Timers(self._pending_timers)
        # Replies for clients that were waiting in reserve; the server checks this list
        # after each batch of commands and empties it with take_deliveries().
        self.deliveries: list[Delivery] = []

    # --- helpers ----------------------------------------------------------------------

    def _pending_timers(self) -> int:
        pending = sum(t.reserved_count + t.delayed_count + 1 for t in self.tubes.values())
        return pending + 2 * len(self.clients)

    def tube(self, name: str) -> Tube:
        """The tube called `name`, created on first reference."""
        tube = self.tubes.get(name)
        if tube is None:
            tube = self.tubes[name] = Tube(name)
        return tube

    def _maybe_drop(self, tube: Tube) -> None:
        if tube.name != DEFAULT_TUBE and tube.unused():
            self.tubes.pop(tube.name, None)

    def _make_ready(self, job: Job, event: str) -> None:
        job.move(event)
        job.reserver = None
        self.tubes[job.tube].push_ready(job)

    def _leave(self, job: Job) -> None:
        """Take `job` out of whatever container its current state keeps it in."""
        tube = self.tubes[job.tube]
        if job.state == READY:
            tube.forget_ready(job)
        elif job.state == DELAYED:
            tube.forget_delayed(job)
        elif job.state == BURIED:
            del tube.buried[job.id]
        elif job.state == RESERVED:
            client = job.reserver
            assert isinstance(client, Client)
            del client.reserved[job.id]
            tube.reserved_count -= 1
            job.gen += 1

    def _held_by(self, client: Client, job_id: int) -> Job | None:
        job = client.reserved.get(job_id)
        if job is not None:
            self._leave(job)
        return job

    # --- connections ------------------------------------------------------------------

    def connect(self) -> Client:
        client = Client()
        self.clients[client.id] = client
        default = self.tubes[DEFAULT_TUBE]
        default.using += 1
        default.watching += 1
        return client

    def disconnect(self, client: Client, now: float) -> None:
        """The connection closed: its reservations return to ready, its tubes let go."""
        self.cancel_wait(client, deliver=False)
        touched = set()
        for job in list(client.reserved.values()):
            self._leave(job)
            self._make_ready(job, "reserver-gone")
            self.on_change(job, "state", False)
            touched.add(job.tube)
        self.clients.pop(client.id, None)
        client.ttr_gen += 1  # its TTR check in the timers is stale now
        self.tubes[client.use].using -= 1
        for name in client.watching:
            self.tubes[name].watching -= 1
        self._serve_tubes([self.tubes[name] for name in touched], now)
        for name in {client.use, *client.watching}:
            tube = self.tubes.get(name)
            if tube is not None:
                self._maybe_drop(tube)

    def use(self, client: Client, name: str) -> None:
        old = self.tubes[client.use]
        new = self.tube(name)
        new.using += 1
        old.using -= 1
        client.use = name
        self._maybe_drop(old)

    def watch(self, client: Client, name: str) -> int:
        if name not in client.watching:
            self.tube(name).watching += 1
            client.watching[name] = None
        return len(client.watching)

    def ignore(self, client: Client, name: str) -> int | None:
        """Stop watching `name`; None (NOT_IGNORED) if it is the last watched tube."""
        if name in client.watching:
            if len(client.watching) == 1:
                return None
            del client.watching[name]
            tube = self.tubes[name]
            tube.watching -= 1
            self._maybe_drop(tube)
        return len(client.watching)

    # --- producer ---------------------------------------------------------------------

    def burn_id(self) -> None:
        """A put that failed after its id was allocated (EXPECTED_CRLF, DRAINING)."""
        self.next_id += 1

    def put(self, client: Client, pri: int, delay: int, ttr: int, body: bytes, now: float) -> Job:
        client.producer = True
        job_id = self.next_id
        self.next_id = job_id + 1
        job = Job(job_id, client.use, pri, delay, ttr or 1, body, now)  # a TTR of 0 means 1
        self.jobs[job_id] = job
        tube = self.tubes[client.use]
        tube.jobs += 1
        tube.total_jobs += 1
        self.total_jobs += 1
        if delay > 0:
            job.move("put-delayed")
            job.deadline = now + delay
            tube.push_delayed(job)
            self.timers.push(job.deadline, "d", job, job.gen)
        else:
            job.state = _TO[job.state, "put"]  # job.move, inline on the hot paths
            tube.push_ready(job)
        if self.on_change is not _no_journal:
            self.on_change(job, "put", True)
        if tube.waiting and job.state == READY:
            self._serve(tube, now)
        return job

    # --- worker -----------------------------------------------------------------------

    def _reserve_for(self, client: Client, job: Job, now: float) -> None:
        tube = self.tubes[job.tube]
        if job.state == READY:  # what reserve finds: _leave's first case, inline
            tube.forget_ready(job)
        else:  # reserve-job of a delayed or buried job
            self._leave(job)
        job.state = _TO[job.state, "reserve"]
        job.reserver = client
        job.reserves += 1
        job.deadline = now + job.ttr
        job.gen += 1
        client.reserved[job.id] = job
        tube.reserved_count += 1
        deadlines = client.deadlines
        if len(deadlines) > 2 * len(client.reserved) + STALE_SLACK:
            client.sweep_deadlines()
        heapq.heappush(deadlines, (job.deadline, job.id, job.gen))
        if job.deadline < client.ttr_at:
            self._schedule_ttr(client, job.deadline)
        if self.on_change is not _no_journal:
            self.on_change(job, "state", False)

    def _schedule_ttr(self, client: Client, when: float) -> None:
        """The client's next TTR check: one timer entry per client, not per reservation.

        A reservation ending after the pending check needs no entry (the check finds it in
        the client's deadline heap): a worker reserving and deleting one job after another
        pushes nothing here (5.4k of 38k instructions per put/reserve/delete, callgrind)."""
        client.ttr_at = when
        client.ttr_gen += 1
        self.timers.push(when, "r", client, client.ttr_gen)

    def reserve(self, client: Client, now: float, timeout: float | None = None) -> Job | str | None:
        """A job (reserved now), DEADLINE_SOON / TIMED_OUT, or None: the client waits."""
        client.worker = True
        job: Job | None = None  # the best ready job among the watched tubes
        tubes = self.tubes
        for name in client.watching:
            tube = tubes[name]
            if not tube.ready_count or (tube.unpause_at and tube.unpause_at > now):
                continue
            ready = tube.peek_ready()
            if ready is not None and (job is None or (ready.pri, ready.id) < (job.pri, job.id)):
                job = ready
        if job is None:
            soonest = client.soonest_deadline()
            if soonest is not None and soonest <= now + SAFETY_MARGIN:
                return DEADLINE_SOON
            if timeout is not None and timeout <= 0:
                return TIMED_OUT
            self._wait(client, now, timeout, soonest)
            return None
        self._reserve_for(client, job, now)
        return job

    def _wait(self, client: Client, now: float, timeout: float | None, soonest: float | None):
        client.waiting = True
        client.wait_gen += 1
        for name in client.watching:
            self.tubes[name].waiting[client] = None
        if timeout is not None:
            self.timers.push(now + timeout, "w", client, client.wait_gen)
        if soonest is not None:
            self.timers.push(soonest - SAFETY_MARGIN, "s", client, client.wait_gen)

    def cancel_wait(self, client: Client, deliver: bool = True) -> None:
        """End a waiting reserve (half-closed socket: TIMED_OUT; closed: nothing)."""
        if not client.waiting:
            return
        client.waiting = False
        client.wait_gen += 1
        for name in client.watching:
            self.tubes[name].waiting.pop(client, None)
        if deliver:
            self.deliveries.append((client, TIMED_OUT))

    def _serve(self, tube: Tube, now: float) -> None:
        self._serve_tubes((tube,), now)

    def _serve_tubes(self, tubes, now: float) -> None:
        """Give ready jobs to waiters: best job first, to its tube's longest waiter.

        Only `tubes` (where jobs just became ready) can hold a job for a waiter: every
        other waiter found nothing when it started waiting, and nothing changed for it.
        """
        candidates = [t for t in tubes if t.waiting]
        while candidates:
            best: Job | None = None
            best_tube = candidates[0]
            for tube in candidates:
                if tube.waiting and tube.ready_count and not tube.paused(now):
                    job = tube.peek_ready()
                    if job is None:
                        continue
                    if best is None or (job.pri, job.id) < (best.pri, best.id):
                        best, best_tube = job, tube
            if best is None:
                return
            client = next(iter(best_tube.waiting))
            self.cancel_wait(client, deliver=False)
            self._reserve_for(client, best, now)
            self.deliveries.append((client, best))

    def take_deliveries(self) -> list[Delivery]:
        """Replies for clients that were waiting in reserve, in the order they happened."""
        out = self.deliveries
        self.deliveries = []
        return out

    def reserve_job(self, client: Client, job_id: int, now: float) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.state == RESERVED:
            return None
        client.worker = True
        self._reserve_for(client, job, now)
        return job

    def delete(self, client: Client, job_id: int) -> bool:
        job = self.jobs.get(job_id)
        if job is None:
            return False
        tube = self.tubes[job.tube]
        if job.state == RESERVED:  # what a worker deletes: _leave's last case, inline
            if job.reserver is not client:
                return False
            del client.reserved[job_id]
            tube.reserved_count -= 1
            job.gen += 1
        else:
            self._leave(job)
        job.state = _TO[job.state, "delete"]
        del self.jobs[job_id]
        tube.jobs -= 1
        tube.cmd_delete += 1
        if self.on_change is not _no_journal:
            self.on_change(job, "delete", True)
        if not tube.jobs and tube.name != DEFAULT_TUBE:  # _maybe_drop, called only if it may
            self._maybe_drop(tube)
        return True

    def release(self, client: Client, job_id: int, pri: int, delay: int, now: float) -> bool:
        job = self._held_by(client, job_id)
        if job is None:
            return False
        job.pri = pri
        job.releases += 1
        job.reserver = None
        tube = self.tubes[job.tube]
        if delay > 0:
            job.move("release-delayed")
            job.delay = delay
            job.deadline = now + delay
            tube.push_delayed(job)
            self.timers.push(job.deadline, "d", job, job.gen)
            self.on_change(job, "state", True)
        else:
            self._make_ready(job, "release")
            self.on_change(job, "state", True)
            self._serve(tube, now)
        return True

    def bury(self, client: Client, job_id: int, pri: int) -> bool:
        job = self._held_by(client, job_id)
        if job is None:
            return False
        job.move("bury")
        job.pri = pri
        job.buries += 1
        job.reserver = None
        self.tubes[job.tube].push_buried(job)
        self.on_change(job, "state", True)
        return True

    def touch(self, client: Client, job_id: int, now: float) -> bool:
        job = client.reserved.get(job_id)
        if job is None:
            return False
        job.deadline = now + job.ttr
        job.gen += 1
        heapq.heappush(client.deadlines, (job.deadline, job.id, job.gen))
        if job.deadline < client.ttr_at:
            self._schedule_ttr(client, job.deadline)
        return True

    def _kick(self, job: Job, now: float) -> None:
        self._leave(job)
        self._make_ready(job, "kick")
        job.kicks += 1
        self.on_change(job, "state", True)

    def kick(self, client: Client, bound: int, now: float) -> int:
        """Kick up to `bound` buried jobs of the used tube, or delayed ones if none is buried."""
        tube = self.tubes[client.use]
        # The choice is made once: buried jobs if there are any, else delayed ones.
        peek = tube.peek_buried if tube.buried else tube.peek_delayed
        count = 0
        while count < bound:
            job = peek()
            if job is None:
                break
            self._kick(job, now)
            count += 1
        self._serve(tube, now)
        return count

    def kick_job(self, job_id: int, now: float) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.state not in (BURIED, DELAYED):
            return False
        self._kick(job, now)
        self._serve(self.tubes[job.tube], now)
        return True

    # --- inspection -------------------------------------------------------------------

    def peek(self, job_id: int) -> Job | None:
        return self.jobs.get(job_id)

    def peek_ready(self, client: Client) -> Job | None:
        return self.tubes[client.use].peek_ready()

    def peek_delayed(self, client: Client) -> Job | None:
        return self.tubes[client.use].peek_delayed()

    def peek_buried(self, client: Client) -> Job | None:
        return self.tubes[client.use].peek_buried()

    def pause_tube(self, name: str, delay: int, now: float) -> bool:
        tube = self.tubes.get(name)
        if tube is None:
            return False
        tube.pause = delay
        tube.unpause_at = now + (delay or MIN_PAUSE)
        tube.cmd_pause += 1
        self.timers.push(tube.unpause_at, "p", tube, 0)
        return True

    # --- time -------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Do everything that is due at `now`, in beanstalkd's order: delayed jobs become
        ready, expired reservations come back, paused tubes resume, waiting reserves time
        out (or get DEADLINE_SOON); only then are waiters served."""
        affected: dict[Tube, None] = {}
        for kind, obj, gen in self.timers.pop_due(now):
            if kind == "d":
                job = obj
                assert isinstance(job, Job)
                if job.gen == gen and job.state == DELAYED:
                    tube = self.tubes[job.tube]
                    tube.forget_delayed(job)
                    self._make_ready(job, "delay-elapsed")
                    affected[tube] = None
            elif kind == "r":
                client = obj
                assert isinstance(client, Client)
                if client.ttr_gen == gen:
                    client.ttr_at = math.inf
                    heap = client.deadlines
                    while heap and heap[0][0] <= now:
                        _, job_id, job_gen = heapq.heappop(heap)
                        job = client.reserved.get(job_id)
                        if job is not None and job.gen == job_gen:
                            self._leave(job)
                            self._make_ready(job, "ttr-expired")
                            job.timeouts += 1
                            self.job_timeouts += 1
                            self.on_change(job, "state", False)
                            affected[self.tubes[job.tube]] = None
                    soonest = client.soonest_deadline()
                    if soonest is not None:
                        self._schedule_ttr(client, soonest)
            elif kind in ("w", "s"):
                client = obj
                assert isinstance(client, Client)
                if client.waiting and client.wait_gen == gen:
                    self.cancel_wait(client, deliver=False)
                    self.deliveries.append((client, TIMED_OUT if kind == "w" else DEADLINE_SOON))
            elif kind == "p":
                tube = obj
                assert isinstance(tube, Tube)
                if tube.unpause_at and tube.unpause_at <= now:
                    tube.unpause_at = 0.0
                    tube.pause = 0
                    affected[tube] = None
        if affected:
            self._serve_tubes(affected, now)

    def next_wakeup(self) -> float | None:
        """When `tick` next has something to do (None: nothing scheduled)."""
        return self.timers.next_wakeup()
