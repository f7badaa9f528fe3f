"""Everything in mq that comes due by itself, in one lazy min-heap.

On the request's journey: a job put with a delay, a reservation's TTR, a worker waiting in
`reserve-with-timeout`, a paused tube — each leaves an entry here, and the server's single
timer wakes for the earliest one (`next_wakeup`) and calls `Queue.tick(now)`.

An entry is `(when, seq, kind, obj, gen)`:

    kind  obj     due means                          still meaningful while
    "d"   Job     a delayed job becomes ready        job.gen == gen and job is delayed
    "r"   Client  check its reservations' TTRs       client.ttr_gen == gen (one entry
                  (due at its soonest deadline)        per client; it may find nothing)
    "w"   Client  a waiting reserve times out        client waits, client.wait_gen == gen
    "s"   Client  DEADLINE_SOON for a waiting client  (same)
    "p"   Tube    a paused tube resumes              tube.unpause_at is set

Entries are never removed from the middle (heaps cannot do that cheaply); when a job is
deleted or touched its old entry simply goes stale and is skipped when it surfaces. So the
heap cannot grow without bound, it is rebuilt without stale entries once it is much larger
than the number of things that can be pending.

Simpler than the real thing: beanstalkd keeps a heap per tube and per connection and asks
each for its soonest deadline on every tick; one global heap is shorter to read.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator

from mq.job import DELAYED

# Rebuild the heap without its stale entries once it holds this many more entries than
# twice the live ones: bounded memory, and the O(n) rebuild is paid at most once per
# STALE_SLACK pushes.
STALE_SLACK = 4096

Entry = tuple[float, int, str, object, int]


def live(entry: Entry) -> bool:
    """Whether an entry still means something (see the table above)."""
    _, _, kind, obj, gen = entry
    if kind == "d":
        return obj.gen == gen and obj.state == DELAYED  # type: ignore[attr-defined]
    if kind == "r":
        return obj.ttr_gen == gen  # type: ignore[attr-defined]
    if kind == "p":
        return bool(obj.unpause_at)  # type: ignore[attr-defined]
    return obj.waiting and obj.wait_gen == gen  # type: ignore[attr-defined]


class Timers:
    """The heap, plus `soonest_new` so the server re-arms its timer only when needed."""

    def __init__(self, pending: Callable[[], int]) -> None:
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._pushes = 0
        self._pending = pending  # how many entries can be live right now (an upper bound)
        # The earliest entry added since the server last looked.
        self.soonest_new = math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, when: float, kind: str, obj: object, gen: int) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, obj, gen))
        if when < self.soonest_new:
            self.soonest_new = when
        self._pushes += 1
        if self._pushes >= STALE_SLACK:
            self._pushes = 0
            if len(self._heap) > 2 * self._pending() + STALE_SLACK:
                self._heap = [e for e in self._heap if live(e)]
                heapq.heapify(self._heap)

    def pop_due(self, now: float) -> Iterator[tuple[str, object, int]]:
        """Entries due at `now`, earliest first (stale ones included: callers check)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, kind, obj, gen = heapq.heappop(heap)
            yield kind, obj, gen

    def next_wakeup(self) -> float | None:
        """When the earliest live entry comes due (None: nothing pending)."""
        heap = self._heap
        while heap:
            if live(heap[0]):
                return heap[0][0]
            heapq.heappop(heap)
        return None
