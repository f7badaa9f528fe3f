"""Periodic housekeeping without keeping an asyncio timer armed.

Place on the journey: beside every server's event loop. Each minisys server does some
work every so often whatever its clients do: the kernel looks for idle connections
(`minisys/server.py`), kvcache samples keys for expiry ten times a second. The obvious
way is a task that loops over `await asyncio.sleep(interval)`. It works, but it keeps a
timer in the loop's schedule at all times, and asyncio's loop pays for that on every
turn, busy or not: before each wait it computes the wait's timeout from the earliest
timer (`min(max(0, when - time()), …)`, then the selector's rounding), and after it looks
for timers that are due. Measured with callgrind on this machine's Python 3.11, two
asyncio Protocols passing one byte back and forth over a socket pair:

    no timer armed                                  46.3 k instructions per message
    one timer an hour away (`call_later(3600, …)`)  56.6 k

so one far-away timer made every small exchange ~20% dearer. A server answering one
request per wake-up (a latency-bound client, such as an app waiting for each reply)
pays it on every request: kvcache under `redis-benchmark -c 1 -t set,get` went from
56.7 k to 51.3 k instructions per request when its two timers (idle sweep, expiry)
became tickers.

A `Ticker` moves the waiting out of the loop: a thread sleeps `interval` seconds, then
asks the loop to run the callback (`call_soon_threadsafe`, which wakes the loop through
its self-pipe once). Between ticks the loop has nothing scheduled, so its turns cost what
they cost with no timer at all. The callback always runs on the loop's thread, as a
timer's would, so it may touch the server's state freely; the thread only waits.

    loop thread:   … turn ─ turn ─ turn ─ callback() ─ turn ─ …   (nothing scheduled)
    ticker thread:   sleep(interval) ──────▶ call_soon_threadsafe ─▶ sleep(interval) …

The thread is a daemon and stops by itself when the loop closes; `stop()` ends it at once.

Simpler than the real thing: Redis runs its periodic work (`serverCron`, `hz` times a
second) as a timer in its own event loop, whose cost per turn is a few comparisons in C;
in Python the cheap option is a sleeping thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class Ticker:
    """Run `callback()` on `loop`'s thread about every `interval` seconds until stopped."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, callback: Callable[[], object]
    ) -> None:
        if interval <= 0:
            raise ValueError(f"ticker interval must be positive, not {interval!r}")
        self.loop = loop
        self.interval = interval
        self.callback = callback
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minisys-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Called on the loop's thread: the callback does not run again once this returns."""
        self._stopped.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.loop.call_soon_threadsafe(self._tick)
            except RuntimeError:  # the loop is closed: nothing left to tick for
                return

    def _tick(self) -> None:
        if not self._stopped.is_set():
            self.callback()
