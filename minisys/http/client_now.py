"""The client's callback fast path: one request on a warm pooled connection, no coroutine.

On the request's journey this is how the gateway's usual request reaches an appserver
(`HttpClient.request_now`, used by gateway/upstream.py's `forward_now`): a slot is free
and a warm idle connection is at hand, so the request is written at once, and the
connection's reader calls back with the response. `Exchange` then does what `_send` does
after its `await` - pool the connection or close it, release the slot, word a timeout -
and hands `then(response, None)` or `then(None, error)` the very outcome `request` would
have returned or raised.

Why: a coroutine chain per request plus the future it waits for cost ~20k instructions
of the gateway's ~480k per proxied request here (callgrind, one client connection).

`request_raw_now` (RawExchange) is the same with a request the caller serialized and a
response it may read from the raw bytes itself (the gateway's hot path, gateway/hot.py):
the first read is offered to it before the parser sees anything.

Simpler than the real thing: aiohttp and httpx always run requests as coroutines; this
path exists only for a proxy's hot loop, and everything unusual goes through `request`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from minisys.http.client_result import IDEMPOTENT, ClientError, ClientResponse, ClientTimeout

if TYPE_CHECKING:
    from minisys.http.client import HttpClient, _Connection, _Pool


class Slots:
    """The pool's bound on connections in use: a counting semaphore whose free slot the
    fast paths take without awaiting (asyncio.Semaphore has only the coroutine `acquire`;
    stepping it by hand, and its `locked()` generator, cost ~4k instructions a request).
    A released slot goes straight to the longest waiter, so nobody jumps the queue."""

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: deque[asyncio.Future] = deque()

    def locked(self) -> bool:
        return self.free <= 0

    def take(self) -> None:
        """Take a slot known to be free (`not locked()`), without awaiting."""
        if self.free <= 0:
            raise RuntimeError("the pool's slot was not free")
        self.free -= 1

    async def acquire(self) -> None:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            elif waiter in self.waiters:  # (release may have dropped it already)
                self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it directly
                return
        self.free += 1


def timed_out(method: str, host: str, port: int, target: str) -> ClientTimeout:
    return ClientTimeout(f"{method} {host}:{port}{target} timed out", request_sent=True)


class Exchange:
    """One request of `request_now`: what `_send` does after its `await`, as a callback.

    The outcomes are `request`'s: the connection goes back to the pool only if reusable,
    the slot is released once, timeouts are worded alike, and a pooled connection the
    server had closed is retried once for idempotent methods - through `_send` in a Task,
    the rare path.
    """

    __slots__ = ("client", "conn", "data", "deadline", "method", "pool", "read_deadline",
                 "task", "then", "url")  # fmt: skip

    def __init__(
        self,
        client: HttpClient,
        pool: _Pool,
        conn: _Connection,
        method: str,
        url: tuple[str, int, str],
        data: bytes,
        deadline: float,
        then: Callable[[ClientResponse | None, Exception | None], None],
    ) -> None:
        self.client = client
        self.pool = pool
        self.conn = conn
        self.method = method
        self.url = url
        self.data = data
        self.deadline = deadline
        self.read_deadline = min(deadline, conn._loop.time() + client.read_timeout)
        self.then = then
        self.task: asyncio.Task | None = None

    def done(self, response: ClientResponse | None, exc: Exception | None) -> None:
        conn = self.conn
        pool = self.pool
        if exc is None:
            if conn.reusable:
                pool.idle.append(conn)
            pool.slots.release()
            self.then(response, None)
            return
        conn.close()
        pool.slots.release()
        host, port, target = self.url
        if isinstance(exc, TimeoutError) and not isinstance(exc, ClientError):
            if self.read_deadline >= self.deadline:
                exc = timed_out(self.method, host, port, target)
            else:
                exc = ClientTimeout(f"no response from {host}:{port} in time", request_sent=True)
        elif isinstance(exc, ConnectionError):
            if not conn.got_bytes and self.method in IDEMPOTENT:
                retry = self.client._send((host, port), self.method, self.data, self.deadline, (2,))
                self.task = asyncio.ensure_future(retry)
                self.task.add_done_callback(self._retried)
                return
            exc = ClientError(f"{host}:{port}: {exc}", request_sent=True)
        self.then(None, exc)

    def _retried(self, task: asyncio.Task) -> None:
        self.task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self.then(task.result(), None)
            return
        if isinstance(exc, TimeoutError) and not isinstance(exc, ClientError):
            exc = timed_out(self.method, *self.url)
        self.then(None, exc)

    def cancel(self) -> None:
        """Abandon the request (as cancelling `request` would): the connection closes."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        elif self.conn.then is not None:
            self.conn.then = None
            self.conn.raw = None
            self.conn._settle()
            self.conn.close()
            self.pool.slots.release()


class RawTaker(Protocol):
    """The caller of `request_raw_now`: reads a plain response itself, or lets it be parsed."""

    def take(self, data: bytes) -> bool:
        """True if `data` is one whole response that leaves the connection reusable, and
        was read (nothing may be answered yet: `taken` follows once the pool has it)."""

    def taken(self) -> None:
        """The response `take` read is the outcome: answer with it now."""

    def then(self, response: ClientResponse | None, exc: Exception | None) -> None:
        """Anything else: `request`'s outcome, as for `request_now`."""


class RawExchange(Exchange):
    """One request of `request_raw_now`: an Exchange whose response may be taken raw."""

    __slots__ = ("taker",)

    taker: RawTaker

    def offer(self, data: bytes) -> bool:
        """The response's first read: if the taker takes it, finish as `done` would."""
        if not self.taker.take(data):
            return False
        conn = self.conn
        conn._settle()
        conn.then = None
        # `conn.reusable`, less what holds by construction here (no waiter, no callback,
        # nothing ever fed to the parser): ~2k instructions a request.
        transport = conn.transport
        if not conn.closed and transport is not None and not transport.is_closing():
            self.pool.idle.append(conn)
        self.pool.slots.release()
        self.taker.taken()
        return True
