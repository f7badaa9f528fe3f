"""Telling a raw socket's owner that it is ready, without asyncio's per-event machinery.

Place on the journey: below the lb's splice (`lb/splice.py`), and below any server that
drives raw non-blocking sockets itself. When such a socket becomes readable (or
writable, while its owner waits to send), this is what calls the owner. It was written
for the lb, so its measurements below are the lb's.

asyncio's loop can watch the sockets itself (`loop.add_reader`), and that is what the
splice used first. But every readiness event then travels through the loop's general
machinery: the selector looks up the descriptor's key and turns the epoll mask into
asyncio's, `_process_events` queues a `Handle`, `_run_once` pops it, checks it was not
cancelled and runs it in its context; registering first probes the selector with a
lookup that raises KeyError. A proxy has nothing but such events. So the lb runs on an
event loop whose selector knows the spliced sockets: `DirectSelector.select()` waits on
the one epoll set as asyncio's selector does, calls a spliced socket's callback straight
from a dict, and hands only the loop's own descriptors (listening socket, admin port,
health checks, signals) back to asyncio:

    _run_once ─▶ DirectSelector.select(timeout) ─▶ epoll.poll
                    spliced fd  → readers[fd]() / writers[fd]()   (here, at once)
                    other fd    → returned to asyncio as usual

Measured with callgrind (prototypes of the splice, instructions per forwarded request,
the lb process only; one client sending requests one after another, so each event is
its own wake-up, and wrk -c50 where one wake-up finds ~40 ready sockets):

                                                     sequential   wrk -c50
    loop.add_reader per socket                            —         22.9 k
    own epoll set, watched by the loop as one reader    46.6 k      11.3 k
    this selector                                       24.5 k         —
    a plain epoll loop without asyncio (the floor)      16.9 k      12.5 k

The lb with the middle design measured 60.4 k / 13.6 k. One wake-up per event is what
`--workers 2` and light load look like, and latency is made of those.

Alarms: `set_alarm(callback, when)` calls `callback` once at loop time `when` (the
loop's clock, `time.monotonic`); `clear_alarm(callback)` takes it back. On our selector
an alarm is not an asyncio timer: while any asyncio timer is armed, `_run_once` reads the
clock twice and computes a timeout on every turn, which measured ~5k instructions per
turn for mq (146.6k vs 131.2k per put/reserve/delete job with its idle sweep and tick
timer armed vs none). An alarm costs one `time.monotonic()` per wake-up while one is set
(the wake-up's epoll timeout is shortened to the soonest alarm); a due alarm runs at the
next wake-up, before its sockets' callbacks. Meant for the few timers a server keeps
that come due at a given time (mq's tick: the next delay, TTR or reserve timeout), not
one per request; periodic work has `minisys/ticker.py` (a thread, no timer either).

After a batch: `call_after(callback)` calls `callback` once, after the callbacks of
the current wake-up's events (called from asyncio's own code, before the loop waits
again); `loop.call_soon` on a `LoopPoller`. For work that gathers what several sockets'
callbacks produced in one wake-up, such as mq's group-commit fsync: as a `call_soon`
handle it cost an asyncio loop turn per batch (the selector returns, `_run_once` runs a
Handle, the selector is entered again), measured 183.3k -> 171.5k instructions per
greenstalk job for mq with `--fsync always`.

Timers, accepts, health checks and the admin port stay on asyncio as before. A
callback's exception is reported through the loop's exception handler, as a Handle's
would be, instead of escaping from `select()`. Every callback must tolerate a spurious
call (a non-blocking read that finds nothing): a callback may close a socket whose
descriptor number is reused at once by a new socket while the old one's event is still
in the same batch.

Without our loop (tests' plain `asyncio.run`, or no epoll: not Linux) the same
interface falls back to the loop's add_reader/add_writer (`LoopPoller`).

Simpler than the real thing: HAProxy and nginx *are* such a loop (epoll with their own
timers), with no general-purpose loop around it.
"""

from __future__ import annotations

import asyncio
import math
import select
import selectors
import weakref
from collections.abc import Callable
from time import monotonic

# Readiness events taken from the kernel per wake-up. Level-triggered: what does not fit
# is reported again on the next one, after the loop has run its timers and callbacks.
# CPython allocates the kernel's array on every poll: 42 events x 12 bytes = 504 bytes fit
# Python's small-object allocator (<= 512), where 256 took malloc and free, ~450
# instructions per wake-up (measured by the lb helper on its own wait loop).
MAX_EVENTS = 42

Callback = Callable[[], None]

INF = math.inf

if hasattr(select, "epoll"):
    READ, WRITE = select.EPOLLIN, select.EPOLLOUT
    # Hang-up and error wake both sides, as in asyncio: the next recv/send says what happened.
    READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
    WRITE_EVENTS = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR

    class DirectSelector(selectors.EpollSelector):
        """asyncio's epoll selector, plus add_reader/add_writer for spliced sockets."""

        # Epoll again while asyncio has nothing to do (True in ServingSelector, below).
        serving = False

        def __init__(self) -> None:
            super().__init__()
            # The epoll object of selectors' epoll selector: spliced sockets go into the
            # same set as the loop's own. (This and `_fd_to_key`, which select() reads
            # as the base class does, are the two private attributes we rely on.)
            self.epoll: select.epoll = self._selector  # type: ignore[attr-defined]
            self.readers: dict[int, Callback] = {}
            self.writers: dict[int, Callback] = {}
            self.masks: dict[int, int] = {}
            self.loop: asyncio.AbstractEventLoop | None = None
            self.alarms: dict[Callback, float] = {}  # callback -> loop time it is due
            self.alarm_at = INF  # the soonest of them (INF: none set)
            self.after: list[Callback] = []  # call_after's callbacks not run yet

        def add_reader(self, fd: int, callback: Callback) -> None:
            self.readers[fd] = callback
            self._watch(fd, self.masks.get(fd, 0) | READ)

        def remove_reader(self, fd: int) -> None:
            if self.readers.pop(fd, None) is not None:
                self._watch(fd, self.masks[fd] & ~READ)

        def add_writer(self, fd: int, callback: Callback) -> None:
            self.writers[fd] = callback
            self._watch(fd, self.masks.get(fd, 0) | WRITE)

        def remove_writer(self, fd: int) -> None:
            if self.writers.pop(fd, None) is not None:
                self._watch(fd, self.masks[fd] & ~WRITE)

        def set_alarm(self, callback: Callback, when: float) -> None:
            """Call `callback` once at loop time `when` (replacing its earlier alarm)."""
            self.alarms[callback] = when
            if when < self.alarm_at:
                self.alarm_at = when
            else:
                self.alarm_at = min(self.alarms.values())

        def clear_alarm(self, callback: Callback) -> None:
            if self.alarms.pop(callback, None) is not None:
                self.alarm_at = min(self.alarms.values(), default=INF)

        def call_after(self, callback: Callback) -> None:
            """Call `callback` once after the callbacks of the current wake-up's events
            (or, called outside one, before the loop waits again): what a callback that
            batches work across sockets (mq's group commit) needs, without the asyncio
            loop turn `loop.call_soon` costs."""
            self.after.append(callback)

        def _run_after(self) -> None:
            """Run call_after's callbacks (and any they add in turn)."""
            after = self.after
            while after:  # (a handful at most: pop(0) is cheaper than a copy and clear)
                callback = after.pop(0)
                try:
                    callback()
                except Exception as exc:  # as a Handle would: report, keep going
                    self._report(exc, -1)

        def _ring(self, now: float) -> None:
            """Run the alarms due at `now` (each once; one may set itself again)."""
            alarms = self.alarms
            due = [callback for callback, when in alarms.items() if when <= now]
            for callback in due:
                del alarms[callback]
            self.alarm_at = min(alarms.values(), default=INF)
            for callback in due:
                try:
                    callback()
                except Exception as exc:  # as a Handle would: report, keep going
                    self._report(exc, -1)

        def _watch(self, fd: int, mask: int) -> None:
            old = self.masks.get(fd, 0)
            if mask == old:
                return
            if not mask:
                del self.masks[fd]
                self.epoll.unregister(fd)
                return
            self.masks[fd] = mask
            if old:
                self.epoll.modify(fd, mask)
            else:
                self.epoll.register(fd, mask)

        def select(self, timeout: float | None = None) -> list:
            """Wait once as `EpollSelector.select` does; run direct sockets' callbacks here."""
            if self.after:  # added by asyncio's callbacks since the last wake-up
                self._run_after()
                if self.loop is not None and self.loop._ready:  # type: ignore[attr-defined]
                    timeout = 0  # they gave asyncio work: do not wait
            if timeout is None:
                timeout = -1
            elif timeout <= 0:
                timeout = 0
            # (a float timeout is fine: epoll.poll rounds it up to whole ms itself)
            alarm_at = self.alarm_at
            now = 0.0
            if alarm_at != INF:
                now = monotonic()
                left = alarm_at - now
                if timeout < 0 or timeout > left:
                    timeout = left if left > 0 else 0
            try:
                events = self.epoll.poll(timeout, MAX_EVENTS)
            except InterruptedError:
                return []
            if alarm_at <= now:  # due before we polled (so the poll did not wait)
                self._ring(now)
            theirs = self._dispatch(events)
            if self.after:
                self._run_after()
            return [] if theirs is None else self._keys(theirs)

        def _dispatch(self, events: list) -> list | None:
            """Call direct sockets' callbacks; return the other events (None: there were none)."""
            readers = self.readers
            theirs = None
            for fd, event in events:
                if event == READ:  # the usual event: a direct socket has bytes
                    callback = readers.get(fd)
                    if callback is not None:
                        try:
                            callback()
                        except Exception as exc:  # as a Handle would: report, keep going
                            self._report(exc, fd)
                        continue
                theirs = self._other(fd, event, theirs)
            return theirs

        def _other(self, fd: int, event: int, theirs: list | None) -> list | None:
            """Any event but a direct socket's plain READ: hang-up, error, writable, or one
            of asyncio's own descriptors (added to `theirs`, which is returned)."""
            if fd not in self.masks:
                if theirs is None:
                    theirs = []
                theirs.append((fd, event))
                return theirs
            try:
                if event & READ_EVENTS:
                    callback = self.readers.get(fd)
                    if callback is not None:
                        callback()
                if event & WRITE_EVENTS:
                    callback = self.writers.get(fd)
                    if callback is not None:
                        callback()
            except Exception as exc:  # as a Handle would: report, keep going
                self._report(exc, fd)
            return theirs

        def _keys(self, events: list) -> list:
            """asyncio's (key, mask) pairs for the events on its own descriptors."""
            ready = []
            for fd, event in events:
                key = self._fd_to_key.get(fd)
                if key is not None:
                    mask = 0
                    if event & ~select.EPOLLIN:
                        mask |= selectors.EVENT_WRITE
                    if event & ~select.EPOLLOUT:
                        mask |= selectors.EVENT_READ
                    ready.append((key, mask & key.events))
            return ready

        def _report(self, exc: Exception, fd: int) -> None:
            if self.loop is not None:
                self.loop.call_exception_handler(
                    {"message": f"callback for fd {fd} failed", "exception": exc}
                )

        def close(self) -> None:
            self.readers.clear()
            self.writers.clear()
            self.masks.clear()
            self.alarms.clear()
            self.alarm_at = INF
            self.after.clear()
            super().close()


if hasattr(select, "epoll"):

    class ServingSelector(DirectSelector):
        """`DirectSelector` that waits again, itself, while asyncio has nothing to do.

        After a wake-up that found only direct sockets, asyncio has nothing to do, yet it
        pays for a whole loop turn before it asks the kernel again (`_run_once` processes
        an empty event list, looks at its timers and ready queue, computes a timeout). So
        this select asks epoll again for what is left of asyncio's timeout, and returns
        only when asyncio has work:

            after each epoll batch                          then
            one of asyncio's own descriptors is ready       return it
            a callback queued a handle (call_soon), or      return: asyncio runs it /
              set an asyncio timer before asyncio's first     recomputes its timeout
            the timeout asyncio gave us has passed          return: its timers are due
            asyncio gave timeout 0 (it has work queued)     return after one batch
            otherwise                                       epoll again

        The lb's own first version called `DirectSelector.select` in a loop; here the
        waiting again is a loop inside `select` itself (one Python call per wake-up
        fewer). Measured on mq (callgrind,
        greenstalk put/reserve/delete, server instructions per job): 135.1k on
        `DirectSelector`, 126.5k with a loop around its select, 4.9k less again with the
        loop inside. Like `DirectSelector` it reads private attributes, here the loop's
        `_ready`, `_scheduled` and `_stopping`.

        The wait loop keeps in locals what every wake-up reads, dispatches the usual event
        (a direct socket readable, `event == READ`) first, and leaves the rounding of the
        timeout to epoll.poll (the lb's own wait loop showed the way): mq's bare ceiling
        in `bench/mq.py`, 60.0k -> 57.5k instructions per greenstalk job. The clock is
        read once per wake-up, and only while something is timed (an alarm, or asyncio's
        timeout); with neither, a wake-up reads no clock and checks no alarm (the lb's
        request: ~340 instructions per wake-up, its one-client figure). epoll waits for
        ever when given None; given -1 it converts the int through the float-seconds path
        first (~230 instructions per wake-up in the lb's one-client figure).
        """

        serving = True

        def select(self, timeout: float | None = None) -> list:
            after = self.after
            if after:  # added by asyncio's callbacks since the last wake-up
                self._run_after()
                if self.loop._ready:  # type: ignore[union-attr]
                    timeout = 0  # they gave asyncio work: do not wait
            if timeout is not None and timeout <= 0:
                return super().select(timeout)  # asyncio has work queued: one look only
            loop = self.loop
            work = loop._ready  # type: ignore[union-attr]
            timers = loop._scheduled  # type: ignore[union-attr]
            first = timers[0] if timers else None  # the timer asyncio's timeout is for
            poll = self.epoll.poll
            other = self._other
            readers = self.readers
            now = monotonic()
            deadline = INF if timeout is None else now + timeout  # asyncio's timeout
            alarm_at = self.alarm_at  # (a callback that sets or clears one changes it)
            until = alarm_at if alarm_at < deadline else deadline  # the next timed thing
            wait = None if until == INF else max(until - now, 0)  # None: for ever
            while True:
                try:
                    events = poll(wait, MAX_EVENTS)
                except InterruptedError:
                    return []
                if until != INF:
                    now = monotonic()
                    if alarm_at <= now:
                        self._ring(now)
                theirs = None
                for fd, event in events:  # _dispatch, inline: one call less per wake-up
                    if event == READ:  # the usual event: a direct socket has bytes
                        callback = readers.get(fd)
                        if callback is not None:
                            try:
                                callback()
                            except Exception as exc:  # as a Handle would: report, go on
                                self._report(exc, fd)
                            continue
                    theirs = other(fd, event, theirs)  # anything else
                if after:  # call_after's callbacks, once this batch's callbacks ran
                    self._run_after()
                if theirs is not None:
                    return self._keys(theirs)
                if work or loop._stopping:  # type: ignore[union-attr]
                    return []
                if timers and timers[0] is not first:  # a callback set an earlier timer
                    return []
                if until == INF:
                    if self.alarm_at == INF:
                        continue  # nothing timed: wait for ever again, no clock read
                    now = monotonic()  # a callback set the first alarm
                if deadline <= now:
                    return []  # asyncio's timer is due
                # (`now` was read after the poll: callbacks since make the wait a hair
                # long, never short, and epoll rounds it up to whole ms anyway)
                alarm_at = self.alarm_at
                until = alarm_at if alarm_at < deadline else deadline
                if until == INF:
                    wait = None
                else:
                    wait = until - now
                    if wait < 0:
                        wait = 0


class LoopPoller:
    """The same interface on any asyncio loop (its add_reader/add_writer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.add_reader = loop.add_reader
        self.remove_reader = loop.remove_reader
        self.add_writer = loop.add_writer
        self.remove_writer = loop.remove_writer
        self.alarms: dict[Callback, asyncio.TimerHandle] = {}

    def set_alarm(self, callback: Callback, when: float) -> None:
        """Call `callback` once at loop time `when` (an asyncio timer here)."""
        self.clear_alarm(callback)
        self.alarms[callback] = self.loop.call_at(when, self._ring, callback)

    def clear_alarm(self, callback: Callback) -> None:
        handle = self.alarms.pop(callback, None)
        if handle is not None:
            handle.cancel()

    def _ring(self, callback: Callback) -> None:
        del self.alarms[callback]
        callback()

    def call_after(self, callback: Callback) -> None:
        """Call `callback` once soon (`loop.call_soon` here: the next loop turn)."""
        self.loop.call_soon(callback)


# The selector of each loop made by new_event_loop (so we need not ask the loop for it).
_selectors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def new_event_loop(serving: bool = False) -> asyncio.AbstractEventLoop:
    """An asyncio loop whose selector also serves spliced sockets (plain, without epoll).

    `serving`: its selector is a `ServingSelector`, which waits again itself while asyncio
    has nothing to do.
    """
    if not hasattr(select, "epoll"):
        return asyncio.SelectorEventLoop()
    selector = ServingSelector() if serving else DirectSelector()
    loop = asyncio.SelectorEventLoop(selector)
    selector.loop = loop
    _selectors[loop] = selector
    return loop


class DirectLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Makes `asyncio.run` use `new_event_loop` (`python -m lb` sets it before it starts)."""

    serving = False

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return new_event_loop(self.serving)


class ServingLoopPolicy(DirectLoopPolicy):
    """The same, on a `ServingSelector` (`python -m mq` sets it before it starts)."""

    serving = True


def make_poller(loop: asyncio.AbstractEventLoop) -> DirectSelector | LoopPoller:
    """The fast path on our own loop, the loop's add_reader/add_writer on any other."""
    selector = _selectors.get(loop)
    return selector if selector is not None else LoopPoller(loop)
