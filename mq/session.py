"""A connection as the queue sees it: its tubes, its reservations, whether it waits.

On the request's journey: the worker's connection `watch`es `emails` and holds the job it
reserved until it deletes it. `Queue` keeps one `Client` per connection; the server keeps
the socket. When the connection closes, `Queue.disconnect` returns the client's reserved
jobs to ready.

Simpler than the real thing: beanstalkd's `Conn` mixes socket state and queue state in one
struct; here the queue's half is on its own, so the sans-I/O core never sees a socket.
"""

from __future__ import annotations

import heapq
import itertools
import math

from mq.job import Job

DEFAULT_TUBE = "default"
# A client's heap of TTR deadlines is rebuilt without stale entries once it holds this many
# more than twice its live reservations (bounded memory, rebuild cost amortised).
STALE_SLACK = 4096


class Client:
    """One connection's view of the queue."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(Client._ids)
        self.use = DEFAULT_TUBE
        self.watching: dict[str, None] = {DEFAULT_TUBE: None}
        self.reserved: dict[int, Job] = {}
        # Lazy heap of TTR deadlines, (deadline, job id, job gen): an entry counts while
        # `reserved` holds that job with that gen. Ids, not jobs: a deleted job is freed at
        # once instead of living on in a stale entry until the heap is swept (thousands of
        # live objects that the cyclic collector walked again and again, ~5k instructions
        # per put/reserve/delete job).
        self.deadlines: list[tuple[float, int, int]] = []
        # When this client's one TTR check in the queue's timers comes due (inf: none),
        # and that entry's generation (an older entry is stale).
        self.ttr_at = math.inf
        self.ttr_gen = 0
        self.waiting = False
        self.wait_gen = 0
        self.producer = False
        self.worker = False

    def sweep_deadlines(self) -> None:
        """Rebuild the deadline heap without stale entries (its job no longer reserved
        here, or touched since: a touch pushes a new entry with the job's new gen)."""
        reserved = self.reserved
        live = []
        for entry in self.deadlines:
            job = reserved.get(entry[1])
            if job is not None and job.gen == entry[2]:
                live.append(entry)
        heapq.heapify(live)
        self.deadlines[:] = live

    def soonest_deadline(self) -> float | None:
        heap = self.deadlines
        reserved = self.reserved
        while heap:
            deadline, job_id, gen = heap[0]
            job = reserved.get(job_id)
            if job is not None and job.gen == gen:
                return deadline
            heapq.heappop(heap)
        return None

    def __repr__(self) -> str:
        return f"Client({self.id})"
