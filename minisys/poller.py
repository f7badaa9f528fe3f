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

# Readiness events taken from the kernel per wake-up. Level-triggered: what does not fit
# is reported again on the next one, after the loop has run its timers and callbacks.
MAX_EVENTS = 256

Callback = Callable[[], None]

if hasattr(select, "epoll"):
    READ, WRITE = select.EPOLLIN, select.EPOLLOUT
    # Hang-up and error wake both sides, as in asyncio: the next recv/send says what happened.
    READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
    WRITE_EVENTS = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR

    class DirectSelector(selectors.EpollSelector):
        """asyncio's epoll selector, plus add_reader/add_writer for spliced sockets."""

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
            """Wait as `EpollSelector.select` does; run spliced sockets' callbacks here."""
            if timeout is None:
                timeout = -1
            elif timeout <= 0:
                timeout = 0
            else:
                timeout = math.ceil(timeout * 1e3) * 1e-3  # epoll counts whole ms: round up
            ready: list = []
            try:
                events = self.epoll.poll(timeout, MAX_EVENTS)
            except InterruptedError:
                return ready
            masks = self.masks
            for fd, event in events:
                if fd in masks:
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
                    continue
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
            super().close()


class LoopPoller:
    """The same interface on any asyncio loop (its add_reader/add_writer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.add_reader = loop.add_reader
        self.remove_reader = loop.remove_reader
        self.add_writer = loop.add_writer
        self.remove_writer = loop.remove_writer


# The selector of each loop made by new_event_loop (so we need not ask the loop for it).
_selectors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop whose selector also serves spliced sockets (plain, without epoll)."""
    if not hasattr(select, "epoll"):
        return asyncio.SelectorEventLoop()
    selector = DirectSelector()
    loop = asyncio.SelectorEventLoop(selector)
    selector.loop = loop
    _selectors[loop] = selector
    return loop


class DirectLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Makes `asyncio.run` use `new_event_loop` (`python -m lb` sets it before it starts)."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return new_event_loop()


def make_poller(loop: asyncio.AbstractEventLoop) -> DirectSelector | LoopPoller:
    """The fast path on our own loop, the loop's add_reader/add_writer on any other."""
    selector = _selectors.get(loop)
    return selector if selector is not None else LoopPoller(loop)
