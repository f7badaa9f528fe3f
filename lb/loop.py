"""The lb's event loop: asyncio's, with a selector that keeps serving spliced sockets.

Place on the journey: under every byte the lb moves. `minisys/poller.py`'s
`DirectSelector` calls a spliced socket's callback straight from the epoll results and
hands asyncio only its own descriptors (listening socket, admin port, health checks,
signals). After a wake-up that found only spliced sockets, asyncio has nothing to do,
yet it still pays for a whole loop turn before it asks the kernel again: `_run_once`
computes the next timeout with `min(max(...))` and two clock reads, processes an empty
event list, looks at its timers and its ready queue. In the lb that is most wake-ups.

`SpliceSelector.select()` therefore asks the kernel again itself, for the rest of the
timeout asyncio gave it, and returns to asyncio only when asyncio has something to do:

    after each epoll batch                          then
    one of asyncio's own descriptors is ready       return it (accept, admin, checks)
    a callback queued a handle (call_soon) or       return: asyncio runs it / recomputes
      a timer that is due before our deadline         its timeout
    the timeout asyncio gave us has passed          return: timers are due
    asyncio gave timeout 0 (it has work queued)     return after one batch, as before
    otherwise                                       epoll again, for what is left

Measured with callgrind on the one-process lb (the real python binary, PYTHONHASHSEED=0),
instructions per keep-alive request to nginx, counters zeroed after a warm-up:

                          one client, one request at a time   wrk -t1 -c4   wrk -t1 -c50
                          (each event its own wake-up)
    DirectSelector                       38.7 k                      20.3 k        14.5 k
    this one, calling its select()       27.7 k                      17.2 k        14.6 k
      for each wait
    this one, its own wait loop          21.4 k                      15.4 k        14.5 k
      (below; no math.ceil: epoll.poll
      rounds up to whole ms itself)
    + WAIT_EVENTS, time.monotonic        19.6 k                      15.2 k        14.4 k
    per `Connection: close` connection (sequential clients): 220 k → 187 k

Nothing changes where one wake-up finds ~40 ready sockets (-c50 with one process); it
is the quiet case that paid most for asyncio's turn.

So `select()` below repeats `DirectSelector.select`'s dispatch (a spliced descriptor's
callback from a dict; any other handed to asyncio as a selector key) in its own loop.
Almost every event is a spliced socket with bytes to read, so that case is tested
first, with one comparison (`event == READ`: an int compare the interpreter
specialises, where `&` is a generic call) and one dict lookup; anything else (a write
side, a hang-up or error, one of asyncio's descriptors) takes the general path. Per
keep-alive request, after the splice moved to os.read/os.write (lb/splice.py): one
client, one request at a time 15.0 k → 14.1 k; `wrk -t1 -c25` under callgrind (many
events per wake-up, like each of two workers under the bench) 10.7 k → 9.7 k.
To know whether asyncio has work it reads three private attributes of the loop
(`_ready`, `_scheduled`, `_stopping`), as `DirectSelector` reads two of selectors'.

mq took the idea into the kernel (`minisys/poller.py`'s `ServingSelector`, which also
serves the poller's alarms), and its wait loop is now this one plus the alarms. Measured
with `python -m lb` on the kernel's `ServingLoopPolicy` instead (callgrind, as above):
equal under `wrk -t1 -c25` (9.67 k per request both), but one client's sequential
requests 14.9 k vs 14.1 k here: the kernel's loop looks at its alarms on every wake-up
(~340 instructions each while none is set; measured on a copy without those lines). When
it stops doing that while no alarm is set, this file can go and `python -m lb` can
install `minisys.poller.ServingLoopPolicy`. Should anyone set a poller alarm here (the
lb sets none), `select` hands that turn to the kernel's.

Simpler than the real thing: HAProxy's loop is its own (epoll, its own timers, one
wait per turn); ours borrows asyncio's and skips its turns while only spliced sockets
are busy.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time
import weakref

from minisys.poller import (
    INF,
    READ,
    READ_EVENTS,
    WRITE_EVENTS,
    DirectSelector,
    LoopPoller,
    ServingSelector,
)
from minisys.poller import make_poller as loop_poller

# Readiness events taken per wait. CPython allocates the kernel's array for each call: 42
# events × 12 bytes = 504 fit Python's small-object allocator (≤ 512 bytes); 256 (the
# poller's MAX_EVENTS) took malloc and free, ~450 instructions per wait. Level-triggered:
# what does not fit comes with the next wait (under wrk -c50 one wait finds ~40).
WAIT_EVENTS = 42

if hasattr(select, "epoll"):

    class SpliceSelector(ServingSelector):
        """The kernel's `ServingSelector` with the lb's leaner wait loop (module docstring)."""

        def select(self, timeout: float | None = None) -> list:
            if (timeout is not None and timeout <= 0) or self.alarm_at != INF:
                # asyncio has work queued (one look only), or someone set a poller alarm
                # (the lb sets none): the kernel's select does both.
                return super().select(timeout)
            loop = self.loop
            work = loop._ready  # type: ignore[attr-defined]
            timers = loop._scheduled  # type: ignore[attr-defined]
            first = timers[0] if timers else None  # the timer asyncio's timeout is for
            # asyncio's loop.time() is time.monotonic(); calling it directly skips a
            # Python-level call on every wait.
            clock = time.monotonic
            deadline = None if timeout is None else clock() + timeout
            left = timeout  # epoll.poll rounds up to whole ms itself: poll(0.0001) waits 1 ms
            poll = self.epoll.poll
            masks = self.masks
            readers = self.readers
            writers = self.writers
            while True:
                try:
                    events = poll(left, WAIT_EVENTS)
                except InterruptedError:
                    return []
                theirs = None
                for fd, event in events:
                    if event == READ:  # the usual event: a spliced socket has bytes
                        callback = readers.get(fd)
                        if callback is not None:
                            try:
                                callback()
                            except Exception as exc:  # as a Handle would: report, keep going
                                self._report(exc, fd)
                            continue
                    if fd not in masks:
                        if theirs is None:
                            theirs = []
                        theirs.append((fd, event))
                        continue
                    try:
                        if event & READ_EVENTS:
                            callback = readers.get(fd)
                            if callback is not None:
                                callback()
                        if event & WRITE_EVENTS:
                            callback = writers.get(fd)
                            if callback is not None:
                                callback()
                    except Exception as exc:  # as a Handle would: report, keep going
                        self._report(exc, fd)
                if theirs is not None:
                    return self._keys(theirs)
                if work or loop._stopping:  # type: ignore[attr-defined]
                    return []
                if timers and timers[0] is not first:  # a callback set an earlier timer
                    return []
                if deadline is not None:
                    left = deadline - clock()
                    if left <= 0:
                        return []

        def _keys(self, events: list) -> list:
            ready = []
            for fd, event in events:
                key = self._fd_to_key.get(fd)  # type: ignore[attr-defined]
                if key is not None:
                    mask = 0
                    if event & ~select.EPOLLIN:
                        mask |= selectors.EVENT_WRITE
                    if event & ~select.EPOLLOUT:
                        mask |= selectors.EVENT_READ
                    ready.append((key, mask & key.events))
            return ready


# The selector of each loop made by new_event_loop (so we need not ask the loop for it).
_selectors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop on `SpliceSelector` (a plain one without epoll)."""
    if not hasattr(select, "epoll"):
        return asyncio.SelectorEventLoop()
    selector = SpliceSelector()
    loop = asyncio.SelectorEventLoop(selector)
    selector.loop = loop
    _selectors[loop] = selector
    return loop


class SpliceLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Makes `asyncio.run` use `new_event_loop` (`python -m lb` sets it before it starts)."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return new_event_loop()


def make_poller(loop: asyncio.AbstractEventLoop) -> DirectSelector | LoopPoller:
    """Our selector on our loop; `minisys.poller.make_poller` on any other."""
    selector = _selectors.get(loop)
    return selector if selector is not None else loop_poller(loop)
