"""One client connection, many requests in flight: batched writes, in-order replies, one timer.

On the request's journey this is the appserver's (and the gateway's, and the worker's) side
of every store connection: the RESP client (`minisys/resp/client.py`) and the beanstalkd
client (`minisys/beanstalk/client.py`) both build on it. Both protocols answer requests in
the order they were sent, so a connection needs no request ids: a deque of futures, one per
request, is matched to replies as they are parsed.

    send(b"GET a")  ─┐  same event-loop turn
    send(b"GET b")  ─┴▶ flush: ONE transport.write(b"GET a" + b"GET b")
    replies parsed in order ─▶ waiters.popleft().set_result(…)

Why one write per loop turn: thirty requests that each send a command in the same turn cost
the server one read instead of thirty (and us one send). Measured with bench/appserver.py
(CPU µs per request): kvcache per cached GET 38 → 16; mq per put at 4 concurrent 133 → 61.
The cost: a request waits for the current turn to finish (microseconds).

Why one watchdog per connection: `asyncio.timeout` around every call costs ≈7 µs of CPU.
Here one watchdog looks at the oldest reply's deadline (replies come in order, so it is
the first to expire). A request may be exempt (a beanstalkd `reserve`, whose job is to
wait); requests queued behind it get their full timeout counted from its reply. The
watchdog is a `minisys.ticker.Ticker` checking WATCHDOG_TICKS times per read timeout,
not an asyncio timer: a busy client almost always has a request in flight, and an armed
asyncio timer makes each of its loop turns ~10k instructions dearer (see ticker.py). The
price: a timeout is noticed up to 1/WATCHDOG_TICKS of the timeout late.

Subclasses parse replies in `data_received`, pop `waiters` (and `deadlines`, through
`reply_arrived`), and say how to fail every waiter (`fail`).

Simpler than the real thing: redis-py and hiredis keep a connection pool with one request
per connection at a time; we pipeline every caller's requests on one connection.
"""

from __future__ import annotations

import asyncio
import collections
import math

from minisys.reads import BufferedReads
from minisys.ticker import Ticker

# Deadline checks per read timeout: a late reply is noticed at most 1/8 of it late.
WATCHDOG_TICKS = 8
# Shortest pause between checks (s): a tiny timeout must not make the thread spin.
WATCHDOG_MIN_TICK = 0.005


class PipelinedProtocol(BufferedReads):
    """The shared half of a pipelining client connection (see the module docstring)."""

    def __init__(self, read_timeout: float | None = None) -> None:
        self.read_timeout = read_timeout
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        # Parallel to `waiters` while read_timeout is set: when each reply is due (loop
        # time; inf for an exempt request).
        self.deadlines: collections.deque[float] = collections.deque()
        self.outgoing: list[bytes] = []  # requests not yet handed to the socket
        self.flush_scheduled = False
        self.watchdog: Ticker | None = None  # runs while read_timeout is set
        self.watchdog_timeout: float | None = None  # the read timeout it ticks for
        self.replied_at = -math.inf  # loop time the last exempt request was answered
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    # --- for subclasses -------------------------------------------------------------------

    @property
    def down(self) -> bool:
        """The connection failed or closed: nothing more is written."""
        raise NotImplementedError

    def fail(self, exc: Exception) -> None:
        """Fail every waiting request with `exc` and close the connection."""
        raise NotImplementedError

    def timeout_error(self) -> Exception:
        return TimeoutError(f"no reply within {self.read_timeout}s")

    # --- sending --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, payload: bytes, count: int = 1, exempt: bool = False) -> list[asyncio.Future]:
        """Queue `count` requests' bytes for this turn's write; one future per reply.
        `exempt` requests (one that waits by design) have no read deadline."""
        loop = self.loop
        futures = [loop.create_future() for _ in range(count)]
        self.waiters.extend(futures)
        timeout = self.read_timeout
        if timeout is not None:
            due = math.inf if exempt else loop.time() + timeout
            self.deadlines.extend([due] * count)
            if timeout != self.watchdog_timeout:
                self.start_watchdog(timeout)
        self.outgoing.append(payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        return futures

    def send_one(self, payload: bytes) -> asyncio.Future:
        """`send` for one request (the common case, without the lists)."""
        loop = self.loop
        future = loop.create_future()
        self.waiters.append(future)
        timeout = self.read_timeout
        if timeout is not None:
            self.deadlines.append(loop.time() + timeout)
            if timeout != self.watchdog_timeout:
                self.start_watchdog(timeout)
        self.outgoing.append(payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        self.flush_scheduled = False
        out = self.outgoing
        if not out:
            return
        self.outgoing = []
        transport = self.transport
        if self.down or transport is None or transport.is_closing():
            return  # their waiters fail with the connection
        transport.write(out[0] if len(out) == 1 else b"".join(out))

    # --- the read deadline ----------------------------------------------------------------

    def reply_arrived(self) -> None:
        """Drop the head deadline as its reply is taken (call only with a read_timeout)."""
        deadlines = self.deadlines
        if deadlines and deadlines.popleft() == math.inf:
            self.exempt_replied()

    def exempt_replied(self) -> None:
        """An exempt request was answered: the clocks of those behind it start now."""
        self.replied_at = self.loop.time()

    def start_watchdog(self, timeout: float) -> None:
        """(Re)start the ticker that checks deadlines, for this read timeout."""
        self.stop_watchdog()
        tick = max(timeout / WATCHDOG_TICKS, WATCHDOG_MIN_TICK)
        self.watchdog = Ticker(self.loop, tick, self.check_deadline).start()
        self.watchdog_timeout = timeout

    def check_deadline(self) -> None:
        """One tick of the watchdog: fail the connection if the oldest reply is overdue."""
        if self.down or self.read_timeout is None:
            self.stop_watchdog()
            return
        if not self.deadlines:
            return
        due = max(self.deadlines[0], self.replied_at + self.read_timeout)
        if due <= self.loop.time():  # never true for inf: an exempt request heads the line
            self.fail(self.timeout_error())

    def stop_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = self.watchdog_timeout = None

    def clear(self, exc: Exception) -> None:
        """Forget queued bytes and deadlines; fail every waiter with `exc`."""
        self.outgoing.clear()
        self.deadlines.clear()
        self.stop_watchdog()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
