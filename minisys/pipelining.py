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

Why one timer per connection: `asyncio.timeout` around every call costs ≈7 µs of CPU. Here
one watchdog fires when the oldest reply is due (replies come in order, so it is the first
to expire) and re-arms for the next. A request may be exempt (a beanstalkd `reserve`, whose
job is to wait); requests queued behind it get their full timeout counted from its reply.

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
        self.watchdog: asyncio.TimerHandle | None = None
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
        if self.read_timeout is not None:
            due = math.inf if exempt else loop.time() + self.read_timeout
            self.deadlines.extend([due] * count)
            if self.watchdog is None and due != math.inf:
                self.watchdog = loop.call_at(due, self.check_deadline)
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
        if self.read_timeout is not None:
            due = loop.time() + self.read_timeout
            self.deadlines.append(due)
            if self.watchdog is None:
                self.watchdog = loop.call_at(due, self.check_deadline)
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
        if self.deadlines and self.watchdog is None:
            self.check_deadline()

    def check_deadline(self) -> None:
        self.watchdog = None
        if not self.deadlines or self.down or self.read_timeout is None:
            return
        due = max(self.deadlines[0], self.replied_at + self.read_timeout)
        if due == math.inf:
            return  # an exempt request heads the line; its reply re-arms us
        if due <= self.loop.time():
            self.fail(self.timeout_error())
        else:
            self.watchdog = self.loop.call_at(due, self.check_deadline)

    def clear(self, exc: Exception) -> None:
        """Forget queued bytes and deadlines; fail every waiter with `exc`."""
        self.outgoing.clear()
        self.deadlines.clear()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
